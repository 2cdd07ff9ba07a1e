//! GPU facts as a probe sees them, the stable *fingerprint* drawn from them, and its digest.
//!
//! Canonical encoding, version 1 (frozen by a known-answer test; changing it is a format bump):
//!
//! ```text
//! chipledger.fingerprint.v1\n
//! <key>=<value>\n        for every field present, in the fixed order of FIELDS
//! <key>\n                for every field absent
//! ```
//!
//! Values are UTF-8 with `%`, LF and CR percent-encoded (`%25`, `%0A`, `%0D`). Integers are
//! decimal; PCI ids are `0x` + lowercase hex (4 digits for a device, 8 for a subsystem). NVLink
//! adds `nvlink.active=<n>` and one `nvlink.<i>=<active|inactive>,<version or ?>` line per link
//! the probe saw. The digest is SHA-256 of those bytes. Volatile readings ([`Observations`])
//! never enter it, so two probes of an unchanged card give the same digest, and a VBIOS reflash
//! or a swapped board changes it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::merkle::Hash;
use crate::Error;

/// A GPU's UUID as NVML prints it: `GPU-` followed by a hyphenated 128-bit hex value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GpuUuid(String);

impl GpuUuid {
    pub fn parse(s: &str) -> Result<GpuUuid, Error> {
        let bad = |reason| Error::GpuUuid { input: s.to_string(), reason };
        let rest = s
            .strip_prefix("GPU-")
            .or_else(|| s.strip_prefix("MIG-"))
            .ok_or_else(|| bad("it must start with GPU- (or MIG-)"))?;
        let groups: Vec<&str> = rest.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lens != [8, 4, 4, 4, 12] {
            return Err(bad("expected 8-4-4-4-12 hex digits"));
        }
        if !rest.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()) {
            return Err(bad("expected hex digits"));
        }
        Ok(GpuUuid(format!("{}{}", &s[..4], rest.to_ascii_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GpuUuid {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        GpuUuid::parse(&s)
    }
}

impl From<GpuUuid> for String {
    fn from(u: GpuUuid) -> String {
        u.0
    }
}

impl fmt::Display for GpuUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One NVLink as the probe saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NvLink {
    pub index: u32,
    pub active: bool,
    /// Raw NVML `nvmlNvlinkVersion_t` (6 = NVLink 4.0 on Hopper), when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Per-link speed in GB/s when the source reports it (`nvidia-smi nvlink -s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_gbs: Option<f64>,
    /// PCI bus id of the far end (an NVSwitch or a peer GPU): topology, not identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_bus_id: Option<String>,
}

/// Everything a probe learnt about one GPU. Absent facts are `None`; `absent` says why when the
/// probe knows (e.g. `NotSupported`, `FailedToLoadSymbol(nvmlDeviceGetPdi)`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuFacts {
    pub uuid: Option<GpuUuid>,
    pub serial: Option<String>,
    /// NVML `nvmlDeviceGetPdi`, a 64-bit per-device id on new drivers, as `0x…`.
    pub pdi: Option<String>,
    pub name: Option<String>,
    pub brand: Option<String>,
    /// PCI device id (the upper 16 bits of NVML's `pci_device_id`; vendor 0x10de implied).
    pub pci_device_id: Option<u16>,
    /// Full 32-bit subsystem id as NVML gives it, e.g. `0x17a610de`.
    pub pci_subsystem_id: Option<u32>,
    pub pci_bus_id: Option<String>,
    pub board_part_number: Option<String>,
    pub gpu_part_number: Option<String>,
    pub vbios_version: Option<String>,
    pub inforom_image_version: Option<String>,
    pub inforom_oem_version: Option<String>,
    pub inforom_ecc_version: Option<String>,
    pub inforom_power_version: Option<String>,
    pub architecture: Option<String>,
    /// e.g. `9.0`.
    pub compute_capability: Option<String>,
    pub memory_total_bytes: Option<u64>,
    pub memory_bus_width_bits: Option<u32>,
    pub cuda_cores: Option<u32>,
    pub sm_count: Option<u32>,
    pub max_sm_clock_mhz: Option<u32>,
    pub max_memory_clock_mhz: Option<u32>,
    pub power_limit_max_mw: Option<u32>,
    pub power_limit_min_mw: Option<u32>,
    pub max_pcie_link_gen: Option<u32>,
    pub max_pcie_link_width: Option<u32>,
    pub module_id: Option<u32>,
    pub chassis_serial: Option<String>,
    pub slot_number: Option<u32>,
    pub nvlinks: Option<Vec<NvLink>>,
    pub mig_mode_enabled: Option<bool>,
    /// The GPU's hardware identity: the serial of its attestation key's certificate, read from
    /// the NVIDIA attestation evidence the record carries (Hopper in CC mode, Blackwell). A
    /// reader believes it only when that evidence verifies and names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ueid: Option<String>,
    #[serde(default)]
    pub observations: Observations,
    /// Field name → why the probe could not read it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub absent: BTreeMap<String, String>,
}

/// Volatile readings: they ride along with an attestation but never enter the fingerprint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Observations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_draw_watts: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_mhz: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecc_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecc_aggregate_uncorrectable: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_or_remapped_rows: Option<u64>,
}

impl GpuFacts {
    /// The active NVLink count, when the probe reported links.
    pub fn active_nvlinks(&self) -> Option<u32> {
        self.nvlinks.as_ref().map(|links| links.iter().filter(|l| l.active).count() as u32)
    }

    pub fn fingerprint(&self) -> Fingerprint {
        let mut fields: Vec<(&'static str, Option<String>)> = vec![
            ("uuid", self.uuid.as_ref().map(|u| u.to_string())),
            ("serial", self.serial.clone()),
            ("pdi", self.pdi.clone()),
            ("pci.device", self.pci_device_id.map(|d| format!("0x{d:04x}"))),
            ("pci.subsystem", self.pci_subsystem_id.map(|d| format!("0x{d:08x}"))),
            ("board_part_number", self.board_part_number.clone()),
            ("gpu_part_number", self.gpu_part_number.clone()),
            ("vbios", self.vbios_version.clone()),
            ("inforom.image", self.inforom_image_version.clone()),
            ("inforom.oem", self.inforom_oem_version.clone()),
            ("inforom.ecc", self.inforom_ecc_version.clone()),
            ("architecture", self.architecture.clone()),
            ("compute_capability", self.compute_capability.clone()),
            ("memory.total_bytes", self.memory_total_bytes.map(|v| v.to_string())),
            ("memory.bus_width_bits", self.memory_bus_width_bits.map(|v| v.to_string())),
            ("cuda_cores", self.cuda_cores.map(|v| v.to_string())),
            ("sm_count", self.sm_count.map(|v| v.to_string())),
            ("clock.max_sm_mhz", self.max_sm_clock_mhz.map(|v| v.to_string())),
            ("clock.max_memory_mhz", self.max_memory_clock_mhz.map(|v| v.to_string())),
            ("power.max_limit_mw", self.power_limit_max_mw.map(|v| v.to_string())),
            ("module_id", self.module_id.map(|v| v.to_string())),
            ("slot", self.slot_number.map(|v| v.to_string())),
            ("chassis_serial", self.chassis_serial.clone()),
            ("nvlink.active", self.active_nvlinks().map(|v| v.to_string())),
        ];
        // Only when there is one: records made before it was read keep their digests.
        if let Some(ueid) = &self.ueid {
            fields.push(("ueid", Some(ueid.clone())));
        }
        if let Some(links) = &self.nvlinks {
            let mut links: Vec<&NvLink> = links.iter().collect();
            links.sort_by_key(|l| l.index);
            for l in links {
                let state = if l.active { "active" } else { "inactive" };
                let version = l.version.map_or("?".to_string(), |v| v.to_string());
                fields.push((nvlink_key(l.index), Some(format!("{state},{version}"))));
            }
        }
        Fingerprint { fields: fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect() }
    }
}

fn nvlink_key(index: u32) -> &'static str {
    const KEYS: [&str; 18] = [
        "nvlink.0",
        "nvlink.1",
        "nvlink.2",
        "nvlink.3",
        "nvlink.4",
        "nvlink.5",
        "nvlink.6",
        "nvlink.7",
        "nvlink.8",
        "nvlink.9",
        "nvlink.10",
        "nvlink.11",
        "nvlink.12",
        "nvlink.13",
        "nvlink.14",
        "nvlink.15",
        "nvlink.16",
        "nvlink.17",
    ];
    KEYS.get(index as usize).copied().unwrap_or("nvlink.extra")
}

/// The stable identity facts of one GPU, in canonical order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// `(key, value)` in canonical order; `None` = absent.
    pub fields: Vec<(String, Option<String>)>,
}

/// The first line of the canonical encoding; names the format version.
pub const FINGERPRINT_FORMAT: &str = "chipledger.fingerprint.v1";

impl Fingerprint {
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(FINGERPRINT_FORMAT.as_bytes());
        out.push(b'\n');
        for (k, v) in &self.fields {
            out.extend_from_slice(k.as_bytes());
            if let Some(v) = v {
                out.push(b'=');
                for b in v.bytes() {
                    match b {
                        b'%' => out.extend_from_slice(b"%25"),
                        b'\n' => out.extend_from_slice(b"%0A"),
                        b'\r' => out.extend_from_slice(b"%0D"),
                        _ => out.push(b),
                    }
                }
            }
            out.push(b'\n');
        }
        out
    }

    pub fn digest(&self) -> Hash {
        Hash::sha256(&self.canonical_bytes())
    }

    pub fn value(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.as_deref())
    }

    /// The keys whose values differ between two fingerprints, with both values.
    pub fn diff<'a>(&'a self, other: &'a Fingerprint) -> Vec<(&'a str, Option<&'a str>, Option<&'a str>)> {
        let mut keys: Vec<&str> = self.fields.iter().map(|(k, _)| k.as_str()).collect();
        for (k, _) in &other.fields {
            if !keys.contains(&k.as_str()) {
                keys.push(k);
            }
        }
        keys.into_iter()
            .filter_map(|k| {
                let (a, b) = (self.value(k), other.value(k));
                (a != b).then_some((k, a, b))
            })
            .collect()
    }
}
