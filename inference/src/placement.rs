//! Placement: a pure function from (policy, candidate GPUs as of a checkpoint, model
//! requirements, now) to the chosen GPU set on one host — and a reason for every GPU not chosen.
//! Deterministic: the same inputs give the same placement.

use std::collections::HashMap;

use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::identify::Anomaly;
use chipledger_domain::records::ProbeSource;
use chipledger_domain::rules::VerdictKind;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::policy::Policy;
use crate::requirements::Requirements;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

pub use chipledger_domain::fleet::Candidate;

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
    /// The policy requires at least one evidence level (`hardware-signed`, …) and the GPU's is
    /// lower: its record carries no NVIDIA evidence, is an import, its nonce is not tied to the
    /// log, or its evidence did not verify (an `evidence-invalid` anomaly then says why).
    EvidenceBelow {
        evidence: chipledger_domain::standing::Evidence,
        required: chipledger_domain::standing::Evidence,
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
    /// The policy asks where the GPU is, and its host's location proofs do not show it there
    /// (none fresh, a verdict other than consistent, or a region reaching beyond the policy's
    /// site or countries).
    Location {
        detail: String,
    },
    /// Qualifies, but its host's qualifying GPUs together cannot hold the model.
    HostTooSmall {
        available_bytes: u64,
        needed_bytes: u64,
    },
    /// Qualifies; the model fits with fewer GPUs, or on another host (the placement's `host`).
    NotNeeded,
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
            Reason::EvidenceBelow { evidence, required } => {
                format!("its evidence is {}; the policy requires {} or better", evidence.label(), required.label())
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
            Reason::Location { detail } => format!("location: {detail}"),
            Reason::HostTooSmall { available_bytes, needed_bytes } => format!(
                "qualifies, but its host's qualifying GPUs hold {:.1} GiB together and the model needs {:.1} GiB",
                *available_bytes as f64 / GIB,
                *needed_bytes as f64 / GIB
            ),
            Reason::NotNeeded => {
                "qualifies; not needed (the model is placed with fewer GPUs or on another host)".to_string()
            }
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
    /// One host's GPUs: those that qualify, and those that do not with their reasons.
    #[derive(Default)]
    struct HostGpus<'a> {
        eligible: Vec<&'a Candidate>,
        rejected: Vec<(&'a Candidate, Vec<Reason>)>,
    }
    // Group by host: a hash lookup per GPU (consecutive GPUs of one host skip even that), then
    // one sort of the host names.
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut by_host: Vec<(&str, HostGpus<'_>)> = Vec::new();
    let mut last: Option<(&str, usize)> = None;
    for c in candidates {
        let reasons = disqualify(policy, c, now);
        let slot = match last {
            Some((h, i)) if h == c.host => i,
            _ => *index.entry(c.host.as_str()).or_insert_with(|| {
                by_host.push((c.host.as_str(), HostGpus::default()));
                by_host.len() - 1
            }),
        };
        last = Some((c.host.as_str(), slot));
        let h = &mut by_host[slot].1;
        if reasons.is_empty() {
            h.eligible.push(c);
        } else {
            h.rejected.push((c, reasons));
        }
    }
    by_host.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let needed = req.total_bytes;
    let mut hosts = Vec::new();
    let mut best: Option<(usize, u64, &str)> = None;
    for (host, h) in by_host.iter_mut() {
        let host: &str = host;
        if h.eligible.is_empty() {
            continue;
        }
        h.eligible.sort_by(|a, b| {
            b.memory_total_bytes.cmp(&a.memory_total_bytes).then_with(|| a.uuid.as_str().cmp(b.uuid.as_str()))
        });
        let total: u64 = h.eligible.iter().filter_map(|g| g.memory_total_bytes).sum();
        let mut sum = 0u64;
        let mut k = None;
        for (i, g) in h.eligible.iter().enumerate() {
            sum = sum.saturating_add(g.memory_total_bytes.unwrap_or(0));
            if sum >= needed {
                k = Some(i + 1);
                break;
            }
        }
        hosts.push(HostFit {
            host: host.to_string(),
            qualifying_gpus: h.eligible.len(),
            qualifying_bytes: total,
            gpus_needed: k,
        });
        if let Some(k) = k {
            let idle = sum - needed;
            if best.is_none_or(|(bk, bi, bh)| (k, idle, host) < (bk, bi, bh)) {
                best = Some((k, idle, host));
            }
        }
    }
    let chosen_host = best.map(|(_, _, h)| h.to_string());
    let mut chosen = Vec::new();
    let mut not_chosen: Vec<NotChosen> = Vec::with_capacity(candidates.len());
    // Hosts in name order, GPUs in UUID order within a host: no global sort needed.
    for (host, h) in by_host {
        let mut rows: Vec<(&Candidate, Vec<Reason>)> = h.rejected;
        let available: u64 = h.eligible.iter().filter_map(|g| g.memory_total_bytes).sum();
        for (i, g) in h.eligible.into_iter().enumerate() {
            let reason = match (&chosen_host, best) {
                (Some(ch), Some((k, _, _))) if ch == host && i < k => {
                    chosen.push(g.uuid.clone());
                    continue;
                }
                (Some(_), _) => Reason::NotNeeded,
                (None, _) => Reason::HostTooSmall { available_bytes: available, needed_bytes: needed },
            };
            rows.push((g, vec![reason]));
        }
        if !rows.is_sorted_by(|a, b| a.0.uuid.as_str() <= b.0.uuid.as_str()) {
            rows.sort_unstable_by(|a, b| a.0.uuid.as_str().cmp(b.0.uuid.as_str()));
        }
        not_chosen.extend(rows.into_iter().map(|(c, reasons)| NotChosen {
            uuid: c.uuid.clone(),
            host: c.host.clone(),
            reasons,
        }));
    }
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
    if let Some(required) = policy.require_evidence.filter(|r| c.evidence < *r) {
        out.push(Reason::EvidenceBelow { evidence: c.evidence, required });
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
    if let Some(detail) = location_refusal(&policy.location, c) {
        out.push(Reason::Location { detail });
    }
    out
}

/// Why the policy's `[location]` rule refuses a GPU, if it does.
fn location_refusal(rule: &crate::policy::LocationRule, c: &Candidate) -> Option<String> {
    use chipledger_domain::location::{LocationVerdict, Region};
    if !rule.required() {
        return None;
    }
    let Some(j) = &c.location else {
        return Some("its host's location proofs were not read".into());
    };
    if j.verdict != LocationVerdict::Consistent {
        return Some(format!("{} ({})", j.verdict.label(), j.reason));
    }
    let region = Region::new(j.disks.clone());
    if let Some((site, km)) = rule.within {
        if j.disks.is_empty() || !region.within_km_of(site, km) {
            return Some(format!("the proofs do not place it within {km} km of {site}"));
        }
    }
    if !rule.countries.is_empty() {
        let inside = match chipledger_domain::location::CountryIndex::embedded() {
            Ok(index) => !j.disks.is_empty() && region.inside(&rule.countries, index),
            Err(_) => false,
        };
        if !inside {
            let names: Vec<&str> = rule.countries.iter().map(|c| c.code()).collect();
            return Some(format!("the proofs do not place it inside {}", names.join(", ")));
        }
    }
    None
}

/// The kebab-case kind of an anomaly (`nvlink-excess`, …), as policies name them.
pub fn anomaly_kind(a: &Anomaly) -> String {
    serde_json::to_value(a)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// Most hosts one model is split across (pipeline stages).
pub const MAX_PIPELINE_HOSTS: usize = 8;

/// A model that no single host holds, split across hosts: tensor parallel over
/// `tensor_parallel` GPUs inside each host, pipeline parallel over the hosts, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultiHost {
    pub stages: Vec<Stage>,
    pub tensor_parallel: usize,
    pub pipeline_parallel: usize,
    /// What each GPU must hold: the model's bytes over every GPU of the arrangement.
    pub per_gpu_bytes: u64,
    pub needed_bytes: u64,
    /// Every other host with a qualifying GPU, and why it is not a stage.
    pub hosts_not_chosen: Vec<(String, String)>,
    /// The fabric group of the stages (`None`: no fabric file; every host taken as one fabric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fabric: Option<String>,
}

/// One pipeline stage: a host and its GPUs (tensor parallel), largest first, as attested.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub host: String,
    pub gpus: Vec<GpuUuid>,
}

/// Which hosts share a network fabric (an InfiniBand or RoCE domain, a site): pipeline stages
/// exchange activations every token, so a split stays inside one group. Empty: every host is
/// taken to share one fabric, and the split says so.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fabric {
    /// host → its group's name.
    groups: std::collections::BTreeMap<String, String>,
}

/// The fabric file's form: `[groups]` then `name = ["host", …]`, one line per group.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FabricFile {
    groups: std::collections::BTreeMap<String, Vec<String>>,
}

impl Fabric {
    /// Every host on one fabric.
    pub fn one() -> Fabric {
        Fabric::default()
    }

    /// Parses a fabric file; a host in two groups is refused.
    pub fn parse(text: &str, origin: &str) -> Result<Fabric, String> {
        let file: FabricFile = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        let mut groups = std::collections::BTreeMap::new();
        for (group, hosts) in file.groups {
            for h in hosts {
                if let Some(other) = groups.insert(h.clone(), group.clone()) {
                    if other != group {
                        return Err(format!("{origin}: host {h:?} is in groups {other:?} and {group:?}"));
                    }
                }
            }
        }
        Ok(Fabric { groups })
    }

    pub fn is_one(&self) -> bool {
        self.groups.is_empty()
    }

    /// The group a host is in (`None`: not in the file; with no file, every host is in "").
    pub fn group(&self, host: &str) -> Option<&str> {
        if self.groups.is_empty() {
            return Some("");
        }
        self.groups.get(host).map(String::as_str)
    }
}

/// Splits the model across hosts when `single` placed it on none: every GPU used qualifies
/// under the policy; each stage uses the same power-of-two number of GPUs of one host (tensor
/// parallel stays on a host's NVLink), the stages are hosts of one `fabric` group (pipeline
/// parallel crosses the network), and each GPU holds at least its even share of the model. The
/// fewest hosts win (each stage boundary crosses the network), then the fewest GPUs, then host
/// names. Every host with a qualifying GPU that is not a stage gets its reason. `Err` says why no
/// split exists.
pub fn place_across_hosts(
    policy: &Policy,
    candidates: &[Candidate],
    req: &Requirements,
    now: OffsetDateTime,
    fabric: &Fabric,
) -> Result<MultiHost, String> {
    let needed = req.total_bytes;
    // Qualifying GPUs per host, largest first (then UUID), hosts in name order.
    let mut by_host: std::collections::BTreeMap<&str, Vec<&Candidate>> = std::collections::BTreeMap::new();
    for c in candidates {
        if c.memory_total_bytes.is_some() && disqualify(policy, c, now).is_empty() {
            by_host.entry(c.host.as_str()).or_default().push(c);
        }
    }
    for gpus in by_host.values_mut() {
        gpus.sort_by(|a, b| b.memory_total_bytes.cmp(&a.memory_total_bytes).then_with(|| a.uuid.cmp(&b.uuid)));
    }
    if by_host.len() < 2 {
        return Err(format!("{} host(s) have qualifying GPUs; a split needs at least two", by_host.len()));
    }
    // The hosts of each fabric group, in name order.
    let mut groups: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
    for h in by_host.keys() {
        if let Some(g) = fabric.group(h) {
            groups.entry(g).or_default().push(h);
        }
    }
    // (hosts, total GPUs, tp, chosen host names, bytes per GPU)
    let mut best: Option<(usize, usize, usize, Vec<&str>, u64)> = None;
    for members in groups.values() {
        for tp in [1usize, 2, 4, 8, 16] {
            for pp in 2..=MAX_PIPELINE_HOSTS.min(members.len()) {
                let per_gpu = needed.div_ceil((tp * pp) as u64);
                // Hosts whose `tp` largest qualifying GPUs each hold a share, in name order.
                let fit: Vec<&str> = members
                    .iter()
                    .filter(|h| {
                        let gpus = &by_host[**h];
                        gpus.len() >= tp && gpus[tp - 1].memory_total_bytes.unwrap_or(0) >= per_gpu
                    })
                    .copied()
                    .take(pp)
                    .collect();
                if fit.len() == pp {
                    let candidate = (pp, tp * pp, tp, fit, per_gpu);
                    if best.as_ref().is_none_or(|b| (candidate.0, candidate.1, &candidate.3) < (b.0, b.1, &b.3)) {
                        best = Some(candidate);
                    }
                }
            }
        }
    }
    let Some((pp, _, tp, hosts, per_gpu)) = best else {
        let within = if fabric.is_one() { String::new() } else { " of one fabric group".to_string() };
        return Err(format!(
            "no split over 2 to {MAX_PIPELINE_HOSTS} hosts{within}, with the same power-of-two number of qualifying GPUs on each, holds {:.1} GiB",
            needed as f64 / GIB
        ));
    };
    let chosen_group = fabric.group(hosts[0]).unwrap_or_default().to_string();
    let stages: Vec<Stage> = hosts
        .iter()
        .map(|h| Stage { host: h.to_string(), gpus: by_host[h][..tp].iter().map(|c| c.uuid.clone()).collect() })
        .collect();
    let hosts_not_chosen = by_host
        .iter()
        .filter(|(h, _)| !hosts.contains(h))
        .map(|(h, gpus)| {
            let why = match fabric.group(h) {
                None => "not in the fabric file: its network reach to the stages is unknown".to_string(),
                Some(g) if g != chosen_group => {
                    format!("on fabric group {g:?}; the stages are on {chosen_group:?}")
                }
                Some(_) if gpus.len() < tp => format!("{} qualifying GPU(s); each stage uses {tp}", gpus.len()),
                Some(_) if gpus[tp - 1].memory_total_bytes.unwrap_or(0) < per_gpu => format!(
                    "its GPUs hold {:.1} GiB; each must hold {:.1} GiB of the model",
                    gpus[tp - 1].memory_total_bytes.unwrap_or(0) as f64 / GIB,
                    per_gpu as f64 / GIB
                ),
                Some(_) => format!("qualifies; not needed ({pp} stages suffice)"),
            };
            (h.to_string(), why)
        })
        .collect();
    Ok(MultiHost {
        stages,
        tensor_parallel: tp,
        pipeline_parallel: pp,
        per_gpu_bytes: per_gpu,
        needed_bytes: needed,
        hosts_not_chosen,
        fabric: (!fabric.is_one()).then_some(chosen_group),
    })
}

/// The engines whose launch lines a placement can be printed as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Vllm,
    Sglang,
}

/// Launch lines for `model` on a placement's GPUs, one or more per host, each pinned to the
/// attested GPUs by UUID (`CUDA_VISIBLE_DEVICES` takes `GPU-…` UUIDs). vLLM: tensor parallel in
/// a host, pipeline parallel across hosts over Ray (`ray start` on each host, `vllm serve` on the
/// first). SGLang: one `launch_server` per host with `--nnodes`/`--node-rank`, tensor parallel
/// over every GPU of the arrangement. `head` is the first host's address for the others.
pub fn launch_lines(engine: Engine, model: &str, stages: &[Stage], head: &str) -> Vec<(String, String)> {
    let devices = |s: &Stage| s.gpus.iter().map(GpuUuid::as_str).collect::<Vec<_>>().join(",");
    let tp = stages.first().map_or(0, |s| s.gpus.len());
    let pp = stages.len();
    let mut out = Vec::new();
    match engine {
        Engine::Vllm if pp == 1 => {
            let s = &stages[0];
            out.push((
                s.host.clone(),
                format!("CUDA_VISIBLE_DEVICES={} vllm serve {model} --tensor-parallel-size {tp}", devices(s)),
            ));
        }
        Engine::Vllm => {
            for (i, s) in stages.iter().enumerate() {
                let ray = if i == 0 {
                    "ray start --head --port 6379".to_string()
                } else {
                    format!("ray start --address {head}:6379")
                };
                out.push((s.host.clone(), format!("CUDA_VISIBLE_DEVICES={} {ray}", devices(s))));
            }
            out.push((
                stages[0].host.clone(),
                format!(
                    "vllm serve {model} --tensor-parallel-size {tp} --pipeline-parallel-size {pp} --distributed-executor-backend ray"
                ),
            ));
        }
        Engine::Sglang => {
            for (i, s) in stages.iter().enumerate() {
                let multi = if pp > 1 {
                    format!(" --nnodes {pp} --node-rank {i} --dist-init-addr {head}:5000")
                } else {
                    String::new()
                };
                out.push((
                    s.host.clone(),
                    format!(
                        "CUDA_VISIBLE_DEVICES={} python3 -m sglang.launch_server --model-path {model} --tp {}{multi}",
                        devices(s),
                        tp * pp
                    ),
                ));
            }
        }
    }
    out
}
