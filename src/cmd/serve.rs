//! `chipledger serve`: the ledger over HTTP — the log API for agents and nodes, the auditor
//! dashboard, /metrics.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use crate::datadir;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on. Every read needs a credential (an enrolled key's signature or a
    /// person's token); the default stays on loopback: off it, serve TLS (--tls-cert/--tls-key)
    /// or put a TLS proxy in front.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A proxy in front terminates TLS: session cookies are marked `Secure` and browsers are
    /// told to keep to HTTPS (HSTS), as when serving TLS here.
    #[arg(long, conflicts_with = "tls_cert")]
    behind_tls_proxy: bool,
    /// A proxy (IP address; repeatable) whose `X-Forwarded-For` names the client for rate
    /// limits. From any other peer the header is ignored.
    #[arg(long = "trusted-proxy", value_name = "IP")]
    trusted_proxies: Vec<std::net::IpAddr>,
    /// A C2SP witness to submit each new checkpoint to, `[NAME=]VKEY@URL` (its cosignature/v1
    /// verifier key and URL); repeatable. `/checkpoint` carries the cosignatures they give.
    #[arg(long = "witness", value_name = "VKEY@URL")]
    witnesses: Vec<String>,
}

pub fn run(data_dir: Option<PathBuf>, args: Args) -> Result<()> {
    let ledger = Arc::new(datadir::open(data_dir)?);
    let key = ledger.verifier_key().to_string();
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(chipledger_web::TlsFiles { cert, key }),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let witnesses = args.witnesses.iter().map(|w| crate::witnesses::target(w)).collect::<Result<Vec<_>>>()?;
    let config = chipledger_web::ServerConfig {
        witnesses,
        tls,
        secure_cookies: args.behind_tls_proxy,
        trusted_proxies: args.trusted_proxies,
        ..chipledger_web::ServerConfig::default()
    };
    chipledger_web::serve(ledger, &args.listen, config, |addr| {
        // The first line says where, for people and for scripts that start the server. A reader
        // that stops reading (a closed pipe) must not stop the server.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {scheme}://{addr}");
        let _ = writeln!(out, "log key {key}");
        let _ = writeln!(out, "dashboard: {scheme}://{addr}/ (log in with a token from `chipledger tokens create`)");
        let _ = out.flush();
    })?;
    Ok(())
}
