//! `chipledger init`.

use std::sync::Arc;

use anyhow::{Context, Result};
use chipledger_ledger::{Ledger, SystemClock};

use crate::datadir;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log's origin (its name in checkpoints), e.g. `ledger.example.com/gpus`.
    #[arg(long)]
    origin: Option<String>,
}

pub fn run(data_dir: Option<std::path::PathBuf>, args: Args) -> Result<()> {
    let dir = datadir::resolve(data_dir)?;
    let origin = args.origin.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        format!("chipledger.local/{}", if host.is_empty() { "log".to_string() } else { host })
    });
    let (ledger, info) = Ledger::init(&dir, &origin, Arc::new(SystemClock), &mut rand_core::OsRng)
        .with_context(|| format!("initialising a ledger in {}", dir.display()))?;
    println!("ledger created in {}", dir.display());
    println!("origin:           {}", info.origin);
    println!("log key:          {}", info.log_verifier_key);
    println!("admin key:        {}", info.admin_verifier_key);
    println!("admin key file:   {} (mode 0600; keep it safe)", info.admin_key_path.display());
    println!("entries:          {} (the admin key's self-enrollment)", ledger.size());
    Ok(())
}
