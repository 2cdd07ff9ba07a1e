//! The log's side of witnessing: a thread submits each new checkpoint to every configured
//! witness (C2SP `add-checkpoint`, with the consistency proof from the size the witness last
//! cosigned), checks each cosignature against the witness's key, and keeps it in the ledger,
//! so that `/checkpoint` carries it. Each witness's progress (latest cosigned size, last error)
//! is what `/log` and `/metrics` show as the witnessing lag.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chipledger_client::witness::{WitnessAnswer, WitnessClient};
use chipledger_domain::note::Note;
use chipledger_domain::witness::AddCheckpoint;
use chipledger_ledger::Ledger;

use crate::config::WitnessTarget;

/// One witness's progress, as the server last saw it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    pub url: String,
    /// The size of the latest checkpoint it cosigned (as it said, or as we kept).
    pub cosigned: Option<u64>,
    /// Why the last attempt failed, if it did.
    pub error: Option<String>,
}

/// Every witness's progress, by name.
#[derive(Debug, Default)]
pub(crate) struct Witnessing(Mutex<BTreeMap<String, Progress>>);

impl Witnessing {
    pub(crate) fn snapshot(&self) -> BTreeMap<String, Progress> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, name: &str, f: impl FnOnce(&mut Progress)) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(name.to_string()).or_default());
    }
}

/// One witness's loop state.
struct Follower {
    target: WitnessTarget,
    client: WitnessClient,
    /// The witness's latest cosigned size of this log, as it last said.
    known: Option<u64>,
    /// The size of the latest checkpoint whose cosignature by this witness the log keeps.
    stored: Option<u64>,
    /// Not before this instant (back-off after a failure).
    next_try: Instant,
    backoff: Duration,
}

/// Runs forever: every `every`, submits the latest checkpoint to each witness that lacks it.
pub(crate) fn run(ledger: Arc<Ledger>, targets: Vec<WitnessTarget>, progress: Arc<Witnessing>, every: Duration) {
    let mut followers: Vec<Follower> = targets
        .into_iter()
        .map(|t| {
            progress.set(t.key.name(), |p| p.url = t.url.clone());
            Follower {
                client: WitnessClient::new(&t.url),
                target: t,
                known: None,
                stored: None,
                next_try: Instant::now(),
                backoff: every,
            }
        })
        .collect();
    // Where each witness stood, as far as this log kept its cosignatures.
    if let Ok(sizes) = ledger.witnessed_sizes() {
        for f in &mut followers {
            f.stored = sizes.iter().find(|(n, _)| n == f.target.key.name()).map(|(_, s)| *s);
            f.known = f.stored;
            progress.set(f.target.key.name(), |p| p.cosigned = f.stored);
        }
    }
    loop {
        for f in &mut followers {
            if Instant::now() < f.next_try {
                continue;
            }
            match step(&ledger, f) {
                Ok(()) => {
                    f.backoff = every;
                    progress.set(f.target.key.name(), |p| {
                        p.cosigned = f.stored;
                        p.error = None;
                    });
                }
                Err(e) => {
                    tracing::warn!(witness = f.target.key.name(), error = %e, "witnessing");
                    f.backoff = (f.backoff * 2).min(Duration::from_secs(60));
                    f.next_try = Instant::now() + f.backoff;
                    progress.set(f.target.key.name(), |p| {
                        p.cosigned = f.stored;
                        p.error = Some(e);
                    });
                }
            }
        }
        std::thread::sleep(every);
    }
}

/// Brings one witness up to the latest checkpoint (a few requests at most: a 409 says where it
/// stands, and the next request starts from there). Done only once the log keeps its
/// cosignature of that checkpoint: a witness that already holds the size (someone else
/// submitted it first) is asked again from that size, which it answers with a cosignature.
fn step(ledger: &Ledger, f: &mut Follower) -> Result<(), String> {
    for _ in 0..3 {
        let (size, note) = ledger.checkpoint().map_err(|e| e.to_string())?;
        if f.stored == Some(size) {
            return Ok(());
        }
        let old = f.known.unwrap_or(0);
        if old > size {
            return Err(format!(
                "the witness has cosigned size {old} of this log, past its size {size}: another log with this \
                 origin and key (a fork), or this log lost entries"
            ));
        }
        let proof =
            if old == 0 { Vec::new() } else { ledger.consistency_proof(old, size).map_err(|e| e.to_string())? };
        let body = AddCheckpoint { old, proof, checkpoint: note.clone().into_bytes() }.to_bytes();
        match f.client.add_checkpoint(&body)? {
            WitnessAnswer::Cosigned(lines) => {
                // Keep only this witness's line, once it verifies on this checkpoint.
                let mut cosigned = Note::parse(note.as_bytes()).map_err(|e| e.to_string())?;
                let theirs = Note::parse(format!("x\n\n{}", lines.concat()).as_bytes()).map_err(|e| e.to_string())?;
                cosigned.signatures = theirs.signatures;
                match f.target.key.cosignature_time(&cosigned) {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(format!("its cosignature does not verify: {e}")),
                    None => return Err("its answer holds no cosignature by its key".into()),
                }
                let line = cosigned
                    .signatures
                    .iter()
                    .find(|s| s.name == f.target.key.name() && s.key_hash == f.target.key.key_hash())
                    .map(|s| s.line())
                    .ok_or("its answer holds no cosignature by its key")?;
                ledger.add_cosignature(size, f.target.key.name(), &line).map_err(|e| e.to_string())?;
                f.known = Some(size);
                f.stored = Some(size);
                return Ok(());
            }
            WitnessAnswer::Conflict(theirs) => f.known = Some(theirs),
            WitnessAnswer::Refused { status, message } => {
                return Err(format!("it refused the checkpoint of size {size} (HTTP {status}): {}", message.trim()))
            }
        }
    }
    Err("the witness keeps answering with another size".into())
}
