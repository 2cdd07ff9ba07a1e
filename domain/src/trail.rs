//! A GPU's trail through the log, as a reader computes it from the log's entries: every host
//! that attested its UUID (first and last log index there, and the signer's time at each) and
//! the last attestation before its fingerprint last changed. The anomalies a history shows
//! (a move, one UUID on two hosts, a VBIOS or identity change) come from the trail and the facts
//! of two attestations — never from what an agent concluded about its own history.
//!
//! [`Trail::fold`] is the definition: the ledger keeps the same trail as a view (`gpu_hosts`,
//! `gpus.changed_from`), the audit checks that view against a fold over the entries, and a
//! bundle or the dashboard's cache folds it from the entries it holds.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::fingerprint::GpuUuid;
use crate::identify::{Anomaly, HistoryRules};
use crate::merkle::Hash;

/// The attestations of one GPU on one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSpan {
    pub host: String,
    pub first_index: u64,
    pub last_index: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub first_observed_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_observed_at: OffsetDateTime,
}

/// What a GPU's earlier attestations say about it, in log order (never the signer's clock).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trail {
    /// The latest attestation folded in: its log index and the GPU's fingerprint digest there.
    #[serde(default)]
    pub latest: Option<(u64, Hash)>,
    /// The last attestation before the fingerprint last changed: what the current facts are
    /// compared with. `None` while the GPU has only ever had one fingerprint.
    #[serde(default)]
    pub changed_from: Option<u64>,
    /// Every host that attested the GPU, by the index of its first attestation there.
    #[serde(default)]
    pub hosts: Vec<HostSpan>,
}

impl Trail {
    /// Takes in an attestation of the GPU at log `index` (attestations come in log order).
    pub fn fold(&mut self, index: u64, host: &str, observed_at: OffsetDateTime, digest: Hash) {
        if let Some((latest, before)) = self.latest {
            if before != digest {
                self.changed_from = Some(latest);
            }
        }
        self.latest = Some((index, digest));
        match self.hosts.iter_mut().find(|h| h.host == host) {
            Some(span) => {
                span.last_index = index;
                span.last_observed_at = observed_at;
            }
            None => self.hosts.push(HostSpan {
                host: host.to_string(),
                first_index: index,
                last_index: index,
                first_observed_at: observed_at,
                last_observed_at: observed_at,
            }),
        }
    }

    /// The host anomalies of GPU `uuid`, now on `current_host`: `uuid-on-two-hosts` when two
    /// hosts' attestations interleave in the log (a GPU that went back, or two hosts reporting it
    /// at once) or follow each other within the concurrency window; otherwise `moved-host` when
    /// another host attested it before the current one.
    pub fn host_anomalies(&self, uuid: &GpuUuid, current_host: &str, rules: HistoryRules) -> Vec<Anomaly> {
        if self.hosts.len() < 2 {
            return Vec::new();
        }
        let mut spans: Vec<&HostSpan> = self.hosts.iter().collect();
        spans.sort_by_key(|s| s.first_index);
        let mut at_once: Vec<String> = Vec::new();
        for (i, later) in spans.iter().enumerate().skip(1) {
            for earlier in &spans[..i] {
                let interleaved = later.first_index < earlier.last_index;
                let close = later.first_observed_at - earlier.last_observed_at < rules.concurrency_window;
                if interleaved || close {
                    at_once.extend([earlier.host.clone(), later.host.clone()]);
                }
            }
        }
        if !at_once.is_empty() {
            at_once.sort();
            at_once.dedup();
            return vec![Anomaly::UuidOnTwoHosts { uuid: uuid.clone(), hosts: at_once }];
        }
        // No interleaving: the spans follow each other, and the last one is the current host's.
        let (previous, last) = (spans[spans.len() - 2], spans[spans.len() - 1]);
        if last.host != current_host {
            return Vec::new();
        }
        vec![Anomaly::MovedHost {
            uuid: uuid.clone(),
            from: previous.host.clone(),
            to: last.host.clone(),
            last_seen_on_old: crate::fleet::rfc3339(previous.last_observed_at),
        }]
    }
}
