//! The host's side of location proofs: [`Responder::answer`] dials one landmark and answers its
//! challenges with the agent key (`agent locate` calls it once per landmark); [`spawn`] runs it
//! on a thread of `agent run`, every landmark at start and then every interval, until stopped.
//!
//! A landmark that fails is logged and tried again next round; it never stops the daemon or the
//! other landmarks. The thread waits on a condition variable, so a stop or a reload wakes it at
//! once, and a stop also cuts the connection it is answering on.

use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chipledger_agent::daemon::jittered;
use chipledger_client::locate::{respond, Greeting, Outcome};
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::keys::SigningKey;

/// Who answers: this host's agent key and name, and the GPUs its proofs name (the agent's word,
/// recorded as such).
pub struct Responder {
    pub key: SigningKey,
    pub hostname: String,
    pub gpus: Vec<GpuUuid>,
    /// The longest a landmark may take to accept the connection, and then over the whole exchange.
    pub timeout: Duration,
}

impl Responder {
    /// Dials `addr` (`HOST:PORT`) and answers the landmark's challenges: its greeting and the
    /// outcome, which names the proof's log index.
    pub fn answer(&self, addr: &str) -> Result<(Greeting, Outcome)> {
        self.answer_unless_stopped(addr, &Shared::default())
    }

    fn answer_unless_stopped(&self, addr: &str, shared: &Shared) -> Result<(Greeting, Outcome)> {
        let mut stream = connect(addr, self.timeout)?;
        shared.track(&stream)?;
        let answered = respond(&mut stream, &self.key, &self.hostname, &self.gpus, self.timeout);
        shared.untrack();
        Ok(answered?)
    }
}

/// What the daemon's responder answers, and how often.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub landmarks: Vec<String>,
    pub every: Duration,
    /// ± this fraction of `every`, drawn anew each round (the attestation schedule's).
    pub jitter: f64,
    /// The host name the answers are for.
    pub hostname: String,
}

/// The GPUs a round's proofs name, read anew each round.
pub type GpuList = Box<dyn FnMut() -> Vec<GpuUuid> + Send>;

/// A running responder thread.
pub struct Handle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Re-plans a running responder (SIGHUP) from another thread.
#[derive(Clone)]
pub struct Reloader(Arc<Shared>);

impl Reloader {
    /// A new list, interval or host name: a changed list is answered at once, an interval from
    /// now on.
    pub fn reload(&self, plan: Plan) {
        self.0.lock().reload = Some(plan);
        self.0.wake.notify_all();
    }
}

impl Handle {
    pub fn reloader(&self) -> Reloader {
        Reloader(self.shared.clone())
    }

    /// Stops the thread — between landmarks, or by cutting the connection it answers on — and
    /// waits for it (at most the time a dial takes to connect).
    pub fn stop(mut self) {
        {
            let mut state = self.shared.lock();
            state.stopped = true;
            if let Some(stream) = state.in_flight.take() {
                stream.shutdown(Shutdown::Both).ok();
            }
        }
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the landmark responder panicked");
            }
        }
    }
}

/// Starts the responder: every landmark of `plan` at once, then every `plan.every` ± jitter. With
/// no landmarks it waits for a reload that brings some.
pub fn spawn(responder: Responder, plan: Plan, gpus: GpuList) -> Result<Handle> {
    let shared = Arc::new(Shared::default());
    let thread = std::thread::Builder::new()
        .name("landmarks".into())
        .spawn({
            let shared = shared.clone();
            move || run(responder, plan, gpus, &shared)
        })
        .context("starting the landmark responder")?;
    Ok(Handle { shared, thread: Some(thread) })
}

fn run(mut responder: Responder, mut plan: Plan, mut gpus: GpuList, shared: &Shared) {
    if !plan.landmarks.is_empty() {
        tracing::info!(landmarks = plan.landmarks.len(), every_s = plan.every.as_secs(), "answering landmarks");
    }
    let mut next = Instant::now();
    loop {
        {
            let mut state = shared.lock();
            loop {
                if state.stopped {
                    return;
                }
                if let Some(new) = state.reload.take() {
                    let now = Instant::now();
                    next = if new.landmarks != plan.landmarks {
                        now
                    } else {
                        next.min(now + jittered(new.every, new.jitter))
                    };
                    tracing::info!(
                        landmarks = new.landmarks.len(),
                        every_s = new.every.as_secs(),
                        "landmarks reloaded"
                    );
                    plan = new;
                }
                let now = Instant::now();
                if plan.landmarks.is_empty() {
                    state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                } else if now < next {
                    state = shared.wake.wait_timeout(state, next - now).unwrap_or_else(|e| e.into_inner()).0;
                } else {
                    break;
                }
            }
        }
        responder.hostname = plan.hostname.clone();
        responder.gpus = gpus();
        for addr in &plan.landmarks {
            if shared.lock().stopped {
                return;
            }
            match responder.answer_unless_stopped(addr, shared) {
                Ok((greeting, outcome)) => tracing::info!(
                    landmark = %greeting.landmark,
                    addr = %addr,
                    min_rtt_ms = outcome.min_rtt_ns.map(|n| n as f64 / 1e6),
                    bound_km = outcome.bound_km,
                    index = outcome.index,
                    "answered a landmark; location proof logged"
                ),
                Err(_) if shared.lock().stopped => {
                    tracing::info!(addr = %addr, "stopping: the answer to a landmark was cut short");
                    return;
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    tracing::warn!(addr = %addr, %error, "a landmark was not answered; trying again next round");
                }
            }
        }
        next = Instant::now() + jittered(plan.every, plan.jitter);
    }
}

/// What the responder thread and its handle share: the stop, a pending reload, and the
/// connection being answered (so that a stop can cut it).
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    stopped: bool,
    reload: Option<Plan>,
    in_flight: Option<TcpStream>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain flags behind: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn track(&self, stream: &TcpStream) -> Result<()> {
        let mut state = self.lock();
        if state.stopped {
            bail!("the agent is stopping");
        }
        state.in_flight = stream.try_clone().ok();
        Ok(())
    }

    fn untrack(&self) {
        self.lock().in_flight = None;
    }
}

/// Connects to the first of `addr`'s addresses that accepts within `timeout`.
fn connect(addr: &str, timeout: Duration) -> Result<TcpStream> {
    let mut last = None;
    for a in addr.to_socket_addrs().with_context(|| format!("resolving landmark {addr}"))? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => anyhow::Error::new(e).context(format!("connecting to landmark {addr}")),
        None => anyhow!("landmark {addr} resolves to no address"),
    })
}
