//! SKU identification and anomalies: from one GPU's facts, and from its history in the log.
//!
//! The SKU comes from the PCI device id alone (a chip strap); everything else the probe reports
//! — driver name, GPU and board part numbers, InfoROM image, memory size, active NVLink count —
//! is cross-checked against it, and every disagreement becomes a typed [`Anomaly`] carrying its
//! evidence. An id the catalog does not know is "needs review", never a guess.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::catalog::{Catalog, Sku};
use crate::fingerprint::{GpuFacts, GpuUuid};
use crate::merkle::Hash;

/// How bad an anomaly is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Worth knowing, common on healthy fleets (e.g. fewer NVLinks in a VM).
    Info,
    /// Needs a person to look (a VBIOS change, a host move).
    Warning,
    /// The facts contradict each other or the record (an "H800" with H100 NVLink).
    Danger,
}

/// One inconsistency, with the evidence that shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Anomaly {
    /// The PCI device id is not in the catalog.
    UnknownPciId { pci_device_id: String },
    /// The PCI id is known but the subsystem (board) id is not listed for it.
    UnknownSubsystem { sku: String, pci_subsystem_id: String },
    /// The driver's product name is not the one the device id implies.
    NameMismatch { sku: String, expected: Vec<String>, reported: String },
    /// The GPU part number (`2324-865-A1`) starts with another device id.
    GpuPartNumberMismatch { pci_device_id: String, gpu_part_number: String },
    /// The board part number's project/SKU maps to another catalog SKU.
    BoardPartNumberMismatch { sku: String, board_part_number: String, board_sku: String },
    /// Board part number and InfoROM image disagree on the board project/SKU.
    InforomBoardMismatch { board_part_number: String, inforom_image_version: String },
    /// Reported memory does not fit the SKU's marketed capacity.
    MemoryMismatch { sku: String, expected_gib: f64, reported_mib: u64 },
    /// More active NVLinks than the SKU has: a red flag (e.g. an "H800" with 18 links).
    NvlinkExcess { sku: String, expected_links: u32, active_links: u32 },
    /// Fewer active NVLinks than the SKU has: common (pass-through VM, missing bridge).
    NvlinkFewer { sku: String, expected_links: u32, active_links: u32 },
    /// The VBIOS changed since the last record of this GPU.
    VbiosChanged { uuid: GpuUuid, from: String, to: String, previous_at: String },
    /// Another stable identity fact changed under the same UUID.
    IdentityChanged { uuid: GpuUuid, field: String, from: Option<String>, to: Option<String> },
    /// One serial number reported under more than one UUID.
    SerialUnderTwoUuids { serial: String, uuids: Vec<GpuUuid> },
    /// One UUID reported by two hosts within the concurrency window, or back and forth.
    UuidOnTwoHosts { uuid: GpuUuid, hosts: Vec<String> },
    /// The GPU moved from one host to another.
    MovedHost { uuid: GpuUuid, from: String, to: String, last_seen_on_old: String },
    /// The signer's own identification (a claim) is not what the facts give (the reader's).
    ClaimDisagrees { field: String, claimed: String, recomputed: String },
    /// The serial's acquisition record names another SKU than the GPU's PCI ids give.
    AcquisitionSkuDiffers { serial: String, acquired: String, recomputed: String },
    /// The record carries the GPU's NVIDIA attestation evidence, and it does not verify.
    EvidenceInvalid { reason: String },
    /// The board project and SKU the GPU itself signed (its attestation report) belong to
    /// another catalog SKU than its PCI ids give: the driver's facts and the hardware disagree.
    EvidenceSkuDisagrees { sku: String, board: String, evidence_sku: String },
    /// One hardware identity (`ueid`, the attestation key certificate's serial) under more than
    /// one UUID: the same chip claimed twice, or evidence copied from another GPU.
    UeidUnderTwoUuids { ueid: String, uuids: Vec<GpuUuid> },
    /// Two landmarks' round trips to the host cannot both be right: their disks do not meet (a
    /// landmark misplaced or lying, or an answer spoofed).
    LandmarkDisagreement { landmarks: Vec<String>, reason: String },
    /// The host's location proofs rule out its declared site or its licensed destination.
    /// `method` says what they locate (`host-key`: the holder of the host's key).
    LocationContradictsDeclared { method: String, reason: String },
}

impl Anomaly {
    pub fn severity(&self) -> Severity {
        match self {
            Anomaly::UnknownSubsystem { .. } | Anomaly::NvlinkFewer { .. } => Severity::Info,
            Anomaly::UnknownPciId { .. } | Anomaly::VbiosChanged { .. } | Anomaly::MovedHost { .. } => {
                Severity::Warning
            }
            _ => Severity::Danger,
        }
    }

    /// A one-line English explanation with the evidence.
    pub fn explain(&self) -> String {
        match self {
            Anomaly::UnknownPciId { pci_device_id } => {
                format!("PCI device id {pci_device_id} is not in the catalog: needs review")
            }
            Anomaly::UnknownSubsystem { sku, pci_subsystem_id } => {
                format!("subsystem {pci_subsystem_id} is not listed for {sku}")
            }
            Anomaly::NameMismatch { sku, expected, reported } => {
                format!("driver reports {reported:?} but the device id is {sku} (expected {})", expected.join(" or "))
            }
            Anomaly::GpuPartNumberMismatch { pci_device_id, gpu_part_number } => {
                format!("GPU part number {gpu_part_number} does not start with device id {pci_device_id}")
            }
            Anomaly::BoardPartNumberMismatch { sku, board_part_number, board_sku } => {
                format!("board part number {board_part_number} belongs to {board_sku}, but the device id is {sku}")
            }
            Anomaly::InforomBoardMismatch { board_part_number, inforom_image_version } => {
                format!("InfoROM image {inforom_image_version} does not match board part number {board_part_number}")
            }
            Anomaly::MemoryMismatch { sku, expected_gib, reported_mib } => {
                format!("{reported_mib} MiB reported; {sku} has {expected_gib} GiB")
            }
            Anomaly::NvlinkExcess { sku, expected_links, active_links } => {
                format!("{active_links} active NVLinks; {sku} has {expected_links}: more links than the SKU has")
            }
            Anomaly::NvlinkFewer { sku, expected_links, active_links } => format!(
                "{active_links} of {expected_links} NVLinks active on {sku} (common in VMs or without a bridge)"
            ),
            Anomaly::VbiosChanged { uuid, from, to, previous_at } => {
                format!("VBIOS of {uuid} changed from {from} (seen {previous_at}) to {to}")
            }
            Anomaly::IdentityChanged { uuid, field, from, to } => format!(
                "{field} of {uuid} changed from {} to {}",
                from.as_deref().unwrap_or("(absent)"),
                to.as_deref().unwrap_or("(absent)")
            ),
            Anomaly::SerialUnderTwoUuids { serial, uuids } => format!(
                "serial {serial} reported under {} UUIDs: {}",
                uuids.len(),
                uuids.iter().map(|u| u.as_str()).collect::<Vec<_>>().join(", ")
            ),
            Anomaly::UuidOnTwoHosts { uuid, hosts } => {
                format!("{uuid} reported by several hosts at once: {}", hosts.join(", "))
            }
            Anomaly::MovedHost { uuid, from, to, last_seen_on_old } => {
                format!("{uuid} moved from {from} (last seen {last_seen_on_old}) to {to}")
            }
            Anomaly::ClaimDisagrees { field, claimed, recomputed } => {
                format!("the record claims {field} {claimed}, but its facts give {recomputed}")
            }
            Anomaly::AcquisitionSkuDiffers { serial, acquired, recomputed } => {
                format!("serial {serial} was acquired as a {acquired}, but this GPU's PCI ids say {recomputed}")
            }
            Anomaly::EvidenceInvalid { reason } => {
                format!("the GPU's NVIDIA attestation evidence does not verify: {reason}")
            }
            Anomaly::EvidenceSkuDisagrees { sku, board, evidence_sku } => format!(
                "the GPU signed board {board} ({evidence_sku}) in its attestation report, but its PCI ids say {sku}"
            ),
            Anomaly::UeidUnderTwoUuids { ueid, uuids } => format!(
                "hardware identity (ueid) {ueid} attested under {} UUIDs: {}",
                uuids.len(),
                uuids.iter().map(|u| u.as_str()).collect::<Vec<_>>().join(", ")
            ),
            Anomaly::LandmarkDisagreement { reason, .. } => format!("location proofs disagree: {reason}"),
            Anomaly::LocationContradictsDeclared { method, reason } => {
                format!("location proofs ({method}) contradict the declaration: {reason}")
            }
        }
    }

    /// The anomaly's kind as policies and exports name it (`nvlink-fewer`, `claim-disagrees`, …).
    pub fn kind_name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
            .unwrap_or_default()
    }
}

/// The identification of one GPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Identification {
    /// The catalog SKU, or `None` when it needs review.
    pub sku: Option<String>,
    /// Why the SKU is unknown, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_review: Option<String>,
    pub anomalies: Vec<Anomaly>,
}

impl Identification {
    pub fn worst(&self) -> Option<Severity> {
        self.anomalies.iter().map(Anomaly::severity).max()
    }
}

/// Identifies one GPU from its facts and lists every inconsistency among them.
pub fn identify(catalog: &Catalog, facts: &GpuFacts) -> Identification {
    let mut anomalies = Vec::new();
    let Some(device) = facts.pci_device_id else {
        return Identification {
            sku: None,
            needs_review: Some("the probe reported no PCI device id".into()),
            anomalies,
        };
    };
    let dev_hex = format!("0x{device:04x}");
    let Some(sku) = catalog.by_pci_device(device) else {
        anomalies.push(Anomaly::UnknownPciId { pci_device_id: dev_hex.clone() });
        return Identification {
            sku: None,
            needs_review: Some(format!("PCI device id {dev_hex} is not in the catalog")),
            anomalies,
        };
    };

    let names: Vec<_> = catalog.pci_names(device).collect();
    if let Some(sub) = facts.pci_subsystem_id {
        let pair = ((sub & 0xffff) as u16, (sub >> 16) as u16);
        let listed: Vec<_> = names.iter().flat_map(|n| n.subsystems.iter()).collect();
        if !listed.is_empty() && !listed.contains(&&pair) {
            anomalies
                .push(Anomaly::UnknownSubsystem { sku: sku.sku.clone(), pci_subsystem_id: format!("0x{sub:08x}") });
        }
    }
    if let Some(reported) = &facts.name {
        let expected: Vec<String> = names.iter().filter_map(|n| n.driver_name.clone()).collect();
        if !expected.is_empty() && !expected.iter().any(|e| e.eq_ignore_ascii_case(reported.trim())) {
            anomalies.push(Anomaly::NameMismatch { sku: sku.sku.clone(), expected, reported: reported.clone() });
        }
    }
    if let Some(gpn) = &facts.gpu_part_number {
        let prefix = gpn.split('-').next().unwrap_or("");
        if u16::from_str_radix(prefix, 16).ok() != Some(device) {
            anomalies
                .push(Anomaly::GpuPartNumberMismatch { pci_device_id: dev_hex.clone(), gpu_part_number: gpn.clone() });
        }
    }
    if let Some(bpn) = &facts.board_part_number {
        if let Some((project, project_sku)) = board_project_of(bpn) {
            if let Some(bp) = catalog.board_project(&project, &project_sku) {
                if bp.sku != sku.sku {
                    anomalies.push(Anomaly::BoardPartNumberMismatch {
                        sku: sku.sku.clone(),
                        board_part_number: bpn.clone(),
                        board_sku: bp.sku.clone(),
                    });
                }
            }
            if let Some(img) = &facts.inforom_image_version {
                if let Some((ip, isku)) = inforom_project_of(img) {
                    if !ip.eq_ignore_ascii_case(&project) || isku != project_sku {
                        anomalies.push(Anomaly::InforomBoardMismatch {
                            board_part_number: bpn.clone(),
                            inforom_image_version: img.clone(),
                        });
                    }
                }
            }
        }
    }
    if let (Some(bytes), Some(gib)) = (facts.memory_total_bytes, sku.memory_gib) {
        let mib = bytes / (1024 * 1024);
        let expected_mib = gib * 1024.0;
        // Drivers report a little less than the marketed size (81559 MiB for "80 GB" HBM3,
        // 143771 MiB for 141 GB); never more than a rounding margin above it.
        let ratio = mib as f64 / expected_mib;
        if !(0.90..=1.02).contains(&ratio) {
            anomalies.push(Anomaly::MemoryMismatch { sku: sku.sku.clone(), expected_gib: gib, reported_mib: mib });
        }
    }
    if let (Some(active), Some(expected)) = (facts.active_nvlinks(), sku.nvlink_links) {
        if active > expected {
            anomalies.push(Anomaly::NvlinkExcess {
                sku: sku.sku.clone(),
                expected_links: expected,
                active_links: active,
            });
        } else if active < expected {
            anomalies.push(Anomaly::NvlinkFewer {
                sku: sku.sku.clone(),
                expected_links: expected,
                active_links: active,
            });
        }
    }
    Identification { sku: Some(sku.sku.clone()), needs_review: needs_review_note(sku), anomalies }
}

/// SKUs the catalog cannot classify on its own say so (e.g. no TPP found for H800 NVL).
fn needs_review_note(sku: &Sku) -> Option<String> {
    sku.tpp.is_none().then(|| format!("the catalog has no TPP for {}: classification needs review", sku.sku))
}

/// `692-2G520-0205-000` → (`G520`, `0205`). The board project is the last four characters of the
/// second group.
pub fn board_project_of(bpn: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = bpn.trim().split('-').collect();
    if parts.len() < 3 || parts[1].len() < 4 {
        return None;
    }
    // The last four bytes, when they are characters of their own (a part number is ASCII; one
    // that is not names no board project).
    let g = parts[1];
    let project = g.get(g.len() - 4..).filter(|p| p.is_ascii())?;
    Some((project.to_ascii_uppercase(), parts[2].to_string()))
}

/// `G520.0205.00.02` → (`G520`, `0205`).
pub fn inforom_project_of(image: &str) -> Option<(String, String)> {
    let mut it = image.trim().split('.');
    let project = it.next()?;
    let sku = it.next()?;
    (project.len() == 4 && sku.len() == 4).then(|| (project.to_ascii_uppercase(), sku.to_string()))
}

/// One earlier (or the current) record of a GPU, as the ledger's history view gives it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sighting {
    pub uuid: GpuUuid,
    pub serial: Option<String>,
    pub host: String,
    pub vbios_version: Option<String>,
    pub fingerprint_digest: Hash,
    pub fingerprint: Option<crate::fingerprint::Fingerprint>,
    #[serde(with = "time::serde::rfc3339")]
    pub observed_at: OffsetDateTime,
}

/// Settings for history checks.
#[derive(Clone, Copy, Debug)]
pub struct HistoryRules {
    /// Two hosts reporting the same UUID closer together than this are "at once".
    pub concurrency_window: time::Duration,
}

impl Default for HistoryRules {
    fn default() -> Self {
        HistoryRules { concurrency_window: time::Duration::minutes(30) }
    }
}

/// Anomalies that only a GPU's history shows: a VBIOS or identity change under one UUID, a serial
/// under two UUIDs, one UUID on two hosts at once, a move between hosts. `history` holds earlier
/// sightings that share the current UUID or serial, in any order.
pub fn history_anomalies(current: &Sighting, history: &[Sighting], rules: HistoryRules) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let mut same_uuid: Vec<&Sighting> = history.iter().filter(|s| s.uuid == current.uuid).collect();
    same_uuid.sort_by_key(|s| s.observed_at);

    if let Some(prev) = same_uuid.iter().rev().find(|s| s.observed_at <= current.observed_at) {
        out.extend(changes(prev, current));
    }

    if let Some(serial) = current.serial.as_deref().filter(|s| !is_placeholder_serial(s)) {
        let mut uuids: Vec<GpuUuid> = history
            .iter()
            .filter(|s| s.serial.as_deref() == Some(serial))
            .map(|s| s.uuid.clone())
            .chain(std::iter::once(current.uuid.clone()))
            .collect();
        uuids.sort();
        uuids.dedup();
        if uuids.len() > 1 {
            out.push(Anomaly::SerialUnderTwoUuids { serial: serial.to_string(), uuids });
        }
    }

    // Hosts: walk the sightings of this UUID in time order, including the current one.
    let mut timeline: Vec<&Sighting> = same_uuid.clone();
    timeline.push(current);
    timeline.sort_by_key(|s| s.observed_at);
    let mut concurrent: Vec<String> = Vec::new();
    let mut moves: Vec<(String, String, OffsetDateTime)> = Vec::new();
    let mut left_hosts: Vec<String> = Vec::new();
    for pair in timeline.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.host == b.host {
            continue;
        }
        if b.observed_at - a.observed_at < rules.concurrency_window || left_hosts.contains(&b.host) {
            concurrent.extend([a.host.clone(), b.host.clone()]);
        } else {
            moves.push((a.host.clone(), b.host.clone(), a.observed_at));
        }
        left_hosts.push(a.host.clone());
    }
    if !concurrent.is_empty() {
        concurrent.sort();
        concurrent.dedup();
        out.push(Anomaly::UuidOnTwoHosts { uuid: current.uuid.clone(), hosts: concurrent });
    } else if let Some((from, to, at)) = moves.last() {
        if *to == current.host {
            out.push(Anomaly::MovedHost {
                uuid: current.uuid.clone(),
                from: from.clone(),
                to: to.clone(),
                last_seen_on_old: rfc3339(*at),
            });
        }
    }
    out
}

/// What changed between two sightings of one GPU: its VBIOS, or another stable identity fact. A
/// fact present on one side only is a probe difference (a driver that added a symbol, an import
/// next to a live probe), not a different GPU; NVLink state has its own checks.
pub fn changes(previous: &Sighting, current: &Sighting) -> Vec<Anomaly> {
    let mut out = Vec::new();
    if let (Some(a), Some(b)) = (&previous.vbios_version, &current.vbios_version) {
        if a != b {
            out.push(Anomaly::VbiosChanged {
                uuid: current.uuid.clone(),
                from: a.clone(),
                to: b.clone(),
                previous_at: rfc3339(previous.observed_at),
            });
        }
    }
    if let (Some(fa), Some(fb)) = (&previous.fingerprint, &current.fingerprint) {
        for (field, from, to) in fa.diff(fb) {
            if field == "vbios" || field.starts_with("nvlink.") || from.is_none() || to.is_none() {
                continue;
            }
            out.push(Anomaly::IdentityChanged {
                uuid: current.uuid.clone(),
                field: field.to_string(),
                from: from.map(str::to_string),
                to: to.map(str::to_string),
            });
        }
    }
    out
}

/// Captures and some VMs mask serials to zeros; those never count as a shared serial.
fn is_placeholder_serial(s: &str) -> bool {
    s.trim().is_empty() || s.bytes().all(|b| b == b'0')
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.to_string())
}
