//! `chipledger agent run`: attest on an interval (with jitter) and at once when the set of GPU
//! fingerprints changes; keep the spool flowing to the log with backoff while it is away; stop
//! between steps on [`Control::Stop`], re-read the schedule on [`Control::Reload`].
//!
//! A stop never loses a record: each one is in the spool before it is sent, and the next start
//! sends what is left, in order.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rand_core::RngCore;

use crate::attest::Attestor;
use crate::probe::{GpuProbe, ProbeReport};
use crate::Error;
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::merkle::Hash;
use chipledger_domain::records::HostFacts;

/// When the daemon acts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Re-attest this often even when nothing changed.
    pub interval: Duration,
    /// ± this fraction of the interval, drawn anew each time.
    pub jitter: f64,
    /// Look at the GPUs this often for changes.
    pub poll: Duration,
    /// First and longest wait between tries while the log is unreachable.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            interval: Duration::from_secs(3600),
            jitter: 0.1,
            poll: Duration::from_secs(30),
            retry_min: Duration::from_secs(2),
            retry_max: Duration::from_secs(600),
        }
    }
}

/// Messages to a running daemon (the binary turns SIGTERM/SIGINT and SIGHUP into these).
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    Stop,
    /// New schedule and host name override, from a re-read configuration.
    Reload {
        schedule: Schedule,
        hostname: Option<String>,
    },
}

/// Counters of what a daemon run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    pub cycles: u64,
    pub attestations: u64,
    /// Of those, made because the GPU set changed.
    pub on_change: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub probe_failures: u64,
    pub log_unavailable: u64,
}

/// How the daemon learns the host facts (sysinfo on a real host; fixed in tests).
pub type HostFn = Box<dyn FnMut(Option<&str>) -> HostFacts + Send>;

/// The daemon's loop state.
pub struct Daemon {
    attestor: Attestor,
    probe: Box<dyn GpuProbe>,
    host: HostFn,
    schedule: Schedule,
    hostname: Option<String>,
    stats: RunStats,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon").field("schedule", &self.schedule).field("stats", &self.stats).finish_non_exhaustive()
    }
}

impl Daemon {
    pub fn new(
        attestor: Attestor,
        probe: Box<dyn GpuProbe>,
        host: HostFn,
        schedule: Schedule,
        hostname: Option<String>,
    ) -> Daemon {
        Daemon { attestor, probe, host, schedule, hostname, stats: RunStats::default() }
    }

    pub fn attestor(&self) -> &Attestor {
        &self.attestor
    }

    /// Runs until [`Control::Stop`] arrives or the sender is dropped.
    pub fn run(&mut self, control: &Receiver<Control>) -> Result<RunStats, Error> {
        let mut last_set: Option<Vec<(Option<GpuUuid>, Hash)>> = None;
        let mut next_attest = Instant::now();
        let mut next_flush = Instant::now();
        let mut retry = self.schedule.retry_min;
        tracing::info!(
            interval_s = self.schedule.interval.as_secs(),
            poll_ms = self.schedule.poll.as_millis() as u64,
            "agent daemon started"
        );
        loop {
            self.stats.cycles += 1;
            match self.probe.probe() {
                Ok(report) => {
                    let set = report.identity_set();
                    let changed = last_set.as_ref().is_some_and(|old| *old != set);
                    if changed || last_set.is_none() || Instant::now() >= next_attest {
                        if changed {
                            self.stats.on_change += 1;
                            tracing::info!(
                                gpus = report.gpus.len(),
                                "the set of GPU fingerprints changed; attesting now"
                            );
                        }
                        match self.attest(report) {
                            Ok(()) => {
                                last_set = Some(set);
                                next_attest = Instant::now() + jittered(self.schedule.interval, self.schedule.jitter);
                                next_flush = Instant::now();
                            }
                            Err(e) => tracing::error!(error = %e, "could not make an attestation"),
                        }
                    }
                }
                Err(e) => {
                    self.stats.probe_failures += 1;
                    tracing::error!(error = %e, "probing the GPUs failed");
                }
            }
            if Instant::now() >= next_flush && !self.attestor.spool().pending()?.is_empty() {
                match self.attestor.flush() {
                    Ok(f) => {
                        self.stats.accepted += f.accepted.len() as u64;
                        self.stats.rejected += f.rejected.len() as u64;
                        if f.unavailable.is_some() {
                            self.stats.log_unavailable += 1;
                            next_flush = Instant::now() + retry;
                            retry = (retry * 2).min(self.schedule.retry_max);
                        } else {
                            retry = self.schedule.retry_min;
                        }
                    }
                    Err(e) => {
                        self.stats.log_unavailable += 1;
                        tracing::error!(error = %e, retry_s = retry.as_secs_f64(), "sending attestations failed; they stay in the spool");
                        next_flush = Instant::now() + retry;
                        retry = (retry * 2).min(self.schedule.retry_max);
                    }
                }
            }
            let mut wake = Instant::now() + self.schedule.poll;
            wake = wake.min(next_attest);
            if !self.attestor.spool().pending()?.is_empty() {
                wake = wake.min(next_flush.max(Instant::now()));
            }
            match control.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    let waiting = self.attestor.spool().pending()?.len();
                    tracing::info!(waiting, "agent daemon stopping");
                    return Ok(self.stats.clone());
                }
                Ok(Control::Reload { schedule, hostname }) => {
                    tracing::info!(interval_s = schedule.interval.as_secs(), "configuration reloaded");
                    self.schedule = schedule;
                    self.hostname = hostname;
                    retry = self.schedule.retry_min;
                    next_attest = next_attest.min(Instant::now() + jittered(schedule.interval, schedule.jitter));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn attest(&mut self, mut report: ProbeReport) -> Result<(), Error> {
        let uuids: Vec<GpuUuid> = report.gpus.iter().filter_map(|g| g.uuid.clone()).collect();
        let host = (self.host)(self.hostname.as_deref());
        let (counter, requests) = self.attestor.evidence_plan(&uuids, &host.hostname)?;
        report.vendor_evidence = self.probe.vendor_evidence(&requests);
        let att = self.attestor.build_with(&report, host, Some(counter))?;
        let spooled = self.attestor.sign_and_spool(&att)?;
        self.stats.attestations += 1;
        tracing::info!(counter = spooled.counter, gpus = att.gpus.len(), "attestation signed and spooled");
        Ok(())
    }
}

/// `interval` ± `jitter`·`interval`, uniformly (the binary's landmark responder draws its waits
/// the same way).
pub fn jittered(interval: Duration, jitter: f64) -> Duration {
    let u = (rand_core::OsRng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    interval.mul_f64((1.0 + jitter * (2.0 * u - 1.0)).max(0.0))
}
