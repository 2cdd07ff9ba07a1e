//! `nvidia-smi -q -x` (XML, DTD `nvsmi_device_vNN.dtd`): read into the shared [`Node`] tree.
//! Every DTD generation is read through the same element paths; missing elements are absent
//! facts, unknown ones are ignored.

use quick_xml::events::Event;
use quick_xml::Reader;

use super::tree::{Layout, Node, MAX_DEPTH};
use crate::Error;

/// Parses the document into its root element (`nvidia_smi_log`).
pub(crate) fn parse(text: &str, file: &str) -> Result<Node, Error> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut lines = LineCounter::new(text);
    let mut stack: Vec<Node> = vec![Node { name: "#document".into(), ..Node::default() }];
    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => {
                let line = lines.at(reader.error_position());
                return Err(Error::Dump { path: file.to_string(), line, message: format!("malformed XML: {e}") });
            }
        };
        // The end of the event is on the line a reader of the file would point at.
        let line = lines.at(reader.buffer_position());
        let bad = |message: String| Error::Dump { path: file.to_string(), line, message };
        match event {
            Event::Start(e) => {
                if stack.len() > MAX_DEPTH {
                    return Err(bad(format!("elements nest deeper than {MAX_DEPTH}: not nvidia-smi output")));
                }
                let mut node = Node { name: element_name(e.name().into_inner()), line, ..Node::default() };
                if let Some(id) = e.try_get_attribute("id").ok().flatten() {
                    let id = id.unescape_value().map_err(|err| bad(format!("attribute id: {err}")))?;
                    node.children.push(Node {
                        name: "@id".into(),
                        value: Some(id.into_owned()),
                        line: node.line,
                        children: vec![],
                    });
                }
                stack.push(node);
            }
            Event::Empty(e) => {
                let node = Node { name: element_name(e.name().into_inner()), line, ..Node::default() };
                if let Some(parent) = stack.last_mut() {
                    parent.children.push(node);
                }
            }
            Event::Text(t) => {
                let s = t.xml_content().map_err(|err| bad(format!("text: {err}")))?;
                append_text(&mut stack, &s);
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|err| bad(format!("CDATA: {err}")))?;
                append_text(&mut stack, &s);
            }
            Event::GeneralRef(r) => {
                let s = match r.resolve_char_ref().map_err(|err| bad(format!("character reference: {err}")))? {
                    Some(c) => c.to_string(),
                    None => match r.decode().map_err(|err| bad(format!("entity: {err}")))?.as_ref() {
                        "amp" => "&".into(),
                        "lt" => "<".into(),
                        "gt" => ">".into(),
                        "quot" => "\"".into(),
                        "apos" => "'".into(),
                        other => return Err(bad(format!("unknown entity &{other};"))),
                    },
                };
                append_text(&mut stack, &s);
            }
            Event::End(_) => {
                let node = stack.pop().ok_or_else(|| bad("closing tag without an opening one".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Err(bad("closing tag without an opening one".into())),
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::DocType(_) | Event::Comment(_) => {}
        }
    }
    if stack.len() != 1 {
        return Err(Error::Dump {
            path: file.to_string(),
            line: lines.at(text.len() as u64),
            message: format!("the document ends inside <{}>", stack.last().map_or("", |n| n.name.as_str())),
        });
    }
    let doc = stack.pop().unwrap_or_default();
    doc.children.into_iter().find(|n| n.name == "nvidia_smi_log").ok_or_else(|| Error::UnknownDump {
        path: file.to_string(),
        reason: "XML without an <nvidia_smi_log> root: not `nvidia-smi -q -x` output".into(),
    })
}

/// Byte offset → 1-based line, for offsets that mostly grow (one pass over the text overall).
struct LineCounter<'a> {
    text: &'a [u8],
    pos: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        LineCounter { text: text.as_bytes(), pos: 0, line: 1 }
    }

    fn at(&mut self, offset: u64) -> u64 {
        let offset = (offset as usize).min(self.text.len());
        if offset < self.pos {
            self.pos = 0;
            self.line = 1;
        }
        self.line += self.text[self.pos..offset].iter().filter(|b| **b == b'\n').count() as u64;
        self.pos = offset;
        self.line
    }
}

fn element_name(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

fn append_text(stack: &mut [Node], s: &str) {
    if let Some(node) = stack.last_mut() {
        node.value.get_or_insert_with(String::new).push_str(s);
    }
}

pub(crate) const LAYOUT: Layout = Layout {
    uuid: &[&["uuid"]],
    serial: &[&["serial"]],
    pdi: &[&["gpu_pdi"], &["pdi"]],
    name: &[&["product_name"]],
    brand: &[&["product_brand"]],
    architecture: &[&["product_architecture"]],
    pci_device_id: &[&["pci", "pci_device_id"]],
    pci_subsystem_id: &[&["pci", "pci_sub_system_id"]],
    pci_bus_id: &[&["pci", "pci_bus_id"]],
    board_part_number: &[&["board_part_number"]],
    gpu_part_number: &[&["gpu_part_number"]],
    vbios: &[&["vbios_version"]],
    inforom_image: &[&["inforom_version", "img_version"]],
    inforom_oem: &[&["inforom_version", "oem_object"]],
    inforom_ecc: &[&["inforom_version", "ecc_object"]],
    inforom_power: &[&["inforom_version", "pwr_object"]],
    memory_total: &[&["fb_memory_usage", "total"]],
    max_sm_clock: &[&["max_clocks", "sm_clock"]],
    max_memory_clock: &[&["max_clocks", "mem_clock"]],
    power_max: &[&["gpu_power_readings", "max_power_limit"], &["power_readings", "max_power_limit"]],
    power_min: &[&["gpu_power_readings", "min_power_limit"], &["power_readings", "min_power_limit"]],
    pcie_gen_max: &[&["pci", "pci_gpu_link_info", "pcie_gen", "max_link_gen"]],
    pcie_width_max: &[&["pci", "pci_gpu_link_info", "link_widths", "max_link_width"]],
    module_id: &[&["platform_info", "module_id"], &["gpu_module_id"]],
    chassis_serial: &[&["platform_info", "chassis_serial_number"]],
    slot_number: &[&["platform_info", "slot_number"]],
    mig_current: &[&["mig_mode", "current_mig"]],
    temperature: &[&["temperature", "gpu_temp"]],
    utilization: &[&["utilization", "gpu_util"]],
    power_draw: &[
        &["gpu_power_readings", "instant_power_draw"],
        &["gpu_power_readings", "power_draw"],
        &["power_readings", "power_draw"],
    ],
    sm_clock: &[&["clocks", "sm_clock"]],
    memory_used: &[&["fb_memory_usage", "used"]],
    ecc_current: &[&["ecc_mode", "current_ecc"]],
    ecc_aggregate_uncorrectable: &[
        &["ecc_errors", "aggregate", "dram_uncorrectable"],
        &["ecc_errors", "aggregate", "total"],
    ],
    remapped_rows: &[&["remapped_rows", "remapped_row_unc"]],
};
