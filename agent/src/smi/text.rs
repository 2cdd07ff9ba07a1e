//! `nvidia-smi -q` (text): `Key : Value` lines nested by indentation, one `GPU <bus id>`
//! section per GPU. Parsed by key, not by column, because the key column width and the set of
//! sections change across driver generations.

use super::tree::{Layout, Node, MAX_DEPTH};
use crate::Error;

/// Parses a whole dump into its top-level nodes (`Driver Version`, `GPU 00000000:18:00.0`, …).
pub(crate) fn parse(text: &str, file: &str) -> Result<Vec<Node>, Error> {
    let mut lines = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        let trimmed_end = raw.trim_end();
        let content = trimmed_end.trim_start();
        if content.is_empty() || content.starts_with("====") {
            continue;
        }
        let indent: usize =
            trimmed_end.chars().take_while(|c| c.is_whitespace()).map(|c| if c == '\t' { 4 } else { 1 }).sum();
        let (name, value) = match content.find(" :").or_else(|| content.ends_with(':').then(|| content.len() - 1)) {
            Some(at) => {
                let value = content[at..].trim_start_matches([' ', ':']).trim();
                (content[..at].trim().to_string(), Some(value.to_string()))
            }
            None => (content.to_string(), None),
        };
        if name.is_empty() {
            return Err(Error::Dump { path: file.to_string(), line: line_no, message: "a value without a key".into() });
        }
        // The indents of the open sections, innermost last: how deep this line nests.
        while open.last().is_some_and(|&i| i >= indent) {
            open.pop();
        }
        open.push(indent);
        if open.len() > MAX_DEPTH {
            return Err(Error::Dump {
                path: file.to_string(),
                line: line_no,
                message: format!("sections nest deeper than {MAX_DEPTH}: not nvidia-smi output"),
            });
        }
        lines.push((indent, Node { name, value, children: Vec::new(), line: line_no }));
    }
    let mut pos = 0;
    Ok(build(&mut lines, &mut pos, None))
}

fn build(lines: &mut [(usize, Node)], pos: &mut usize, parent_indent: Option<usize>) -> Vec<Node> {
    let mut out = Vec::new();
    while *pos < lines.len() {
        let indent = lines[*pos].0;
        if parent_indent.is_some_and(|p| indent <= p) {
            break;
        }
        let mut node = std::mem::take(&mut lines[*pos].1);
        *pos += 1;
        node.children = build(lines, pos, Some(indent));
        out.push(node);
    }
    out
}

/// The GPU sections of a dump with the bus id their header names.
pub(crate) fn gpu_sections(top: &[Node]) -> impl Iterator<Item = (&Node, &str)> {
    top.iter().filter_map(|n| {
        let bus = n.name.strip_prefix("GPU ")?;
        (n.value.is_none() && bus.contains(':')).then_some((n, bus.trim()))
    })
}

pub(crate) const LAYOUT: Layout = Layout {
    uuid: &[&["GPU UUID"]],
    serial: &[&["Serial Number"]],
    pdi: &[&["GPU PDI"]],
    name: &[&["Product Name"]],
    brand: &[&["Product Brand"]],
    architecture: &[&["Product Architecture"]],
    pci_device_id: &[&["PCI", "Device Id"]],
    pci_subsystem_id: &[&["PCI", "Sub System Id"]],
    pci_bus_id: &[&["PCI", "Bus Id"]],
    board_part_number: &[&["Board Part Number"]],
    gpu_part_number: &[&["GPU Part Number"]],
    vbios: &[&["VBIOS Version"]],
    inforom_image: &[&["Inforom Version", "Image Version"]],
    inforom_oem: &[&["Inforom Version", "OEM Object"]],
    inforom_ecc: &[&["Inforom Version", "ECC Object"]],
    inforom_power: &[&["Inforom Version", "Power Management Object"]],
    memory_total: &[&["FB Memory Usage", "Total"]],
    max_sm_clock: &[&["Max Clocks", "SM"]],
    max_memory_clock: &[&["Max Clocks", "Memory"]],
    power_max: &[&["GPU Power Readings", "Max Power Limit"], &["Power Readings", "Max Power Limit"]],
    power_min: &[&["GPU Power Readings", "Min Power Limit"], &["Power Readings", "Min Power Limit"]],
    pcie_gen_max: &[&["PCI", "GPU Link Info", "PCIe Generation", "Max"]],
    pcie_width_max: &[&["PCI", "GPU Link Info", "Link Width", "Max"]],
    module_id: &[&["Platform Info", "Module Id"], &["Module ID"], &["Module Id"]],
    chassis_serial: &[&["Platform Info", "Chassis Serial Number"]],
    slot_number: &[&["Platform Info", "Slot Number"]],
    mig_current: &[&["MIG Mode", "Current"]],
    temperature: &[&["Temperature", "GPU Current Temp"]],
    utilization: &[&["Utilization", "Gpu"], &["Utilization", "GPU"]],
    power_draw: &[
        &["GPU Power Readings", "Instantaneous Power Draw"],
        &["GPU Power Readings", "Power Draw"],
        &["Power Readings", "Power Draw"],
    ],
    sm_clock: &[&["Clocks", "SM"]],
    memory_used: &[&["FB Memory Usage", "Used"]],
    ecc_current: &[&["Ecc Mode", "Current"], &["ECC Mode", "Current"]],
    ecc_aggregate_uncorrectable: &[
        &["ECC Errors", "Aggregate", "DRAM Uncorrectable"],
        &["ECC Errors", "Aggregate", "Total"],
    ],
    remapped_rows: &[&["Remapped Rows", "Uncorrectable Error"]],
};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nesting_follows_indentation_and_values_may_hold_colons() {
        let top = parse("Driver Version : 1\nGPU 00000000:18:00.0\n    PCI\n        Bus Id : 00000000:18:00.0\n    Processes : None\n", "t").unwrap();
        let (gpu, bus) = gpu_sections(&top).next().unwrap();
        assert_eq!(bus, "00000000:18:00.0");
        assert_eq!(gpu.path(&["PCI", "Bus Id"]).unwrap().value.as_deref(), Some("00000000:18:00.0"));
        assert_eq!(gpu.path(&["Processes"]).unwrap().value.as_deref(), Some("None"));
    }
}
