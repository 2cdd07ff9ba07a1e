//! Where the ledger lives: `--data-dir`, else `$CHIPLEDGER_HOME`, else the platform data
//! directory (`~/.local/share/chipledger` on Linux).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use chipledger_client::Credential;
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

/// Where a command finds the log: a data directory, or a `chipledger serve` URL.
#[derive(Debug, Clone)]
pub enum LedgerTarget {
    Dir(PathBuf),
    Url(String),
}

impl LedgerTarget {
    pub fn parse(s: &str) -> LedgerTarget {
        if s.starts_with("http://") || s.starts_with("https://") {
            LedgerTarget::Url(s.to_string())
        } else {
            LedgerTarget::Dir(PathBuf::from(s))
        }
    }

    /// The log as a `LogClient` and the key its checkpoints must carry. A local ledger knows its
    /// key (a pinned one must match it); a server's key must be pinned, and the server needs a
    /// credential: the caller's enrolled key, else a person's token from `CHIPLEDGER_TOKEN`.
    pub fn open(
        &self,
        pinned: Option<chipledger_domain::keys::VerifierKey>,
        signer: Option<&std::path::Path>,
    ) -> Result<(Box<dyn chipledger_domain::log::LogClient + Send>, chipledger_domain::keys::VerifierKey)> {
        match self {
            LedgerTarget::Dir(dir) => {
                let ledger = Ledger::open(dir, LedgerConfig::default(), Arc::new(SystemClock))
                    .with_context(|| format!("opening the ledger in {}", dir.display()))?;
                let key = ledger.verifier_key().clone();
                if let Some(p) = pinned {
                    // A key the log rotated away from: its rotations lead to the current key.
                    if p != key && !ledger.log_keys()?.keys().contains(&p) {
                        anyhow::bail!(
                            "the ledger in {} is signed by {key}, not by the pinned log key {p}",
                            dir.display()
                        );
                    }
                    if p != key {
                        eprintln!("note: the pinned log key {p} was rotated; the log is now signed by {key}");
                    }
                }
                Ok((Box::new(ledger), key))
            }
            LedgerTarget::Url(url) => {
                let Some(key) = pinned else {
                    anyhow::bail!(
                        "a remote ledger ({url}) needs its log key pinned: pass --log-key (or set log_key), as printed by \
                         `chipledger ledger info` on the server"
                    );
                };
                let credential = match (signer, std::env::var("CHIPLEDGER_TOKEN").ok().filter(|t| !t.is_empty())) {
                    (_, Some(token)) => Credential::Token(token),
                    (Some(path), None) if path.exists() => {
                        let pem = std::fs::read_to_string(path)
                            .with_context(|| format!("reading {} to sign requests to {url}", path.display()))?;
                        Credential::Key(
                            chipledger_domain::keys::SigningKey::from_pkcs8_pem_owned(pem)
                                .with_context(|| format!("reading {}", path.display()))?,
                        )
                    }
                    _ => anyhow::bail!(
                        "{url} answers only enrolled keys and people with a token: pass this host's key (--key / \
                         --node-key) or set CHIPLEDGER_TOKEN to a token from `chipledger tokens create`"
                    ),
                };
                let mut client = chipledger_client::HttpLogClient::new(url).with_credential(credential);
                // A server whose certificate comes from a private CA: trust that CA only.
                if let Some(ca) = std::env::var_os("CHIPLEDGER_CA_CERT").filter(|v| !v.is_empty()) {
                    let pem = std::fs::read(&ca)
                        .with_context(|| format!("reading CHIPLEDGER_CA_CERT {}", PathBuf::from(&ca).display()))?;
                    client = client
                        .with_ca_certs(&pem)
                        .with_context(|| format!("CHIPLEDGER_CA_CERT {}", PathBuf::from(&ca).display()))?;
                }
                let key = follow_rotations(&client, key);
                Ok((Box::new(client), key))
            }
        }
    }
}

/// The key to read a server's log with, for a reader pinning `pinned`: the pinned key while it
/// still signs (alone or in a rotation's overlap), else the key its published rotations lead to
/// (each announcement signed by the key before). Where nothing can be followed (no rotation, an
/// older server, the network), the pinned key: a checkpoint it did not sign is then refused
/// wherever it is read.
fn follow_rotations(
    client: &chipledger_client::HttpLogClient,
    pinned: chipledger_domain::keys::VerifierKey,
) -> chipledger_domain::keys::VerifierKey {
    let Ok((keys, _)) = client.follow_log_keys(&pinned) else { return pinned };
    let still_signs = keys.windows().iter().any(|w| w.key == pinned && w.until.is_none());
    if still_signs || keys.followed().is_empty() {
        return pinned;
    }
    let current = keys.current().clone();
    eprintln!(
        "note: the log moved from the pinned key {pinned} to {current} (rotation records at {:?}, signed by the pinned key); following it",
        keys.followed()
    );
    current
}

impl std::fmt::Display for LedgerTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LedgerTarget::Dir(d) => write!(f, "{}", d.display()),
            LedgerTarget::Url(u) => f.write_str(u),
        }
    }
}
