//! `chipledger witness …`: a C2SP tlog-witness for chipledger logs (and any log whose
//! checkpoints are C2SP signed notes with Ed25519 keys).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use chipledger_domain::cosignature::WitnessKey;
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::witness::FollowedLog;
use chipledger_ledger::witness::WitnessState;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Serve the witness: `POST /add-checkpoint` (C2SP tlog-witness), cosigning each checkpoint
    /// consistent with the last it cosigned for that log, never two that conflict.
    Serve {
        /// The witness's private key (PKCS#8 PEM, e.g. from `chipledger keys generate`).
        #[arg(long)]
        key: PathBuf,
        /// The witness's name in cosignatures, e.g. `witness.example.org/w1`.
        #[arg(long)]
        name: String,
        /// A log to follow, `ORIGIN=VKEY` (its checkpoints' origin and the log's C2SP verifier
        /// key); repeatable, also to trust several keys of one log.
        #[arg(long = "log", value_name = "ORIGIN=VKEY", required = true)]
        logs: Vec<String>,
        /// Where the witness keeps the latest checkpoint it cosigned of each log (SQLite; created
        /// if missing). Losing it lets the witness be led into cosigning a fork.
        #[arg(long)]
        state: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: String,
    },
    /// Print the witness's verifier key (C2SP vkey, cosignature/v1), for logs and clients.
    Vkey {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        name: String,
    },
}

pub fn run(c: Command) -> Result<()> {
    match c {
        Command::Vkey { key, name } => {
            let key = read_key(&key)?;
            println!("{}", WitnessKey::new(&name, key.public_key())?);
            Ok(())
        }
        Command::Serve { key, name, logs, state, listen } => {
            let key = read_key(&key)?;
            let vkey = WitnessKey::new(&name, key.public_key())?;
            let logs = followed(&logs)?;
            let state = WitnessState::open(&state).with_context(|| format!("opening {}", state.display()))?;
            let witness = Arc::new(chipledger_web::Witness { name, key, logs, state });
            chipledger_web::serve_witness(witness, &listen, chipledger_web::ServerConfig::default(), |addr| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "listening on http://{addr}");
                let _ = writeln!(out, "witness key {vkey}");
                let _ = out.flush();
            })?;
            Ok(())
        }
    }
}

fn read_key(path: &std::path::Path) -> Result<SigningKey> {
    let pem = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    SigningKey::from_pkcs8_pem_owned(pem).with_context(|| format!("{} is not a PKCS#8 Ed25519 key", path.display()))
}

/// `ORIGIN=VKEY…` → the logs, each origin once with all its keys.
fn followed(specs: &[String]) -> Result<Vec<FollowedLog>> {
    let mut logs: Vec<FollowedLog> = Vec::new();
    for spec in specs {
        let Some((origin, vkey)) = spec.split_once('=') else {
            bail!("--log {spec:?}: expected ORIGIN=VKEY (the log's origin line, then its verifier key)");
        };
        if origin.is_empty() || origin.contains(char::is_whitespace) {
            bail!("--log {spec:?}: the origin is empty or has spaces");
        }
        let key = VerifierKey::parse(vkey).with_context(|| format!("--log {origin}: the verifier key"))?;
        match logs.iter_mut().find(|l| l.origin == origin) {
            Some(l) => l.keys.push(key),
            None => logs.push(FollowedLog { origin: origin.to_string(), keys: vec![key] }),
        }
    }
    Ok(logs)
}
