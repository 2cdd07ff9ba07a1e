//! A GPU's trail through the log, as a reader computes it from the log's entries: every host
//! that attested its UUID (first and last log index there, and the signer's time at each), each
//! identity fact's last known value and its last change. The anomalies a history shows
//! (a move, one UUID on two hosts, a VBIOS or identity change) come from the trail and the facts
//! of two attestations — never from what an agent concluded about its own history.
//!
//! [`Trail::fold`] is the definition: the ledger keeps the same trail as a view (`gpu_hosts`,
//! `gpus.known` and `gpus.changes`, `gpu_facts`), the audit checks that view against a fold over the entries, and a
//! bundle or the dashboard's cache folds it from the entries it holds.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use std::collections::BTreeMap;

use crate::fingerprint::{Fingerprint, GpuUuid};
use crate::identify::{Anomaly, HistoryRules};
use crate::merkle::Hash;

/// The attestations of one GPU on one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSpan {
    pub host: String,
    pub first_index: u64,
    pub last_index: u64,
    /// The host's attestation of the GPU before `last_index`, if any: a derived nonce's
    /// checkpoint must include it for the report to count as fresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_index: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    pub first_observed_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_observed_at: OffsetDateTime,
}

/// A fact's value as the trail knows it: since which attestation, on which host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    pub value: String,
    /// The attestation that first gave this value (the ones after it agreed or said nothing).
    pub index: u64,
    pub host: String,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

/// The last time a fact changed: from what it was known as, to what, at which attestation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub from: Known,
    pub to: String,
    pub index: u64,
}

/// Facts that belong to where a GPU sits, not to the GPU: compared only on one host (a move
/// changes them, and the move is its own anomaly).
pub const HOST_BOUND: &[&str] = &["module_id", "slot", "chassis_serial"];

/// What a GPU's earlier attestations say about it, in log order (never the signer's clock).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trail {
    /// The latest attestation folded in: its log index and the GPU's fingerprint digest there.
    #[serde(default)]
    pub latest: Option<(u64, Hash)>,
    /// Every host that attested the GPU, by name.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostSpan>,
    /// Each followed fact's last known value. A fact an attestation leaves out keeps its value:
    /// leaving the VBIOS out and then giving another hides nothing.
    #[serde(default, skip_serializing)]
    pub known: BTreeMap<String, Known>,
    /// Each fact's last change. It stands until the fact changes again.
    #[serde(default)]
    pub changes: BTreeMap<String, Change>,
}

/// The facts of a fingerprint a trail follows, with their values: every stable identity fact
/// but the UUID (the trail's key) and NVLink state (the link checks cover it).
pub fn followed(fingerprint: &Fingerprint) -> Vec<(&str, &str)> {
    fingerprint
        .fields
        .iter()
        .filter(|(k, _)| k != "uuid" && !k.starts_with("nvlink."))
        .filter_map(|(k, v)| Some((k.as_str(), v.as_deref()?)))
        .collect()
}

impl Trail {
    /// Takes in an attestation of the GPU at log `index` (attestations come in log order) with
    /// its followed facts (all of them, or only those that differ from [`Trail::known`]: the
    /// result is the same). Returns the facts whose known value it set.
    pub fn fold(
        &mut self,
        index: u64,
        host: &str,
        observed_at: OffsetDateTime,
        digest: Hash,
        facts: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        self.latest = Some((index, digest));
        match self.hosts.get_mut(host) {
            Some(span) => {
                if span.last_index < index {
                    span.previous_index = Some(span.last_index);
                }
                span.last_index = index;
                span.last_observed_at = observed_at;
            }
            None => {
                let span = HostSpan {
                    host: host.to_string(),
                    first_index: index,
                    last_index: index,
                    previous_index: None,
                    first_observed_at: observed_at,
                    last_observed_at: observed_at,
                };
                self.hosts.insert(host.to_string(), span);
            }
        }
        let mut set = Vec::new();
        for (field, value) in facts {
            let now = Known { value: value.to_string(), index, host: host.to_string(), since: observed_at };
            match self.known.get(*field) {
                Some(k) if k.value == *value => continue,
                Some(k) if HOST_BOUND.contains(field) && k.host != host => {
                    // Another host's slot: the fact starts over there.
                    self.changes.remove(*field);
                }
                Some(k) => {
                    let change = Change { from: k.clone(), to: value.to_string(), index };
                    self.changes.insert(field.to_string(), change);
                }
                None => {}
            }
            self.known.insert(field.to_string(), now);
            set.push((field.to_string(), value.to_string()));
        }
        set
    }

    /// An admin's settlement (an annotation with `settles_history`): the moves, second hosts and
    /// changes so far are reviewed. Only the current host's span stays (the one attested last),
    /// the changes go, and the facts' known values become the baseline.
    pub fn settle(&mut self) {
        let current = self.hosts.values().max_by_key(|h| h.last_index).map(|h| h.host.clone());
        self.hosts.retain(|host, _| Some(host) == current.as_ref());
        self.changes.clear();
    }

    /// The log index of the GPU's attestation by `host` before the one at `index` (when the
    /// trail has folded that far), for a derived nonce's freshness bound ([`crate::standing::InLog`]).
    pub fn previous_on(&self, host: &str, index: u64) -> Option<u64> {
        let span = self.hosts.get(host)?;
        match span.last_index.cmp(&index) {
            std::cmp::Ordering::Less => Some(span.last_index),
            std::cmp::Ordering::Equal => span.previous_index,
            std::cmp::Ordering::Greater => None,
        }
    }

    /// The anomalies of the facts' changes: `vbios-changed` for the VBIOS, `identity-changed`
    /// for any other fact.
    pub fn fact_anomalies(&self, uuid: &GpuUuid) -> Vec<Anomaly> {
        self.changes
            .iter()
            .map(|(field, c)| match field.as_str() {
                "vbios" => Anomaly::VbiosChanged {
                    uuid: uuid.clone(),
                    from: c.from.value.clone(),
                    to: c.to.clone(),
                    previous_at: crate::fleet::rfc3339(c.from.since),
                },
                _ => Anomaly::IdentityChanged {
                    uuid: uuid.clone(),
                    field: field.clone(),
                    from: Some(c.from.value.clone()),
                    to: Some(c.to.clone()),
                },
            })
            .collect()
    }

    /// The host anomalies of GPU `uuid`, now on `current_host`: `uuid-on-two-hosts` when two
    /// hosts' attestations interleave in the log (a GPU that went back, or two hosts reporting it
    /// at once) or follow each other within the concurrency window; otherwise `moved-host` when
    /// another host attested it before the current one.
    pub fn host_anomalies(&self, uuid: &GpuUuid, current_host: &str, rules: HistoryRules) -> Vec<Anomaly> {
        if self.hosts.len() < 2 {
            return Vec::new();
        }
        let mut spans: Vec<&HostSpan> = self.hosts.values().collect();
        spans.sort_by_key(|s| s.first_index);
        // In order of first attestation, each span against the one before it that reached
        // furthest (in log index and in signer time): interleaving or closeness with any earlier
        // span shows there. One pass, whatever the number of hosts.
        let mut at_once: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
        let mut furthest_index: &HostSpan = spans[0];
        let mut latest_seen: &HostSpan = spans[0];
        for later in spans.iter().skip(1) {
            if later.first_index < furthest_index.last_index {
                at_once.extend([furthest_index.host.as_str(), later.host.as_str()]);
            }
            if later.first_observed_at - latest_seen.last_observed_at < rules.concurrency_window {
                at_once.extend([latest_seen.host.as_str(), later.host.as_str()]);
            }
            if later.last_index > furthest_index.last_index {
                furthest_index = later;
            }
            if later.last_observed_at > latest_seen.last_observed_at {
                latest_seen = later;
            }
        }
        if !at_once.is_empty() {
            let hosts = at_once.into_iter().map(str::to_string).collect();
            return vec![Anomaly::UuidOnTwoHosts { uuid: uuid.clone(), hosts }];
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
