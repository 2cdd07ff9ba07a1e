//! One tree shape for both nvidia-smi formats, and the field extraction that reads GPU facts
//! from it through a per-format [`Layout`] of key paths.

use chipledger_domain::fingerprint::{GpuFacts, GpuUuid, Observations};

use crate::Error;

/// How deep a dump may nest (real ones nest about 6 deep). The tree is built and dropped
/// recursively, so a deeper one would exhaust the stack instead of being refused.
pub(crate) const MAX_DEPTH: usize = 32;

/// A key (text) or element (XML) with its value and children; `line` is 1-based.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Node {
    pub name: String,
    pub value: Option<String>,
    pub children: Vec<Node>,
    pub line: u64,
}

impl Node {
    /// The first child whose name matches (ASCII case-insensitively; layouts differ in case).
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }

    pub fn path(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |node, key| node.child(key))
    }
}

/// Values nvidia-smi prints for a fact it cannot give.
const ABSENT_MARKERS: &[&str] = &[
    "N/A",
    "[N/A]",
    "Not Supported",
    "[Not Supported]",
    "Not Available",
    "Unknown Error",
    "[Unknown Error]",
    "Insufficient Permissions",
    "[Insufficient Permissions]",
    "Requested functionality has been deprecated",
    "GPU requires reset",
    "[GPU requires reset]",
];

/// Alternative key paths for one fact, tried in order (driver generations rename and move
/// keys: `Power Readings` became `GPU Power Readings`, `Module ID` moved into `Platform Info`).
pub(crate) type Paths = &'static [&'static [&'static str]];

/// Where each fact lives in one format.
#[derive(Debug)]
pub(crate) struct Layout {
    pub uuid: Paths,
    pub serial: Paths,
    pub pdi: Paths,
    pub name: Paths,
    pub brand: Paths,
    pub architecture: Paths,
    pub pci_device_id: Paths,
    pub pci_subsystem_id: Paths,
    pub pci_bus_id: Paths,
    pub board_part_number: Paths,
    pub gpu_part_number: Paths,
    pub vbios: Paths,
    pub inforom_image: Paths,
    pub inforom_oem: Paths,
    pub inforom_ecc: Paths,
    pub inforom_power: Paths,
    pub memory_total: Paths,
    pub max_sm_clock: Paths,
    pub max_memory_clock: Paths,
    pub power_max: Paths,
    pub power_min: Paths,
    pub pcie_gen_max: Paths,
    pub pcie_width_max: Paths,
    pub module_id: Paths,
    pub chassis_serial: Paths,
    pub slot_number: Paths,
    pub mig_current: Paths,
    pub temperature: Paths,
    pub utilization: Paths,
    pub power_draw: Paths,
    pub sm_clock: Paths,
    pub memory_used: Paths,
    pub ecc_current: Paths,
    pub ecc_aggregate_uncorrectable: Paths,
    pub remapped_rows: Paths,
}

/// Reads one GPU's facts from its node. `bus_id_fallback` is the id in the section header
/// (`GPU 00000000:18:00.0`, `<gpu id="…">`).
pub(crate) fn extract(
    gpu: &Node,
    layout: &Layout,
    bus_id_fallback: Option<&str>,
    file: &str,
) -> Result<GpuFacts, Error> {
    let mut r = Reader { gpu, file, facts: GpuFacts::default() };
    let f = &mut r;

    let uuid = f.string("uuid", layout.uuid);
    f.facts.uuid = match uuid {
        Some((s, line)) => Some(GpuUuid::parse(&s).map_err(|e| f.bad(line, e.to_string()))?),
        None => None,
    };
    f.facts.serial = f.string("serial", layout.serial).map(|v| v.0);
    f.facts.pdi = f.parse("pdi", layout.pdi, |s| {
        let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
        u64::from_str_radix(hex, 16).map(|v| format!("0x{v:016x}")).map_err(|_| "expected a hex number".to_string())
    })?;
    f.facts.name = f.string("name", layout.name).map(|v| v.0);
    f.facts.brand = f.string("brand", layout.brand).map(|v| v.0);
    f.facts.architecture = f.string("architecture", layout.architecture).map(|v| v.0);
    let device = f.parse("pci_device_id", layout.pci_device_id, hex_u32)?;
    f.facts.pci_device_id = device.map(|id| (id >> 16) as u16);
    f.facts.pci_subsystem_id = f.parse("pci_subsystem_id", layout.pci_subsystem_id, hex_u32)?;
    f.facts.pci_bus_id = f.string("pci_bus_id", layout.pci_bus_id).map(|v| v.0).or(bus_id_fallback.map(str::to_string));
    f.facts.board_part_number = f.string("board_part_number", layout.board_part_number).map(|v| v.0);
    f.facts.gpu_part_number = f.string("gpu_part_number", layout.gpu_part_number).map(|v| v.0);
    f.facts.vbios_version = f.string("vbios_version", layout.vbios).map(|v| v.0);
    f.facts.inforom_image_version = f.string("inforom_image_version", layout.inforom_image).map(|v| v.0);
    f.facts.inforom_oem_version = f.string("inforom_oem_version", layout.inforom_oem).map(|v| v.0);
    f.facts.inforom_ecc_version = f.string("inforom_ecc_version", layout.inforom_ecc).map(|v| v.0);
    f.facts.inforom_power_version = f.string("inforom_power_version", layout.inforom_power).map(|v| v.0);
    f.facts.memory_total_bytes = f.parse("memory_total_bytes", layout.memory_total, mib_to_bytes)?;
    f.facts.max_sm_clock_mhz = f.parse("max_sm_clock_mhz", layout.max_sm_clock, |s| unit_u32(s, "MHz"))?;
    f.facts.max_memory_clock_mhz = f.parse("max_memory_clock_mhz", layout.max_memory_clock, |s| unit_u32(s, "MHz"))?;
    f.facts.power_limit_max_mw = f.parse("power_limit_max_mw", layout.power_max, watts_to_mw)?;
    f.facts.power_limit_min_mw = f.parse("power_limit_min_mw", layout.power_min, watts_to_mw)?;
    f.facts.max_pcie_link_gen = f.parse("max_pcie_link_gen", layout.pcie_gen_max, |s| unit_u32(s, ""))?;
    f.facts.max_pcie_link_width = f.parse("max_pcie_link_width", layout.pcie_width_max, |s| unit_u32(s, "x"))?;
    f.facts.module_id = f.parse("module_id", layout.module_id, |s| unit_u32(s, ""))?;
    f.facts.chassis_serial = f.string("chassis_serial", layout.chassis_serial).map(|v| v.0);
    f.facts.slot_number = f.parse("slot_number", layout.slot_number, |s| unit_u32(s, ""))?;
    f.facts.mig_mode_enabled = f.parse("mig_mode_enabled", layout.mig_current, enabled)?;
    for (field, why) in [
        ("compute_capability", "nvidia-smi -q does not print it"),
        ("cuda_cores", "nvidia-smi -q does not print it"),
        ("sm_count", "nvidia-smi -q does not print it"),
        ("memory_bus_width_bits", "nvidia-smi -q does not print it"),
    ] {
        f.facts.absent.insert(field.to_string(), why.to_string());
    }

    let obs = Observations {
        temperature_c: f.parse("observations.temperature_c", layout.temperature, |s| unit_f64(s, "C"))?,
        utilization_percent: f.parse("observations.utilization_percent", layout.utilization, |s| unit_f64(s, "%"))?,
        power_draw_watts: f.parse("observations.power_draw_watts", layout.power_draw, |s| unit_f64(s, "W"))?,
        sm_clock_mhz: f.parse("observations.sm_clock_mhz", layout.sm_clock, |s| unit_u32(s, "MHz"))?,
        memory_used_bytes: f.parse("observations.memory_used_bytes", layout.memory_used, mib_to_bytes)?,
        ecc_enabled: f.parse("observations.ecc_enabled", layout.ecc_current, enabled)?,
        ecc_aggregate_uncorrectable: f.parse(
            "observations.ecc_aggregate_uncorrectable",
            layout.ecc_aggregate_uncorrectable,
            |s| s.parse::<u64>().map_err(|_| "expected a count".to_string()),
        )?,
        retired_or_remapped_rows: f.parse("observations.retired_or_remapped_rows", layout.remapped_rows, |s| {
            s.parse::<u64>().map_err(|_| "expected a count".to_string())
        })?,
    };
    // Observations that are simply not there are not worth an `absent` line each.
    f.facts.absent.retain(|k, _| !k.starts_with("observations."));
    f.facts.observations = obs;
    Ok(r.facts)
}

struct Reader<'a> {
    gpu: &'a Node,
    file: &'a str,
    facts: GpuFacts,
}

impl Reader<'_> {
    /// The value at the first path that exists; an absent marker or a missing key is recorded
    /// in `absent` and gives `None`.
    fn string(&mut self, field: &str, paths: Paths) -> Option<(String, u64)> {
        for path in paths {
            if let Some(node) = self.gpu.path(path) {
                let raw = node.value.as_deref().unwrap_or("").trim();
                if raw.is_empty() || ABSENT_MARKERS.iter().any(|m| raw.eq_ignore_ascii_case(m)) {
                    let why = if raw.is_empty() { "empty in the dump" } else { raw };
                    self.facts.absent.insert(field.to_string(), format!("{why} (nvidia-smi)"));
                    return None;
                }
                return Some((raw.to_string(), node.line));
            }
        }
        self.facts.absent.insert(field.to_string(), "not in this dump's layout".to_string());
        None
    }

    fn parse<T>(
        &mut self,
        field: &str,
        paths: Paths,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, Error> {
        match self.string(field, paths) {
            None => Ok(None),
            Some((s, line)) => f(&s).map(Some).map_err(|why| self.bad(line, format!("{field}: {s:?}: {why}"))),
        }
    }

    fn bad(&self, line: u64, message: String) -> Error {
        Error::Dump { path: self.file.to_string(), line, message }
    }
}

fn hex_u32(s: &str) -> Result<u32, String> {
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    u32::from_str_radix(hex, 16).map_err(|_| "expected up to 8 hex digits".to_string())
}

fn strip_unit<'a>(s: &'a str, unit: &str) -> &'a str {
    let s = s.trim();
    if unit.is_empty() {
        return s;
    }
    s.strip_suffix(unit).map(str::trim).unwrap_or(s)
}

fn unit_u32(s: &str, unit: &str) -> Result<u32, String> {
    let v = strip_unit(s, unit);
    if let Some(hex) = v.strip_prefix("0x") {
        return u32::from_str_radix(hex, 16).map_err(|_| "expected a number".to_string());
    }
    v.parse::<u32>().map_err(|_| format!("expected a whole number{}", if unit.is_empty() { "" } else { " of " }) + unit)
}

fn unit_f64(s: &str, unit: &str) -> Result<f64, String> {
    strip_unit(s, unit)
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("expected a number of {unit}"))
}

fn mib_to_bytes(s: &str) -> Result<u64, String> {
    let mib = strip_unit(s, "MiB").parse::<u64>().map_err(|_| "expected a whole number of MiB".to_string())?;
    mib.checked_mul(1024 * 1024).ok_or_else(|| "too large".to_string())
}

fn watts_to_mw(s: &str) -> Result<u32, String> {
    let w = unit_f64(s, "W")?;
    let mw = (w * 1000.0).round();
    if !(0.0..=u32::MAX as f64).contains(&mw) {
        return Err("out of range".to_string());
    }
    Ok(mw as u32)
}

fn enabled(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "enabled" => Ok(true),
        "disabled" => Ok(false),
        _ => Err("expected Enabled or Disabled".to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn units_parse_the_way_nvidia_smi_prints_them() {
        assert_eq!(mib_to_bytes("81559 MiB").unwrap(), 81559 * 1024 * 1024);
        assert_eq!(watts_to_mw("700.00 W").unwrap(), 700_000);
        assert_eq!(unit_u32("1980 MHz", "MHz").unwrap(), 1980);
        assert_eq!(unit_u32("16x", "x").unwrap(), 16);
        assert_eq!(hex_u32("0x232410DE").unwrap(), 0x2324_10de);
        assert_eq!(hex_u32("20B210DE").unwrap(), 0x20b2_10de);
        assert!(hex_u32("0xZZ").is_err());
        assert!(watts_to_mw("-1e300 W").is_err());
        assert!(mib_to_bytes("99999999999999999 MiB").is_err());
    }
}
