//! Where the ledger lives: `--data-dir`, else `$CHIPLEDGER_HOME`, else the platform data
//! directory (`~/.local/share/chipledger` on Linux).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use chipledger_ledger::{Ledger, LedgerConfig, SystemClock};

pub fn resolve(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os("CHIPLEDGER_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    dirs::data_dir()
        .map(|d| d.join("chipledger"))
        .context("no platform data directory is known here: pass --data-dir or set CHIPLEDGER_HOME")
}

pub fn open(flag: Option<PathBuf>) -> Result<Ledger> {
    let dir = resolve(flag)?;
    Ledger::open(&dir, LedgerConfig::default(), Arc::new(SystemClock))
        .with_context(|| format!("opening the ledger in {}", dir.display()))
}
