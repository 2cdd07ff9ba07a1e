//! Feeding the schedulers clusters already run: the pure decisions behind `chipledger slurm …`
//! and `chipledger k8s …` — which of a node's devices are which attested GPUs, whether a job's
//! GPUs qualify under a policy, the node features and labels a host earns, the DRA device taints
//! its GPUs deserve — and the bounded parsers of what Slurm tells a hook (`SLURM_JOB_GPUS`,
//! `scontrol show job -d`, `scontrol show node`, host lists). No process is run here.

use std::collections::BTreeSet;

use chipledger_domain::fleet::{Candidate, Fleet};
use chipledger_domain::records::{JobGpu, MAX_JOB_GPUS};
use chipledger_domain::rules::VerdictKind;
use chipledger_domain::standing::Evidence;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::placement::{disqualify, Reason};
use crate::policy::Policy;
use crate::Error;

/// Slurm truncates a node's reason; a refusal's line stays under this.
pub const MAX_REASON: usize = 200;
/// The prefix of every reason chipledger gives Slurm: the health check resumes only nodes
/// that chipledger drained.
pub const REASON_PREFIX: &str = "chipledger:";
/// The prefix of the node features chipledger owns (others on the node are kept).
pub const FEATURE_PREFIX: &str = "chipledger_";

/// The GPUs of a host's latest attestation (a GPU last seen in an earlier one — removed,
/// replaced, fallen off the bus — is none of its devices) in device order: by PCI bus id
/// (domain, bus, device, function, as numbers), the order NVML, `nvidia-smi` and Slurm's GRES
/// indices number a host's GPUs in. Several GPUs without a readable bus id cannot be numbered:
/// that is a refusal, never a guess.
pub fn devices<'a>(fleet: &'a Fleet, host: &str) -> Result<Vec<&'a Candidate>, Refusal> {
    let on_host = || fleet.candidates.iter().filter(|c| c.host == host);
    let Some(latest) = on_host().map(|c| c.attestation_index).max() else { return Ok(Vec::new()) };
    let mut out: Vec<(Option<BusId>, &Candidate)> = on_host()
        .filter(|c| c.attestation_index == latest)
        .map(|c| (c.pci_bus_id.as_deref().and_then(bus_order), c))
        .collect();
    if out.len() > 1 && out.iter().any(|(bus, _)| bus.is_none()) {
        return Err(refusal(vec![format!(
            "host {host}'s latest attestation (log index {latest}) has GPUs without a PCI bus id: its devices cannot be numbered"
        )]));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.uuid.cmp(&b.1.uuid)));
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

/// A PCI address as numbers: (domain, bus, device, function).
type BusId = (u32, u32, u32, u32);

/// `00000000:18:00.0` or `0000:18:00.0` → (domain, bus, device, function).
fn bus_order(id: &str) -> Option<BusId> {
    let (rest, func) = id.trim().rsplit_once('.')?;
    let mut parts = rest.split(':');
    let (d, b, dev) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    Some((hex(d)?, hex(b)?, hex(dev)?, hex(func)?))
}

/// Why a job may not start on a node: one line for Slurm's node reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Judges the GPUs the scheduler allocated (`indices` into [`devices`]) under `policy`: every
/// one must be attested in the host's latest attestation and qualify. Returns what the job
/// record states about each, or the refusal naming the first GPUs that do not (all of them when
/// they fit in a line).
pub fn judge_job(
    policy: &Policy,
    fleet: &Fleet,
    host: &str,
    indices: &[u32],
    now: OffsetDateTime,
) -> Result<Vec<JobGpu>, Refusal> {
    let devs = devices(fleet, host)?;
    if devs.is_empty() && !indices.is_empty() {
        return Err(refusal(vec![format!("no attestation of host {host} in the log")]));
    }
    let mut problems = Vec::new();
    let mut out = Vec::with_capacity(indices.len());
    for &i in indices {
        let Some(c) = devs.get(i as usize) else {
            problems.push(format!("device {i} is not among the {} GPUs attested on {host}", devs.len()));
            continue;
        };
        let reasons = disqualify(policy, c, now);
        if !reasons.is_empty() {
            problems.push(format!("device {i} {}: {}", c.uuid, explain(&reasons)));
            continue;
        }
        let Some(entry) = fleet.attestations.get(&c.uuid) else {
            problems.push(format!("device {i} {}: its attestation is not in the checkpoint read", c.uuid));
            continue;
        };
        out.push(JobGpu {
            device_index: i,
            uuid: c.uuid.clone(),
            attestation_index: entry.index,
            attestation_leaf: entry.leaf_hash,
            sku: c.sku.clone(),
            classification: c.classification.clone(),
            acquisition_verdict: c.verdict.to_string(),
            evidence: c.evidence.label().to_string(),
        });
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(refusal(problems))
    }
}

/// Whether a node may take work: every GPU its latest attestation names qualifies (the health
/// check's question; a host with no attested GPU does not).
/// `expected`: how many GPUs the scheduler gives the node (Slurm's `Gres=gpu:N`); a different
/// number attested is a refusal (a GPU missing from the attestation, or one the scheduler does
/// not know).
pub fn judge_node(
    policy: &Policy,
    fleet: &Fleet,
    host: &str,
    expected: Option<u32>,
    now: OffsetDateTime,
) -> Result<usize, Refusal> {
    let n = devices(fleet, host)?.len();
    if let Some(e) = expected.filter(|&e| e as usize != n) {
        return Err(refusal(vec![format!(
            "the scheduler gives {host} {e} GPU(s) but its latest attestation names {n}"
        )]));
    }
    let all: Vec<u32> = (0..n as u32).collect();
    if n == 0 {
        return Err(refusal(vec![format!("no attestation of host {host} in the log")]));
    }
    judge_job(policy, fleet, host, &all, now).map(|g| g.len())
}

fn explain(reasons: &[Reason]) -> String {
    reasons.iter().map(Reason::explain).collect::<Vec<_>>().join("; ")
}

/// `chipledger: ` and the problems, cut to [`MAX_REASON`] bytes with how many were left out. A
/// reason is one line: newlines and control characters become spaces.
fn refusal(problems: Vec<String>) -> Refusal {
    let clean = |s: &str| -> String { s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect() };
    let total = problems.len();
    let mut line = String::from(REASON_PREFIX);
    for (n, p) in problems.iter().enumerate() {
        let piece = format!("{}{}", if n == 0 { " " } else { " | " }, clean(p));
        let left = total - n - 1;
        let tail = if left > 0 { format!(" (+{left} more)") } else { String::new() };
        if line.len() + piece.len() + tail.len() <= MAX_REASON {
            line.push_str(&piece);
            continue;
        }
        // This one does not fit with what follows: the first is cut, later ones are counted.
        let more = format!(" (+{} more)", total - n - usize::from(n == 0));
        if n == 0 {
            let room = MAX_REASON.saturating_sub(line.len() + 3 + more.len());
            line.push_str(&cut(&piece, room));
            line.push_str("...");
        }
        line.push_str(&more);
        break;
    }
    Refusal(line)
}

fn cut(s: &str, max: usize) -> String {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// What a host has earned, for Slurm features and Kubernetes labels alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standing {
    /// Every GPU has a fresh attestation (within the policy's age) of the kind it requires.
    pub attested: bool,
    /// Every GPU qualifies under the policy.
    pub qualified: bool,
    /// Every GPU's acquisition verdict is lawful (with or without a licence).
    pub lawful: bool,
    /// Every GPU's record carries NVIDIA evidence that verifies (`vendor-signed` or better).
    pub vendor_signed: bool,
    /// Every GPU's evidence is over a nonce tied to the log (`hardware-signed` or better).
    pub hardware_signed: bool,
    /// Every GPU's measurements match NVIDIA's signed reference values (`hardware-verified`).
    pub hardware_verified: bool,
    /// The GPUs' Oct 2023 classifications (`3A090.a.1`, `not 3A090`, …).
    pub classes: BTreeSet<String>,
    pub gpus: usize,
    /// When the oldest attestation ages out of the policy (labels expire then).
    pub fresh_until: Option<OffsetDateTime>,
}

/// A host's [`Standing`] under `policy` at `now` (nothing earned without an attested GPU).
pub fn standing(policy: &Policy, fleet: &Fleet, host: &str, now: OffsetDateTime) -> Standing {
    // GPUs that cannot be numbered earn nothing.
    let devs = devices(fleet, host).unwrap_or_default();
    let any = !devs.is_empty();
    let reasons: Vec<Vec<Reason>> = devs.iter().map(|c| disqualify(policy, c, now)).collect();
    let attested = any
        && reasons.iter().all(|r| !r.iter().any(|x| matches!(x, Reason::Stale { .. } | Reason::ImportedOnly { .. })));
    let max_age = time::Duration::try_from(policy.max_attestation_age).unwrap_or(time::Duration::MAX);
    Standing {
        attested,
        qualified: any && reasons.iter().all(Vec::is_empty),
        lawful: any && devs.iter().all(|c| matches!(c.verdict, VerdictKind::Lawful | VerdictKind::LawfulUnderLicence)),
        vendor_signed: any && devs.iter().all(|c| c.evidence >= Evidence::VendorSigned),
        hardware_signed: any && devs.iter().all(|c| c.evidence >= Evidence::HardwareSigned),
        hardware_verified: any && devs.iter().all(|c| c.evidence >= Evidence::HardwareVerified),
        classes: devs.iter().filter_map(|c| c.classification.clone()).collect(),
        gpus: devs.len(),
        fresh_until: devs.iter().map(|c| c.observed_at).min().and_then(|t| t.checked_add(max_age)),
    }
}

/// `3A090.a.1` → `3a090a1`, `not 3A090` → `not3a090`: lower-case letters and digits only.
fn slug(s: &str) -> String {
    s.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// The Slurm node features a standing earns: `chipledger_attested`, `chipledger_qualified`,
/// `chipledger_lawful`, `chipledger_vendor_signed`, `chipledger_hardware_signed`,
/// `chipledger_hardware_verified`, one `chipledger_class_<class>` per class.
pub fn slurm_features(s: &Standing) -> Vec<String> {
    let mut out = Vec::new();
    for (on, name) in [
        (s.attested, "attested"),
        (s.qualified, "qualified"),
        (s.lawful, "lawful"),
        (s.vendor_signed, "vendor_signed"),
        (s.hardware_signed, "hardware_signed"),
        (s.hardware_verified, "hardware_verified"),
    ] {
        if on {
            out.push(format!("{FEATURE_PREFIX}{name}"));
        }
    }
    if s.gpus > 0 {
        out.extend(s.classes.iter().map(|c| format!("{FEATURE_PREFIX}class_{}", slug(c))));
    }
    out
}

/// A node's features after chipledger's: the node's own (any not starting `chipledger_`) kept in
/// order, then `ours`.
pub fn merge_features(current: &[String], ours: &[String]) -> Vec<String> {
    let mut out: Vec<String> = current.iter().filter(|f| !f.starts_with(FEATURE_PREFIX)).cloned().collect();
    for f in ours {
        if !out.contains(f) {
            out.push(f.clone());
        }
    }
    out
}

/// node-feature-discovery's local feature file (`features.d`) for a standing: one
/// `name=value` line per label (NFD prefixes `feature.node.kubernetes.io/`), and an
/// `# +expiry-time` so the labels vanish when the oldest attestation ages out even if nothing
/// rewrites the file.
pub fn nfd_features(s: &Standing) -> String {
    let mut out = String::from("# Written by chipledger from the transparency log; do not edit.\n");
    if let Some(t) = s.fresh_until.filter(|_| s.gpus > 0) {
        let when = t.replace_nanosecond(0).unwrap_or(t);
        let stamp = when.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        out.push_str(&format!("# +expiry-time={stamp}\n"));
    }
    for (name, on) in [
        ("attested", s.attested),
        ("qualified", s.qualified),
        ("lawful", s.lawful),
        ("vendor-signed", s.vendor_signed),
        ("hardware-signed", s.hardware_signed),
        ("hardware-verified", s.hardware_verified),
    ] {
        out.push_str(&format!("chipledger-{name}={on}\n"));
    }
    for c in &s.classes {
        out.push_str(&format!("chipledger-class-{}=true\n", slug(c)));
    }
    out.push_str(&format!("chipledger-gpus={}\n", s.gpus));
    out
}

/// The taint key on GPUs that do not qualify.
pub const TAINT_KEY: &str = "chipledger.dev/unqualified";
/// The DRA driver whose devices are tainted (NVIDIA's `k8s-dra-driver-gpu`).
pub const DRA_DRIVER: &str = "gpu.nvidia.com";

/// The Kubernetes API versions a [`DeviceTaintRule`](device_taint_rules) can be written for.
pub const TAINT_API_VERSIONS: &[&str] = &["resource.k8s.io/v1beta2", "resource.k8s.io/v1alpha3"];

/// Most bytes of a ResourceSlice listing read.
pub const MAX_SLICES_BYTES: usize = 64 << 20;

/// A DRA device as a DeviceTaintRule selects it: driver, pool and device name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DraDevice {
    pub driver: String,
    pub pool: String,
    pub device: String,
}

/// The NVIDIA DRA driver's GPUs by UUID, from `kubectl get resourceslices -o json` (a `List`
/// or one `ResourceSlice`; `resource.k8s.io/v1`, and `v1beta1`'s `basic` devices): each device of
/// driver `gpu.nvidia.com` whose `uuid` attribute (bare or `gpu.nvidia.com/uuid`) is a string.
/// A taint rule can only name a device by driver, pool and name since Kubernetes 1.35 dropped
/// its CEL selectors, so the UUID is matched here.
pub fn dra_devices(listing: &[u8]) -> Result<std::collections::HashMap<String, DraDevice>, Error> {
    if listing.len() > MAX_SLICES_BYTES {
        return Err(Error::Cluster(format!("the ResourceSlice listing is over {MAX_SLICES_BYTES} bytes")));
    }
    let v: Value = serde_json::from_slice(listing).map_err(|e| {
        Error::Cluster(format!("the ResourceSlice listing is not JSON (kubectl get resourceslices -o json): {e}"))
    })?;
    let slices: Vec<&Value> = match v.get("items").and_then(Value::as_array) {
        Some(items) => items.iter().collect(),
        None if v.get("kind").and_then(Value::as_str) == Some("ResourceSlice") => vec![&v],
        None => {
            return Err(Error::Cluster(
                "the listing holds no ResourceSlice items (kubectl get resourceslices -o json)".into(),
            ))
        }
    };
    let mut out = std::collections::HashMap::new();
    for slice in slices {
        let spec = &slice["spec"];
        if spec["driver"].as_str() != Some(DRA_DRIVER) {
            continue;
        }
        let Some(pool) = spec["pool"]["name"].as_str() else { continue };
        for d in spec["devices"].as_array().into_iter().flatten() {
            let Some(name) = d["name"].as_str() else { continue };
            let attrs = if d["attributes"].is_object() { &d["attributes"] } else { &d["basic"]["attributes"] };
            let uuid = attrs
                .get("uuid")
                .or_else(|| attrs.get(format!("{DRA_DRIVER}/uuid")))
                .and_then(|a| a["string"].as_str())
                .and_then(|u| chipledger_domain::fingerprint::GpuUuid::parse(u).ok());
            let Some(uuid) = uuid else { continue };
            let dev = DraDevice { driver: DRA_DRIVER.to_string(), pool: pool.to_string(), device: name.to_string() };
            // A node publishing another GPU's UUID must not steer its taint away from it.
            if let Some(before) = out.insert(uuid.as_str().to_string(), dev) {
                return Err(Error::Cluster(format!(
                    "two DRA devices claim GPU {uuid}: {}/{} and {pool}/{name}; refusing to choose",
                    before.pool, before.device
                )));
            }
        }
    }
    Ok(out)
}

/// DeviceTaintRules for a fleet, and the GPUs that needed one but no DRA device has.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaintRules {
    pub rules: Vec<Value>,
    pub without_device: Vec<String>,
}

/// One DRA `DeviceTaintRule` per GPU of `fleet` that does not qualify under `policy`, selecting
/// its device (from [`dra_devices`]) by driver, pool and name. The effect is `NoExecute`
/// (running pods are evicted) when the GPU is not what it claims or may not be used at all — an
/// anomaly, a verdict, class, SKU or host the policy refuses, missing vendor evidence — and
/// `NoSchedule` when it only needs a fresh live attestation (an agent outage evicts nothing).
/// Sorted by UUID; a GPU that qualifies gets none, so applying the set with pruning removes
/// the rules of GPUs that qualify again.
pub fn device_taint_rules(
    policy: &Policy,
    fleet: &Fleet,
    devices: &std::collections::HashMap<String, DraDevice>,
    api_version: &str,
    now: OffsetDateTime,
) -> Result<TaintRules, Error> {
    if !TAINT_API_VERSIONS.contains(&api_version) {
        return Err(Error::Cluster(format!(
            "DeviceTaintRule API version {api_version:?} is not one of {}",
            TAINT_API_VERSIONS.join(", ")
        )));
    }
    let mut gpus: Vec<&Candidate> = fleet.candidates.iter().collect();
    gpus.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    let mut out = TaintRules::default();
    for c in gpus {
        let reasons = disqualify(policy, c, now);
        if reasons.is_empty() {
            continue;
        }
        let uuid = c.uuid.as_str();
        let Some(dev) = devices.get(uuid) else {
            // (UUIDs are compared in GpuUuid's normal form on both sides.)
            out.without_device.push(uuid.to_string());
            continue;
        };
        let only_freshness = reasons.iter().all(|r| matches!(r, Reason::Stale { .. } | Reason::ImportedOnly { .. }));
        let effect = if only_freshness { "NoSchedule" } else { "NoExecute" };
        let index = fleet.attestations.get(&c.uuid).map(|e| e.index.to_string()).unwrap_or_default();
        out.rules.push(json!({
            "apiVersion": api_version,
            "kind": "DeviceTaintRule",
            "metadata": {
                "name": format!("chipledger-{}", uuid.to_ascii_lowercase()),
                "labels": { "app.kubernetes.io/managed-by": "chipledger" },
                "annotations": {
                    "chipledger.dev/gpu-uuid": uuid,
                    "chipledger.dev/host": c.host,
                    "chipledger.dev/attestation-index": index,
                    "chipledger.dev/policy": policy.name,
                    "chipledger.dev/reason": cut(&explain(&reasons), 1024),
                },
            },
            "spec": {
                "deviceSelector": { "driver": dev.driver, "pool": dev.pool, "device": dev.device },
                "taint": { "key": TAINT_KEY, "value": taint_value(&reasons[0]), "effect": effect },
            },
        }));
    }
    Ok(out)
}

/// A label-value-safe word for the first reason (`stale`, `anomaly`, `verdict`, …).
fn taint_value(r: &Reason) -> &'static str {
    match r {
        Reason::Stale { .. } => "stale",
        Reason::ImportedOnly { .. } => "imported-only",
        Reason::EvidenceBelow { .. } => "evidence-below",
        Reason::Anomaly { .. } => "anomaly",
        Reason::Verdict { .. } => "verdict",
        Reason::Class { .. } => "class",
        Reason::Sku { .. } => "sku",
        Reason::Host { .. } => "host",
        Reason::UnknownMemory => "unknown-memory",
        Reason::Busy => "busy",
        Reason::Location { .. } => "location",
        Reason::HostTooSmall { .. } | Reason::NotNeeded => "other",
    }
}

/// Slurm's views of a job and a node, and the parsers of what its commands print.
pub mod slurm {
    use super::{Error, MAX_JOB_GPUS};

    /// Most bytes of `scontrol` output read; most names a host list expands to.
    pub const MAX_OUTPUT: usize = 1 << 20;
    pub const MAX_HOSTS: usize = 65_536;
    /// Most bytes a host list expands to, and digits in one range bound.
    pub const MAX_HOSTLIST_BYTES: usize = 4 << 20;
    const MAX_DIGITS: usize = 18;

    fn bad(what: &str, msg: impl std::fmt::Display) -> Error {
        Error::Cluster(format!("{what}: {msg}"))
    }

    /// `0,1,4-6` (Slurm's `SLURM_JOB_GPUS`, a GRES `IDX:` list) → the indices, sorted, once each.
    pub fn parse_indices(s: &str) -> Result<Vec<u32>, Error> {
        let mut out = Vec::new();
        let s = s.trim();
        if s.is_empty() || s == "N/A" {
            return Ok(out);
        }
        for part in s.split(',') {
            let part = part.trim();
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let num = |x: &str| {
                x.trim()
                    .parse::<u32>()
                    .map_err(|_| bad("GPU indices", format!("{part:?} in {s:?} is not an index or a range")))
            };
            let (a, b) = (num(a)?, num(b)?);
            if b < a || (b - a) as usize >= MAX_JOB_GPUS || out.len() + (b - a) as usize >= MAX_JOB_GPUS {
                return Err(bad(
                    "GPU indices",
                    format!("{s:?} names more than {MAX_JOB_GPUS} GPUs or a backwards range"),
                ));
            }
            out.extend(a..=b);
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// A Slurm host list (`gpu[01-03,7],login1`) → the names, in order.
    pub fn expand_hostlist(s: &str) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut rest = s.trim();
        while !rest.is_empty() {
            // One item: up to a comma outside brackets.
            let mut depth = 0;
            let mut end = rest.len();
            for (i, c) in rest.char_indices() {
                match c {
                    '[' => depth += 1,
                    ']' => depth -= 1,
                    ',' if depth == 0 => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
                if !(0..=1).contains(&depth) {
                    return Err(bad("host list", format!("unbalanced brackets in {s:?}")));
                }
            }
            let item = &rest[..end];
            rest = rest[end..].strip_prefix(',').unwrap_or("");
            expand_item(item, &mut out, &mut bytes, s)?;
        }
        Ok(out)
    }

    fn expand_item(item: &str, out: &mut Vec<String>, bytes: &mut usize, whole: &str) -> Result<(), Error> {
        let Some(open) = item.find('[') else {
            if !item.is_empty() {
                if out.len() >= MAX_HOSTS {
                    return Err(bad("host list", format!("{whole:?} names more than {MAX_HOSTS} hosts")));
                }
                *bytes += item.len();
                out.push(item.to_string());
            }
            return Ok(());
        };
        let close = item[open..]
            .find(']')
            .map(|c| c + open)
            .ok_or_else(|| bad("host list", format!("unclosed '[' in {whole:?}")))?;
        let (prefix, ranges, suffix) = (&item[..open], &item[open + 1..close], &item[close + 1..]);
        if suffix.contains('[') {
            return Err(bad("host list", format!("{item:?}: one bracket group per name is read")));
        }
        for r in ranges.split(',') {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            let width = a.len();
            if width > MAX_DIGITS || b.len() > MAX_DIGITS {
                return Err(bad("host list", format!("{r:?} in {whole:?}: more than {MAX_DIGITS} digits")));
            }
            let num =
                |x: &str| x.parse::<u64>().map_err(|_| bad("host list", format!("{r:?} in {whole:?} is not a range")));
            let (lo, hi) = (num(a)?, num(b)?);
            let count = hi.checked_sub(lo).and_then(|d| d.checked_add(1));
            if count.is_none_or(|c| c > (MAX_HOSTS - out.len()) as u64) {
                return Err(bad(
                    "host list",
                    format!("{whole:?} names more than {MAX_HOSTS} hosts or a backwards range"),
                ));
            }
            for n in lo..=hi {
                let name = format!("{prefix}{n:0width$}{suffix}");
                *bytes += name.len();
                if *bytes > MAX_HOSTLIST_BYTES {
                    return Err(bad("host list", format!("{whole:?} expands to more than {MAX_HOSTLIST_BYTES} bytes")));
                }
                out.push(name);
            }
        }
        Ok(())
    }

    /// The `key=value` words of `scontrol show …` output (values run to the next space; a few
    /// such as `Reason=` run to the end of their line).
    fn fields(text: &str) -> Vec<(&str, &str)> {
        let mut out = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(r) = line.strip_prefix("Reason=") {
                out.push(("Reason", r));
                continue;
            }
            for word in line.split_whitespace() {
                if let Some((k, v)) = word.split_once('=') {
                    out.push((k, v));
                }
            }
        }
        out
    }

    /// What `scontrol show job -d <id>` says of one job.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct Job {
        pub user: Option<String>,
        pub partition: Option<String>,
        pub state: Option<String>,
        pub exit_code: Option<String>,
        /// Per node line: the nodes (expanded) and the GPU indices allocated on each.
        pub gpus_by_nodes: Vec<(Vec<String>, Vec<u32>)>,
        /// The job asks for a GPU shared by MPS or shards (which name no GPU index).
        pub shares_gpus: bool,
    }

    impl Job {
        /// The GPU indices allocated on `node` (none when the job has no GPU there). Two node
        /// lines naming `node` mean the text was forged (see [`parse_job`]): refused.
        pub fn gpus_on(&self, node: &str) -> Result<Vec<u32>, Error> {
            let mut lines = self.gpus_by_nodes.iter().filter(|(nodes, _)| nodes.iter().any(|n| n == node));
            let first = lines.next();
            if lines.next().is_some() {
                return Err(bad(
                    "scontrol show job",
                    format!("two allocation lines name node {node}: a job field holds a line break that mimics scontrol's output"),
                ));
            }
            Ok(first.map(|(_, g)| g.clone()).unwrap_or_default())
        }
    }

    /// Parses `scontrol show job -d` output. A job's name, working directory, command and
    /// comment are the submitter's text and may hold line breaks (Slurm 22.05 prints them raw,
    /// and has no `--json`): each value is read from the one line that starts with its key as
    /// scontrol lays it out, and a key whose line appears twice is refused rather than guessed.
    pub fn parse_job(text: &str) -> Result<Job, Error> {
        if text.len() > MAX_OUTPUT {
            return Err(bad("scontrol show job", format!("output over {MAX_OUTPUT} bytes")));
        }
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        // The one line starting with `leader`, if any.
        let line_of = |leader: &str| -> Result<Option<&str>, Error> {
            let mut found = lines.iter().filter(|l| l.starts_with(leader));
            let first = found.next().copied();
            if found.next().is_some() {
                return Err(bad(
                    "scontrol show job",
                    format!(
                        "two lines start with {leader:?}: a job field holds a line break that mimics scontrol's output"
                    ),
                ));
            }
            Ok(first)
        };
        let word = |line: Option<&str>, key: &str| -> Option<String> {
            line?
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')).map(str::to_string))
        };
        let mut job = Job {
            user: word(line_of("UserId=")?, "UserId").map(|u| u.split('(').next().unwrap_or_default().to_string()),
            partition: word(line_of("Partition=")?, "Partition"),
            state: word(line_of("JobState=")?, "JobState"),
            exit_code: word(line_of("Requeue=")?, "ExitCode"),
            ..Job::default()
        };
        if let Some(tres) = word(line_of("TresPerNode=")?, "TresPerNode") {
            job.shares_gpus = tres.split(',').any(|t| t.starts_with("gres:mps") || t.starts_with("gres:shard"));
        }
        if let Some(gres) = word(line_of("JOB_GRES=")?, "JOB_GRES") {
            job.shares_gpus |= gres.split(',').any(|g| g.starts_with("mps") || g.starts_with("shard"));
        }
        // `Nodes=gpu[1-2] CPU_IDs=0-3 Mem=0 GRES=gpu:h100:2(IDX:0-1)` lines.
        for line in lines.iter().filter(|l| l.starts_with("Nodes=")) {
            let mut nodes = None;
            let mut gres = None;
            for word in line.split_whitespace() {
                if let Some(v) = word.strip_prefix("Nodes=") {
                    nodes = Some(expand_hostlist(v)?);
                } else if let Some(v) = word.strip_prefix("GRES=") {
                    gres = Some(v);
                }
            }
            if let Some(nodes) = nodes {
                job.gpus_by_nodes.push((nodes, gres.map(gpu_indices).transpose()?.unwrap_or_default()));
            }
        }
        Ok(job)
    }

    /// The GPU indices of a GRES allocation: `gpu:2(IDX:0-1)`, `gpu:h100:1(IDX:3),mps:100(0)`,
    /// `gpu(IDX:0,2)`; other GRES are skipped.
    pub fn gpu_indices(gres: &str) -> Result<Vec<u32>, Error> {
        let mut out = Vec::new();
        let mut rest = gres;
        while !rest.is_empty() {
            let name_end = rest.find(['(', ',']).unwrap_or(rest.len());
            let name = &rest[..name_end];
            rest = &rest[name_end..];
            let mut inner = "";
            if let Some(r) = rest.strip_prefix('(') {
                let close = r.find(')').ok_or_else(|| bad("GRES", format!("unclosed '(' in {gres:?}")))?;
                inner = &r[..close];
                rest = &r[close + 1..];
            }
            rest = rest.strip_prefix(',').unwrap_or(rest);
            if name == "gpu" || name.starts_with("gpu:") {
                if let Some(idx) = inner.strip_prefix("IDX:") {
                    out.extend(parse_indices(idx)?);
                    if out.len() > MAX_JOB_GPUS {
                        return Err(bad("GRES", format!("more than {MAX_JOB_GPUS} GPUs")));
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        if out.len() > MAX_JOB_GPUS {
            return Err(bad("GRES", format!("more than {MAX_JOB_GPUS} GPUs")));
        }
        Ok(out)
    }

    /// One node of `scontrol show nodes --oneliner`: its name and features.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct NodeLine {
        pub name: String,
        pub available_features: Vec<String>,
        pub active_features: Vec<String>,
    }

    /// Parses `scontrol show nodes --oneliner` (one node per line).
    pub fn parse_nodes_oneline(text: &str) -> Result<Vec<NodeLine>, Error> {
        if text.len() > MAX_OUTPUT {
            return Err(bad("scontrol show nodes", format!("output over {MAX_OUTPUT} bytes")));
        }
        let mut out = Vec::new();
        for line in text.lines() {
            let mut node = NodeLine::default();
            for word in line.split_whitespace() {
                match word.split_once('=') {
                    Some(("NodeName", v)) => node.name = v.to_string(),
                    Some(("AvailableFeatures", v)) => node.available_features = feature_list(v),
                    Some(("ActiveFeatures", v)) => node.active_features = feature_list(v),
                    _ => {}
                }
            }
            if !node.name.is_empty() {
                out.push(node);
            }
        }
        Ok(out)
    }

    fn feature_list(v: &str) -> Vec<String> {
        if v == "(null)" || v.is_empty() {
            Vec::new()
        } else {
            v.split(',').map(str::to_string).collect()
        }
    }

    /// What `scontrol show node <name>` says of one node.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct Node {
        pub available_features: Vec<String>,
        pub active_features: Vec<String>,
        /// `IDLE+DRAIN`, `MIXED`, …
        pub state: String,
        /// The reason without Slurm's ` [user@time]` suffix.
        pub reason: Option<String>,
        /// How many GPUs the node's `Gres=` declares (`gpu:8`, `gpu:h100:8(S:0-1)`).
        pub gres_gpus: Option<u32>,
    }

    impl Node {
        pub fn drained(&self) -> bool {
            self.state.split('+').any(|s| s == "DRAIN" || s == "DRAINED" || s == "DRAINING")
        }
    }

    /// Parses `scontrol show node` output for one node.
    pub fn parse_node(text: &str) -> Result<Node, Error> {
        if text.len() > MAX_OUTPUT {
            return Err(bad("scontrol show node", format!("output over {MAX_OUTPUT} bytes")));
        }
        let list = feature_list;
        let mut node = Node::default();
        let mut seen_state = false;
        for (k, v) in fields(text) {
            match k {
                "AvailableFeatures" => node.available_features = list(v),
                "ActiveFeatures" => node.active_features = list(v),
                "State" => {
                    node.state = v.to_string();
                    seen_state = true;
                }
                "Gres" => {
                    let mut n: u32 = 0;
                    for g in v.split(',').filter(|g| g.starts_with("gpu")) {
                        let count =
                            g.split('(').next().unwrap_or(g).rsplit(':').next().and_then(|c| c.parse::<u32>().ok());
                        n = n.saturating_add(count.unwrap_or(0));
                    }
                    // A node declaring no GPU GRES is not compared.
                    node.gres_gpus = (n > 0).then_some(n);
                }
                "Reason" => {
                    let r = match v.rfind(" [") {
                        Some(i) if v.ends_with(']') => &v[..i],
                        _ => v,
                    };
                    node.reason = Some(r.trim().to_string()).filter(|r| !r.is_empty() && r != "(null)");
                }
                _ => {}
            }
        }
        if !seen_state {
            return Err(bad("scontrol show node", "no State= in the output (is the node name right?)"));
        }
        Ok(node)
    }
}
