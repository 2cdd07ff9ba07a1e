//! The gate: the node answers only while the GPUs it serves on qualify under its policy. It
//! places the model at start and pins the GPUs it placed (the engine runs there); a thread
//! re-reads the fleet whenever the log grows or the oldest placed attestation ages out, and every
//! request checks the age limit itself, so no request is admitted past it even between re-checks.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::keys::VerifierKey;
use chipledger_domain::note::open_checkpoint;
use chipledger_inference::node;
use chipledger_inference::policy::Policy;
use chipledger_inference::requirements::Requirements;
use chipledger_inference::serving::{self, Placed};
use time::OffsetDateTime;

use crate::SharedLog;

/// What the gate lets through now.
#[derive(Debug, Clone)]
pub enum Admission {
    Serving(Arc<Placed>),
    Refusing(Arc<str>),
}

/// The gate and what it re-checks with.
#[derive(Debug)]
pub struct Gate {
    state: RwLock<Admission>,
    log: SharedLog,
    log_key: VerifierKey,
    policy: Policy,
    requirements: Requirements,
    pinned: Mutex<Option<Vec<GpuUuid>>>,
    /// The host of the pinned GPUs, once placed: re-checks read only its GPUs.
    pinned_host: Mutex<Option<String>>,
    /// The log size the state was computed at.
    seen_size: Mutex<u64>,
}

impl Gate {
    /// Places the model now. `pinned`: the GPUs the engine already runs on (else the placement's
    /// choice is pinned once made).
    pub fn new(
        log: SharedLog,
        log_key: VerifierKey,
        policy: Policy,
        requirements: Requirements,
        pinned: Option<Vec<GpuUuid>>,
    ) -> Gate {
        let gate = Gate {
            state: RwLock::new(Admission::Refusing(Arc::from("not placed yet"))),
            log,
            log_key,
            policy,
            requirements,
            pinned: Mutex::new(pinned),
            pinned_host: Mutex::new(None),
            seen_size: Mutex::new(0),
        };
        gate.recheck(OffsetDateTime::now_utc());
        gate
    }

    pub fn admission(&self) -> Admission {
        self.state.read().map(|s| s.clone()).unwrap_or_else(|_| Admission::Refusing(Arc::from("the gate failed")))
    }

    /// The placement a request may run on at `now`, or why not.
    pub fn admit(&self, now: OffsetDateTime) -> Result<Arc<Placed>, String> {
        match self.admission() {
            Admission::Serving(p) if now < p.expires_at => Ok(p),
            Admission::Serving(p) => Err(format!(
                "the oldest attestation of the GPUs this node serves on aged out at {} under policy {:?}; \
                 waiting for a new attestation",
                p.expires_at, p.policy_name
            )),
            Admission::Refusing(why) => Err(why.to_string()),
        }
    }

    /// The GPUs the node serves on, once placed.
    pub fn pinned(&self) -> Option<Vec<GpuUuid>> {
        self.pinned.lock().ok().and_then(|p| p.clone())
    }

    /// Re-reads the fleet and decides again.
    pub fn recheck(&self, now: OffsetDateTime) {
        let decided = self.decide(now);
        let next = match decided {
            Ok(p) => {
                if let Ok(mut pinned) = self.pinned.lock() {
                    if pinned.is_none() {
                        *pinned = Some(p.gpus.iter().map(|g| g.uuid.clone()).collect());
                    }
                }
                if let Ok(mut host) = self.pinned_host.lock() {
                    host.get_or_insert_with(|| p.host.clone());
                }
                // The same GPUs on the same attestations: the placement in force stands (its
                // batch stays one), only a change starts a new one.
                if let Admission::Serving(old) = self.admission() {
                    if same_footing(&old, &p) {
                        return;
                    }
                }
                tracing::info!(host = %p.host, gpus = p.gpus.len(), checkpoint = p.checkpoint_size, "serving");
                Admission::Serving(Arc::new(p))
            }
            Err(why) => {
                tracing::warn!(reason = %why, "refusing requests");
                Admission::Refusing(Arc::from(why))
            }
        };
        if let Ok(mut s) = self.state.write() {
            *s = next;
        }
    }

    fn decide(&self, now: OffsetDateTime) -> Result<Placed, String> {
        let log = self.log.lock().map_err(|_| "the log client failed".to_string())?;
        let host = self.pinned_host.lock().ok().and_then(|h| h.clone());
        let plan = match &host {
            Some(h) => node::plan_host(log.as_ref(), &self.log_key, &self.policy, self.requirements.clone(), now, h),
            None => node::plan(log.as_ref(), &self.log_key, &self.policy, self.requirements.clone(), now),
        }
        .map_err(|e| format!("cannot read the fleet from the log: {e}"))?;
        let pinned = self.pinned();
        let held = serving::hold(&plan, pinned.as_deref()).map_err(|e| e.to_string())?;
        serving::placed(log.as_ref(), &held).map_err(|e| e.to_string())
    }

    /// The log's size now, from its signed checkpoint (`None` when it cannot be read).
    fn log_size(&self) -> Option<u64> {
        let text = self.log.lock().ok()?.checkpoint().ok()?;
        open_checkpoint(text.as_bytes(), std::slice::from_ref(&self.log_key), None).ok().map(|o| o.checkpoint.size)
    }

    /// The re-check loop (its own thread): every `every`, re-decides when the log grew or the
    /// placement aged out; while refusing or when the log cannot be read, at least every `retry`.
    pub fn watch(self: Arc<Gate>, every: Duration, retry: Duration) {
        let mut since = std::time::Instant::now();
        loop {
            std::thread::sleep(every);
            let now = OffsetDateTime::now_utc();
            let size = self.log_size();
            let seen = self.seen_size.lock().map(|s| *s).unwrap_or(0);
            let aged = matches!(self.admission(), Admission::Serving(p) if now >= p.expires_at);
            let refusing = matches!(self.admission(), Admission::Refusing(_));
            // A refusal for a passing cause (the log unreadable for a moment) is retried even
            // when the log does not grow: a refusing node appends nothing to grow it.
            let due = match size {
                Some(size) => size != seen || aged || (refusing && since.elapsed() >= retry),
                None => since.elapsed() >= retry,
            };
            if due {
                self.recheck(now);
                if let (Some(size), Ok(mut s)) = (size, self.seen_size.lock()) {
                    *s = size;
                }
                since = std::time::Instant::now();
            }
        }
    }
}

/// Whether two placements rest on the same GPUs, attestations and policy (a checkpoint that only
/// grew changes nothing a receipt proves).
fn same_footing(a: &Placed, b: &Placed) -> bool {
    let refs = |p: &Placed| p.gpus.iter().map(|g| (g.uuid.clone(), g.attestation.log_index)).collect::<Vec<_>>();
    a.policy_digest == b.policy_digest && a.expires_at == b.expires_at && a.host == b.host && refs(a) == refs(b)
}
