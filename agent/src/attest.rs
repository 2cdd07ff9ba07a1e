//! From a probe report to a receipt the agent believes: identification (with the anomalies the
//! log's history shows), a signed `gpu-attestation/v1` record, the spool, the log, and the
//! checks on the log's answer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chipledger_domain::catalog::Catalog;
use chipledger_domain::dsse::Envelope;
use chipledger_domain::fingerprint::{GpuFacts, GpuUuid};
use chipledger_domain::identify::{history_anomalies, identify, HistoryRules, Sighting};
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::{CheckpointTracker, Clock, LogClient, Receipt};
use chipledger_domain::merkle::Hash;
use chipledger_domain::records::{sign_record, AttestedGpu, GpuAttestation, HostFacts, Record, FORMAT_VERSION};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::probe::{EvidenceRequest, ProbeReport};
use crate::spool::{Spool, Spooled};
use crate::Error;
use chipledger_domain::evidence::derived_nonce;

/// How many of a GPU's latest log entries the history checks read.
pub const HISTORY_DEPTH: usize = 64;

/// What the agent remembers between runs (`state.json` in its state directory).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// The last counter this key signed; the next one is larger.
    pub last_counter: u64,
    /// The latest checkpoint the agent verified (signed note text): every later one must be
    /// consistent with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

/// Everything an [`Attestor`] needs.
pub struct AttestorConfig {
    pub key: SigningKey,
    pub log: Box<dyn LogClient + Send>,
    /// The log's verifier key: receipts are checked against it.
    pub log_key: VerifierKey,
    /// The agent's state directory (spool and `state.json`).
    pub state_dir: PathBuf,
    pub clock: Arc<dyn Clock>,
    pub history_rules: HistoryRules,
}

impl std::fmt::Debug for AttestorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestorConfig")
            .field("key_id", &self.key.key_id())
            .field("log_key", &self.log_key.to_string())
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

/// One record the log accepted, with the receipt that proves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub counter: u64,
    pub receipt: Receipt,
    pub tree_size: u64,
}

/// What one pass over the spool did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flush {
    pub accepted: Vec<Accepted>,
    /// Records the log refused for good, moved to `spool/rejected/`, with the reason.
    pub rejected: Vec<(PathBuf, String)>,
    /// Why the pass stopped early (the log is unreachable or busy); the rest stays spooled.
    pub unavailable: Option<String>,
    /// Envelopes still waiting.
    pub remaining: usize,
}

/// Signs, spools, submits and checks attestations for one host key.
pub struct Attestor {
    key: SigningKey,
    log: Box<dyn LogClient + Send>,
    log_key: VerifierKey,
    spool: Spool,
    state_path: PathBuf,
    state: AgentState,
    clock: Arc<dyn Clock>,
    history_rules: HistoryRules,
    catalog: &'static Catalog,
}

impl std::fmt::Debug for Attestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attestor")
            .field("key_id", &self.key.key_id())
            .field("spool", &self.spool.dir())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Attestor {
    pub fn new(config: AttestorConfig) -> Result<Attestor, Error> {
        let spool = Spool::open(&config.state_dir.join("spool"))?;
        let state_path = config.state_dir.join("state.json");
        let state = match std::fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Spool {
                path: state_path.clone(),
                reason: format!("agent state is not valid JSON: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AgentState::default(),
            Err(e) => return Err(Error::Io { path: state_path, source: e }),
        };
        Ok(Attestor {
            key: config.key,
            log: config.log,
            log_key: config.log_key,
            spool,
            state_path,
            state,
            clock: config.clock,
            history_rules: config.history_rules,
            catalog: Catalog::embedded()?,
        })
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    pub fn state(&self) -> &AgentState {
        &self.state
    }

    /// Builds the attestation for a probe report: each GPU identified, with the anomalies its
    /// history in the log shows. If the log cannot be read the record is still made, without
    /// history checks (a warning says so).
    pub fn build(&mut self, report: &ProbeReport, host: HostFacts) -> Result<GpuAttestation, Error> {
        self.build_with(report, host, None)
    }

    /// Reserves the next record's counter and, for each GPU, the nonce its attestation report
    /// is to be made over: derived from the last log checkpoint this agent verified, the host,
    /// the counter and the GPU (`chipledger_domain::evidence::derived_nonce`), so any reader can
    /// tell the report is no older than that checkpoint; random when the agent has seen no
    /// checkpoint yet. Pass the counter to [`Attestor::build_with`].
    pub fn evidence_plan(&mut self, gpus: &[GpuUuid], hostname: &str) -> Result<(u64, Vec<EvidenceRequest>), Error> {
        let counter = self.next_counter(self.clock.now())?;
        let checkpoint = self.state.checkpoint.clone();
        let requests = gpus
            .iter()
            .map(|gpu| {
                let nonce = match &checkpoint {
                    Some(note) => derived_nonce(note, hostname, counter, gpu.as_str()),
                    None => {
                        let mut n = [0u8; 32];
                        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut n);
                        n
                    }
                };
                EvidenceRequest { gpu: gpu.clone(), nonce, checkpoint: checkpoint.clone() }
            })
            .collect();
        Ok((counter, requests))
    }

    /// [`Attestor::build`], with the counter reserved by [`Attestor::evidence_plan`] (the one
    /// the evidence nonces were derived with). Each GPU whose certificate chain comes with the
    /// report names its hardware identity (`ueid`, the leaf certificate's serial).
    pub fn build_with(
        &mut self,
        report: &ProbeReport,
        host: HostFacts,
        counter: Option<u64>,
    ) -> Result<GpuAttestation, Error> {
        let now = self.clock.now();
        let history = match sightings(self.log.as_ref(), &report.gpus) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "the log's history is not readable now; history anomalies are not checked in this record");
                Vec::new()
            }
        };
        let mut gpus = Vec::with_capacity(report.gpus.len());
        for facts in &report.gpus {
            let mut facts = facts.clone();
            facts.ueid = facts.uuid.as_ref().and_then(|u| crate::evidence::ueid_of(u, &report.vendor_evidence));
            let facts = &facts;
            let Some(uuid) = facts.uuid.clone() else {
                tracing::warn!(bus = ?facts.pci_bus_id, "a GPU without a readable UUID is left out of the attestation");
                continue;
            };
            let mut identification = identify(self.catalog, facts);
            let fingerprint = facts.fingerprint();
            let current = Sighting {
                uuid: uuid.clone(),
                serial: facts.serial.clone(),
                host: host.hostname.clone(),
                vbios_version: facts.vbios_version.clone(),
                fingerprint_digest: fingerprint.digest(),
                fingerprint: Some(fingerprint),
                observed_at: now,
            };
            identification.anomalies.extend(history_anomalies(&current, &history, self.history_rules));
            gpus.push(AttestedGpu::new(uuid, facts.clone(), identification));
        }
        let counter = match counter {
            Some(c) => c,
            None => self.next_counter(now)?,
        };
        Ok(GpuAttestation {
            format_version: FORMAT_VERSION,
            counter,
            observed_at: now,
            source: report.source,
            host,
            driver: report.driver.clone(),
            gpus,
            vendor_evidence: report.vendor_evidence.clone(),
        })
    }

    /// Signs a record and stores it in the spool; it is sent by [`Attestor::flush`].
    pub fn sign_and_spool(&mut self, attestation: &GpuAttestation) -> Result<Spooled, Error> {
        let envelope = sign_record(attestation, &self.key)?.to_json();
        // The log refuses a larger entry for good: say so now rather than spool it to be
        // moved aside at the next flush.
        let limit = chipledger_domain::records::MAX_ENTRY_BYTES;
        if envelope.len() > limit {
            return Err(Error::TooLarge { size: envelope.len(), limit });
        }
        self.spool.put(attestation.counter, &envelope)
    }

    /// Sends every spooled record, oldest first, and checks each receipt. Stops at the first
    /// record the log cannot take now (it and the rest stay spooled); a record refused for good
    /// is moved aside so it cannot block the queue. A receipt that does not verify is an error:
    /// the record stays spooled and the log is not believed.
    pub fn flush(&mut self) -> Result<Flush, Error> {
        let mut out = Flush::default();
        let pending = self.spool.pending()?;
        for (done, item) in pending.iter().enumerate() {
            let envelope = self.spool.read(item)?;
            match self.log.submit(std::slice::from_ref(&envelope)) {
                Ok(receipts) => {
                    let receipt = receipts.into_iter().next().ok_or_else(|| Error::Receipt {
                        index: 0,
                        reason: "the log answered with no receipt".into(),
                    })?;
                    let tree_size = self.check_receipt(&envelope, &receipt)?;
                    self.spool.remove(item)?;
                    tracing::info!(
                        counter = item.counter,
                        index = receipt.index,
                        tree_size,
                        duplicate = receipt.duplicate,
                        "attestation in the log"
                    );
                    out.accepted.push(Accepted { counter: item.counter, receipt, tree_size });
                }
                Err(chipledger_domain::Error::LogRejected(reason)) => {
                    let dest = self.spool.reject(item, &reason)?;
                    tracing::error!(counter = item.counter, %reason, moved_to = %dest.display(), "the log refused an attestation");
                    out.rejected.push((dest, reason));
                }
                Err(e) => {
                    tracing::warn!(error = %e, waiting = pending.len() - done, "the log is unavailable; attestations stay in the spool");
                    out.unavailable = Some(e.to_string());
                    out.remaining = pending.len() - done;
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// Checks a receipt: the checkpoint is signed by the log's key, the leaf is this
    /// envelope, the inclusion proof leads to the checkpoint's root, and the checkpoint extends
    /// the last one this agent saw. Returns the checkpoint's tree size.
    fn check_receipt(&mut self, envelope: &[u8], receipt: &Receipt) -> Result<u64, Error> {
        let bad = |reason: String| Error::Receipt { index: receipt.index, reason };
        let cp = receipt.verify(envelope, &self.log_key).map_err(|e| bad(e.to_string()))?;
        let mut tracker = CheckpointTracker::new(self.log_key.clone(), self.state.checkpoint.as_deref())
            .map_err(|e| bad(format!("the saved checkpoint no longer opens: {e}")))?;
        let old_size = tracker.last().map_or(0, |c| c.size);
        // The consistency proof is fetched here, so that an unreachable log is not mistaken for
        // an inconsistent one.
        let proof = match tracker.last() {
            Some(old) if old.size < cp.size => self.log.consistency_proof(old.size, cp.size)?,
            // A receipt for a duplicate may carry an older checkpoint than one seen since.
            Some(old) if cp.size < old.size => self.log.consistency_proof(cp.size, old.size)?,
            _ => Vec::new(),
        };
        tracker.extend(&receipt.checkpoint, |_, _| Ok(proof)).map_err(|e| Error::Inconsistent {
            old_size,
            new_size: cp.size,
            reason: e.to_string(),
        })?;
        self.state.checkpoint = tracker.last_text().map(str::to_string);
        self.save_state()?;
        Ok(cp.size)
    }

    /// The next counter: above the last one and at least the time in microseconds, so a lost
    /// state file cannot make a replayed-looking counter.
    fn next_counter(&mut self, now: OffsetDateTime) -> Result<u64, Error> {
        let micros = u64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(0);
        let counter = micros.max(self.state.last_counter.saturating_add(1));
        self.state.last_counter = counter;
        self.save_state()?;
        Ok(counter)
    }

    fn save_state(&self) -> Result<(), Error> {
        let bytes = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| Error::Spool { path: self.state_path.clone(), reason: e.to_string() })?;
        write_atomic(&self.state_path, &bytes)
    }
}

/// Earlier sightings relevant to these GPUs: the latest [`HISTORY_DEPTH`] attestations of each
/// UUID, and the GPUs the log knows under the same serial and another UUID.
pub fn sightings(log: &dyn LogClient, gpus: &[GpuFacts]) -> Result<Vec<Sighting>, chipledger_domain::Error> {
    let uuids: Vec<&GpuUuid> = gpus.iter().filter_map(|g| g.uuid.as_ref()).collect();
    // One attestation usually names every GPU of the host: read each entry once.
    let mut entries = std::collections::BTreeMap::new();
    for uuid in &uuids {
        for entry in log.history(uuid, Some(HISTORY_DEPTH))? {
            entries.entry(entry.index).or_insert(entry);
        }
    }
    let mut out = Vec::new();
    for entry in entries.values() {
        let envelope = Envelope::from_json(entry.envelope.as_bytes())?;
        let Record::GpuAttestation(att) = Record::from_payload(&envelope.payload_bytes()?)? else { continue };
        for g in att.gpus.iter().filter(|g| uuids.contains(&&g.uuid)) {
            out.push(Sighting {
                uuid: g.uuid.clone(),
                serial: g.facts.serial.clone(),
                host: att.host.hostname.clone(),
                vbios_version: g.facts.vbios_version.clone(),
                fingerprint_digest: g.fingerprint_digest,
                fingerprint: Some(g.fingerprint.clone()),
                observed_at: att.observed_at,
            });
        }
    }
    for g in gpus {
        let (Some(uuid), Some(serial)) = (g.uuid.as_ref(), g.serial.as_deref()) else { continue };
        for inv in log.inventory_by_serial(serial)? {
            if &inv.uuid != uuid {
                out.push(Sighting {
                    uuid: inv.uuid,
                    serial: inv.serial,
                    host: inv.host,
                    vbios_version: None,
                    fingerprint_digest: inv.fingerprint_digest,
                    fingerprint: None,
                    observed_at: inv.observed_at,
                });
            }
        }
    }
    Ok(out)
}

/// Writes a file by rename so a crash leaves the old or the new contents, never half.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp).map_err(Error::io(&tmp))?;
    file.write_all(bytes).and_then(|_| file.sync_all()).map_err(Error::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io(path))
}

/// The fingerprint digests of a report's GPUs (for logs and receipts).
pub fn digests(att: &GpuAttestation) -> Vec<(GpuUuid, Hash)> {
    att.gpus.iter().map(|g| (g.uuid.clone(), g.fingerprint_digest)).collect()
}
