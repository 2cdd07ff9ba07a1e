//! `chipledger serve`: the ledger over HTTP — the log API for agents and nodes, the auditor
//! dashboard, /metrics.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use crate::datadir;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on. Every read needs a credential (an enrolled key's signature or a
    /// person's token); the default stays on loopback until you put TLS in front or pass a
    /// certificate.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
}

pub fn run(data_dir: Option<PathBuf>, args: Args) -> Result<()> {
    let ledger = Arc::new(datadir::open(data_dir)?);
    let key = ledger.verifier_key().to_string();
    chipledger_web::serve(ledger, &args.listen, chipledger_web::ServerConfig::default(), |addr| {
        // The first line says where, for people and for scripts that start the server.
        println!("listening on http://{addr}");
        println!("log key {key}");
        println!("dashboard: http://{addr}/ (log in with a token from `chipledger tokens create`)");
    })?;
    Ok(())
}
