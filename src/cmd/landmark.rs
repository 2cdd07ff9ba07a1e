//! `chipledger landmark serve`: an independently run signer at surveyed coordinates that times
//! hosts' signed answers to its fresh nonces and logs each measurement as `location-proof/v1`.

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chipledger_client::locate::{self, Measured, Outcome};
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::location::Coord;
use chipledger_domain::location_proof::{LocatedSubject, LocationProof, ProofHeader, MAX_ROUNDS};
use chipledger_domain::log::LogClient;
use chipledger_domain::records::sign_record;
use time::OffsetDateTime;

use crate::datadir::LedgerTarget;

/// The most connections a landmark measures at once; more wait in the listen backlog.
const MAX_CONCURRENT: usize = 32;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Listen for hosts' agents, challenge each with fresh nonces, time the round trips on this
    /// machine's monotonic clock, and append a signed location proof per connection.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The landmark's name: the host its key was enrolled for (`keys enroll --role landmark`).
    #[arg(long)]
    name: String,
    /// Its surveyed coordinates, "LAT,LON", exactly as enrolled (the ledger refuses others).
    #[arg(long, value_parser = crate::cmd::keys::parse_coord)]
    at: Coord,
    /// The landmark's private key (PKCS#8 PEM).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Where to listen, e.g. 0.0.0.0:7443.
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// The ledger: a data directory (default: the global --data-dir) or a server's URL.
    #[arg(long, value_name = "PATH|URL")]
    ledger: Option<String>,
    /// The log's verifier key (required with a URL).
    #[arg(long, value_name = "VKEY")]
    log_key: Option<String>,
    /// Challenge rounds per connection (the least round trip is kept).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=MAX_ROUNDS as u64))]
    rounds: u64,
    /// An answer processing time this landmark's operator has verified for host-key answers,
    /// subtracted from the least round trip (default 0: nothing subtracted, the larger disk).
    #[arg(long, default_value_t = 0)]
    floor_ns: u64,
    /// Seconds a host may take over any one step before the connection is dropped.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    /// Stop after this many connections (for scripted runs and tests).
    #[arg(long)]
    max_connections: Option<u64>,
    /// Log at most one proof per host every this many seconds: a host that asks more often is
    /// refused (readers take a bounded number of proofs per host; an agent answers hourly).
    #[arg(long, default_value_t = 10)]
    min_interval_secs: u64,
}

pub fn run(data_dir: Option<PathBuf>, cmd: Command) -> Result<()> {
    match cmd {
        Command::Serve(args) => serve(data_dir, args),
    }
}

/// What every connection's thread shares.
pub(crate) struct Landmark {
    name: String,
    at: Coord,
    key: SigningKey,
    log: Mutex<Box<dyn LogClient + Send>>,
    log_key: VerifierKey,
    floor_ns: u64,
    rounds: usize,
    timeout: Duration,
    /// The last counter used: strictly increasing, seeded from the clock so a restart does not
    /// reuse one.
    counter: Mutex<u64>,
    /// How often one host's proof may be logged, and when each host's last one was.
    min_interval: Duration,
    last_logged: Mutex<HashMap<String, Instant>>,
}

/// The most hosts whose last proof a landmark remembers before forgetting those past the
/// interval.
const MAX_REMEMBERED_HOSTS: usize = 65_536;

impl Landmark {
    /// A landmark named `name` at `at`, signing with `key` and logging to `log` (whose key is
    /// `log_key`), with nothing subtracted from its round trips.
    pub(crate) fn new(
        name: String,
        at: Coord,
        key: SigningKey,
        log: Box<dyn LogClient + Send>,
        log_key: VerifierKey,
        rounds: usize,
    ) -> Landmark {
        Landmark {
            name,
            at,
            key,
            log: Mutex::new(log),
            log_key,
            floor_ns: 0,
            rounds,
            timeout: Duration::from_secs(10),
            counter: Mutex::new(0),
            min_interval: Duration::ZERO,
            last_logged: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses a host whose last proof was logged less than the interval ago; else notes now.
    fn may_log(&self, host: &str) -> Result<()> {
        let mut last = self.last_logged.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some(at) = last.get(host).filter(|at| now.duration_since(**at) < self.min_interval) {
            anyhow::bail!(
                "this landmark logged a proof of {host} {:.0} s ago; it logs one per host every {} s at most",
                now.duration_since(*at).as_secs_f64(),
                self.min_interval.as_secs()
            );
        }
        if last.len() >= MAX_REMEMBERED_HOSTS {
            let keep = self.min_interval;
            last.retain(|_, at| now.duration_since(*at) < keep);
        }
        last.insert(host.to_string(), now);
        Ok(())
    }
}

fn serve(data_dir: Option<PathBuf>, args: ServeArgs) -> Result<()> {
    let pem = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading the landmark key {}", args.key.display()))?;
    let key = SigningKey::from_pkcs8_pem_owned(pem).with_context(|| format!("reading {}", args.key.display()))?;
    let target = match &args.ledger {
        Some(l) => LedgerTarget::parse(l),
        None => LedgerTarget::Dir(crate::datadir::resolve(data_dir)?),
    };
    let pinned = args.log_key.as_deref().map(VerifierKey::parse).transpose().context("--log-key")?;
    let (log, log_key) = target.open(pinned, Some(&args.key))?;
    let listener = TcpListener::bind(&args.listen).with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr().context("reading the listening address")?;
    // One line on stdout, for scripts and tests that listen on port 0.
    println!("listening on {local}");
    eprintln!("landmark {} at {}", args.name, args.at);
    use std::io::Write;
    std::io::stdout().flush().ok();
    let landmark = Arc::new(Landmark {
        name: args.name,
        at: args.at,
        key,
        log: Mutex::new(log),
        log_key,
        floor_ns: args.floor_ns,
        rounds: args.rounds as usize,
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
        counter: Mutex::new(0),
        min_interval: Duration::from_secs(args.min_interval_secs),
        last_logged: Mutex::new(HashMap::new()),
    });
    let busy = Arc::new(AtomicUsize::new(0));
    let mut served = 0u64;
    let mut handles = Vec::new();
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection");
                continue;
            }
        };
        while busy.load(Ordering::Acquire) >= MAX_CONCURRENT {
            std::thread::sleep(Duration::from_millis(5));
        }
        busy.fetch_add(1, Ordering::AcqRel);
        let (lm, busy2) = (landmark.clone(), busy.clone());
        handles.push(std::thread::spawn(move || {
            let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            measure_one(&lm, stream, &peer);
            busy2.fetch_sub(1, Ordering::AcqRel);
        }));
        handles.retain(|h| !h.is_finished());
        served += 1;
        if args.max_connections.is_some_and(|m| served >= m) {
            break;
        }
    }
    for h in handles {
        h.join().ok();
    }
    Ok(())
}

/// Measures one host and answers it with the outcome; failures are logged and told to the host.
pub(crate) fn measure_one(lm: &Landmark, mut stream: TcpStream, peer: &str) {
    let measured = match locate::challenge(&mut stream, &lm.name, lm.rounds, lm.timeout, &mut rand_core::OsRng) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "a location measurement failed");
            let _ = locate::send_outcome(&mut stream, &refused(e.to_string()));
            return;
        }
    };
    let outcome = match record(lm, &measured) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(%peer, host = %measured.hello.host, error = format!("{e:#}"), "the proof was not logged");
            refused(format!("{e:#}"))
        }
    };
    tracing::info!(%peer, host = %measured.hello.host, min_rtt_ns = outcome.min_rtt_ns, index = outcome.index, "measured");
    if let Err(e) = locate::send_outcome(&mut stream, &outcome) {
        tracing::warn!(%peer, error = %e, "sending the outcome");
    }
}

fn refused(error: String) -> Outcome {
    Outcome { ok: false, index: None, min_rtt_ns: None, bound_km: None, error: Some(error) }
}

/// Signs the measurement as a location proof and appends it; checks the receipt (checkpoint
/// signed by the log key, the proof's leaf included in it).
fn record(lm: &Landmark, m: &Measured) -> Result<Outcome> {
    let min = m.rounds.iter().map(|r| r.rtt_ns).min().unwrap_or(0);
    if lm.floor_ns > min {
        anyhow::bail!(
            "the least round trip ({min} ns) is below the configured floor ({} ns): the floor is not this method's",
            lm.floor_ns
        );
    }
    lm.may_log(&m.hello.host)?;
    // The counter is taken and the proof submitted under the log's lock: proofs reach the log
    // in counter order.
    let log = lm.log.lock().unwrap_or_else(|p| p.into_inner());
    let now = OffsetDateTime::now_utc();
    let counter = {
        let mut last = lm.counter.lock().unwrap_or_else(|p| p.into_inner());
        let micros = u64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(0);
        *last = (*last + 1).max(micros);
        *last
    };
    let header =
        ProofHeader { counter, measured_at: now, landmark: lm.name.clone(), landmark_at: lm.at, floor_ns: lm.floor_ns };
    // The GPUs are the agent's word, recorded as such; the proof locates the key holder.
    let subject =
        LocatedSubject { host: m.hello.host.clone(), key_id: m.public_key.key_id(), gpus: m.hello.gpus.clone() };
    let proof = LocationProof::new(header, subject, m.rounds.clone());
    let envelope = sign_record(&proof, &lm.key)?.to_json();
    let receipts = log.submit(std::slice::from_ref(&envelope))?;
    drop(log);
    let receipt = receipts.first().context("the ledger returned no receipt")?;
    receipt.verify(&envelope, &lm.log_key).context("the ledger's receipt does not prove the proof is in the log")?;
    Ok(Outcome {
        ok: true,
        index: Some(receipt.index),
        min_rtt_ns: Some(proof.min_rtt_ns),
        bound_km: Some(proof.bound_km()),
        error: None,
    })
}
