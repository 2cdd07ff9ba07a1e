//! Placement: a pure function from (policy, candidate GPUs as of a checkpoint, model
//! requirements, now) to the chosen GPU set on one host — and a reason for every GPU not chosen.
//! Deterministic: the same inputs give the same placement.

use std::collections::BTreeMap;

use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::identify::Anomaly;
use chipledger_domain::records::ProbeSource;
use chipledger_domain::rules::VerdictKind;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::policy::Policy;
use crate::requirements::Requirements;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// One GPU as the scheduler sees it: its latest attestation and what the log says about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub uuid: GpuUuid,
    pub host: String,
    pub serial: Option<String>,
    pub sku: Option<String>,
    pub memory_total_bytes: Option<u64>,
    pub source: ProbeSource,
    #[serde(with = "time::serde::rfc3339")]
    pub observed_at: OffsetDateTime,
    pub anomalies: Vec<Anomaly>,
    pub verdict: VerdictKind,
    /// The Oct 2023 classification label (`3A090.a.1`, `not 3A090`, …), when the SKU is known.
    pub classification: Option<String>,
    /// Another workload holds it.
    #[serde(default)]
    pub busy: bool,
    /// The attestation this state comes from.
    pub attestation_index: u64,
}

/// Why a GPU was not chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Reason {
    Stale {
        age_seconds: i64,
        max_seconds: u64,
    },
    ImportedOnly {
        source: ProbeSource,
    },
    Anomaly {
        kind: String,
        detail: String,
    },
    Verdict {
        verdict: VerdictKind,
    },
    Class {
        classification: Option<String>,
    },
    Sku {
        sku: Option<String>,
    },
    Host {
        host: String,
    },
    UnknownMemory,
    Busy,
    /// Qualifies, but its host's qualifying GPUs together cannot hold the model.
    HostTooSmall {
        host: String,
        available_bytes: u64,
        needed_bytes: u64,
    },
    /// Qualifies; the model fits with fewer GPUs, or on another host.
    NotNeeded {
        chosen_host: String,
    },
}

impl Reason {
    pub fn explain(&self) -> String {
        match self {
            Reason::Stale { age_seconds, max_seconds } => {
                format!(
                    "attested {} ago; the policy allows {}",
                    human_age(*age_seconds),
                    human_age(*max_seconds as i64)
                )
            }
            Reason::ImportedOnly { source } => {
                format!(
                    "facts imported from {} (evidence, not a live attestation); the policy requires a live probe",
                    source_label(*source)
                )
            }
            Reason::Anomaly { kind, detail } => format!("anomaly {kind}: {detail}"),
            Reason::Verdict { verdict } => format!("acquisition verdict {verdict} is not allowed by the policy"),
            Reason::Class { classification } => {
                format!(
                    "classification {} is not allowed by the policy",
                    classification.as_deref().unwrap_or("unknown")
                )
            }
            Reason::Sku { sku } => format!("SKU {} is not allowed by the policy", sku.as_deref().unwrap_or("unknown")),
            Reason::Host { host } => format!("host {host} is not allowed by the policy"),
            Reason::UnknownMemory => "memory size unknown".to_string(),
            Reason::Busy => "busy with another workload".to_string(),
            Reason::HostTooSmall { host, available_bytes, needed_bytes } => format!(
                "qualifies, but {host}'s qualifying GPUs hold {:.1} GiB together and the model needs {:.1} GiB",
                *available_bytes as f64 / GIB,
                *needed_bytes as f64 / GIB
            ),
            Reason::NotNeeded { chosen_host } => format!("qualifies; not needed (placed on {chosen_host})"),
        }
    }
}

fn source_label(s: ProbeSource) -> &'static str {
    match s {
        ProbeSource::Nvml => "NVML",
        ProbeSource::NvidiaSmiXml => "an nvidia-smi XML dump",
        ProbeSource::NvidiaSmiText => "an nvidia-smi text dump",
    }
}

fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    if s >= 86_400 {
        format!("{:.1} d", s as f64 / 86_400.0)
    } else if s >= 3600 {
        format!("{:.1} h", s as f64 / 3600.0)
    } else if s >= 60 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

/// A GPU not chosen, with every reason that applies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotChosen {
    pub uuid: GpuUuid,
    pub host: String,
    pub reasons: Vec<Reason>,
}

/// The scheduler's decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// The host and GPUs chosen; empty when nothing qualifies.
    pub host: Option<String>,
    pub chosen: Vec<GpuUuid>,
    pub not_chosen: Vec<NotChosen>,
    /// Per host with qualifying GPUs: whether they can hold the model.
    pub hosts: Vec<HostFit>,
    pub needed_bytes: u64,
}

/// What one host's qualifying GPUs can hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostFit {
    pub host: String,
    pub qualifying_gpus: usize,
    pub qualifying_bytes: u64,
    /// GPUs it would take, when it can hold the model.
    pub gpus_needed: Option<usize>,
}

impl Placement {
    pub fn is_placed(&self) -> bool {
        self.host.is_some()
    }

    /// One line per GPU not chosen, for a refusal message.
    pub fn reasons_text(&self) -> Vec<String> {
        self.not_chosen
            .iter()
            .map(|n| {
                let why: Vec<String> = n.reasons.iter().map(Reason::explain).collect();
                format!("{} on {}: {}", n.uuid, n.host, why.join("; "))
            })
            .collect()
    }
}

/// Chooses GPUs on one host for `req`: every candidate is checked against the policy; among the
/// hosts whose qualifying GPUs can hold the model, the one needing the fewest GPUs wins (then
/// the least memory left idle, then the host name). Within a host, the largest GPUs first (then
/// by UUID).
pub fn place(policy: &Policy, candidates: &[Candidate], req: &Requirements, now: OffsetDateTime) -> Placement {
    let mut not_chosen: Vec<NotChosen> = Vec::new();
    let mut eligible: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for c in candidates {
        let reasons = disqualify(policy, c, now);
        if reasons.is_empty() {
            eligible.entry(c.host.as_str()).or_default().push(c);
        } else {
            not_chosen.push(NotChosen { uuid: c.uuid.clone(), host: c.host.clone(), reasons });
        }
    }
    let needed = req.total_bytes;
    let mut hosts = Vec::with_capacity(eligible.len());
    let mut best: Option<(usize, u64, &str)> = None;
    for (host, gpus) in eligible.iter_mut() {
        gpus.sort_by(|a, b| {
            b.memory_total_bytes.cmp(&a.memory_total_bytes).then_with(|| a.uuid.as_str().cmp(b.uuid.as_str()))
        });
        let total: u64 = gpus.iter().filter_map(|g| g.memory_total_bytes).sum();
        let mut sum = 0u64;
        let mut k = None;
        for (i, g) in gpus.iter().enumerate() {
            sum = sum.saturating_add(g.memory_total_bytes.unwrap_or(0));
            if sum >= needed {
                k = Some(i + 1);
                break;
            }
        }
        hosts.push(HostFit {
            host: host.to_string(),
            qualifying_gpus: gpus.len(),
            qualifying_bytes: total,
            gpus_needed: k,
        });
        if let Some(k) = k {
            let idle = sum - needed;
            if best.is_none_or(|(bk, bi, bh)| (k, idle, *host) < (bk, bi, bh)) {
                best = Some((k, idle, host));
            }
        }
    }
    let mut chosen = Vec::new();
    let chosen_host = best.map(|(_, _, h)| h.to_string());
    for (host, gpus) in &eligible {
        match (&chosen_host, best) {
            (Some(ch), Some((k, _, _))) if ch == host => {
                for (i, g) in gpus.iter().enumerate() {
                    if i < k {
                        chosen.push(g.uuid.clone());
                    } else {
                        not_chosen.push(NotChosen {
                            uuid: g.uuid.clone(),
                            host: g.host.clone(),
                            reasons: vec![Reason::NotNeeded { chosen_host: ch.clone() }],
                        });
                    }
                }
            }
            (Some(ch), _) => {
                for g in gpus {
                    not_chosen.push(NotChosen {
                        uuid: g.uuid.clone(),
                        host: g.host.clone(),
                        reasons: vec![Reason::NotNeeded { chosen_host: ch.clone() }],
                    });
                }
            }
            (None, _) => {
                let available: u64 = gpus.iter().filter_map(|g| g.memory_total_bytes).sum();
                for g in gpus {
                    not_chosen.push(NotChosen {
                        uuid: g.uuid.clone(),
                        host: g.host.clone(),
                        reasons: vec![Reason::HostTooSmall {
                            host: host.to_string(),
                            available_bytes: available,
                            needed_bytes: needed,
                        }],
                    });
                }
            }
        }
    }
    not_chosen.sort_by(|a, b| (a.host.as_str(), a.uuid.as_str()).cmp(&(b.host.as_str(), b.uuid.as_str())));
    Placement { host: chosen_host, chosen, not_chosen, hosts, needed_bytes: needed }
}

/// Every policy rule a GPU breaks (empty = it qualifies).
pub fn disqualify(policy: &Policy, c: &Candidate, now: OffsetDateTime) -> Vec<Reason> {
    let mut out = Vec::new();
    let age = (now - c.observed_at).whole_seconds();
    let max = policy.max_attestation_age.as_secs();
    if age > max as i64 {
        out.push(Reason::Stale { age_seconds: age, max_seconds: max });
    }
    if policy.require_live_probe && !c.source.is_live() {
        out.push(Reason::ImportedOnly { source: c.source });
    }
    for a in &c.anomalies {
        let kind = anomaly_kind(a);
        if !policy.tolerated_anomalies.contains(&kind) {
            out.push(Reason::Anomaly { kind, detail: a.explain() });
        }
    }
    if !policy.allowed_verdicts.contains(&c.verdict) {
        out.push(Reason::Verdict { verdict: c.verdict });
    }
    if !policy.allowed_classes.is_empty()
        && !c.classification.as_ref().is_some_and(|k| policy.allowed_classes.iter().any(|a| a == k))
    {
        out.push(Reason::Class { classification: c.classification.clone() });
    }
    if !policy.allowed_skus.is_empty() && !c.sku.as_ref().is_some_and(|s| policy.allowed_skus.contains(s)) {
        out.push(Reason::Sku { sku: c.sku.clone() });
    }
    if !policy.allowed_hosts.is_empty() && !policy.allowed_hosts.contains(&c.host) {
        out.push(Reason::Host { host: c.host.clone() });
    }
    if c.memory_total_bytes.is_none() {
        out.push(Reason::UnknownMemory);
    }
    if c.busy {
        out.push(Reason::Busy);
    }
    out
}

/// The kebab-case kind of an anomaly (`nvlink-excess`, …), as policies name them.
pub fn anomaly_kind(a: &Anomaly) -> String {
    serde_json::to_value(a)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}
