//! `chipledger mirror`: follow a log's public checkpoint and tiles into a directory, verifying
//! every step, and optionally serve what it holds (checkpoint, tiles, proofs) read-only.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chipledger_client::mirror::{Mirror, MirrorError};
use chipledger_domain::keys::VerifierKey;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log's URL (a `chipledger serve`, or any C2SP tlog-tiles log).
    #[arg(long)]
    from: String,
    /// The log's verifier key: every checkpoint must be signed by it.
    #[arg(long)]
    log_key: String,
    /// Where the mirror lives (created if missing; resumed if it holds a mirror of this log).
    #[arg(long)]
    to: PathBuf,
    /// Sync once and exit (non-zero on a fork or an answer that does not verify).
    #[arg(long)]
    once: bool,
    /// Seconds between syncs when following.
    #[arg(long, default_value_t = 5.0)]
    every: f64,
    /// Also serve what the mirror holds (checkpoint, hash tiles, inclusion and consistency
    /// proofs) read-only on this address.
    #[arg(long)]
    listen: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    let log_key = VerifierKey::parse(&args.log_key).context("--log-key")?;
    if !(args.every.is_finite() && args.every >= 0.05) {
        bail!("--every must be at least 0.05 seconds");
    }
    // With a person's token (CHIPLEDGER_TOKEN, never on the command line) entry bundles are
    // mirrored too.
    let token = std::env::var("CHIPLEDGER_TOKEN").ok().filter(|t| !t.is_empty());
    let mirror = Mirror::open(&args.to, &args.from, log_key, token).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mirror = Arc::new(RwLock::new(mirror));
    if let Some(addr) = &args.listen {
        let (tx, rx) = std::sync::mpsc::channel();
        let (m, addr) = (mirror.clone(), addr.clone());
        std::thread::spawn(move || {
            let served = chipledger_web::serve_mirror(m, &addr, chipledger_web::ServerConfig::default(), |a| {
                let _ = tx.send(a);
            });
            if let Err(e) = served {
                eprintln!("error: serving the mirror: {e}");
                std::process::exit(1);
            }
        });
        let bound = rx.recv().context("the mirror's server did not start")?;
        println!("listening on http://{bound}");
        let _ = std::io::stdout().flush();
    }
    loop {
        // Sync on a copy: readers keep the verified state meanwhile.
        let mut next = mirror.read().unwrap_or_else(|p| p.into_inner()).clone();
        match next.sync() {
            Ok(r) => {
                if r.to != r.from {
                    println!("mirrored {}..{} ({} tiles, {} entry bundles)", r.from, r.to, r.tiles, r.bundles);
                    let _ = std::io::stdout().flush();
                }
                *mirror.write().unwrap_or_else(|p| p.into_inner()) = next;
            }
            Err(e @ MirrorError::Fetch(_)) if !args.once => eprintln!("warning: {e}; retrying"),
            // A fork, or answers that do not verify: said on every attempt, the evidence kept,
            // and nothing unverified taken; a server keeps serving what was verified.
            Err(e) if !args.once => eprintln!("error: {e}; nothing unverified was taken; retrying"),
            Err(e) => bail!("{e}"),
        }
        if args.once {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs_f64(args.every));
    }
}
