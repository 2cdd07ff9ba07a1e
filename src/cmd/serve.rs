//! `chipledger serve`: the ledger over HTTP.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use crate::datadir;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on. Reads are not authenticated yet: keep it on loopback or a trusted
    /// network.
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
    })?;
    Ok(())
}
