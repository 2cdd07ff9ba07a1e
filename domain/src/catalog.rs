//! The GPU catalog: datasheet figures per SKU, with their sources, embedded in the binary.
//!
//! Three tables, all under `domain/data/`:
//! - `gpu-catalog.csv`, a verbatim copy of the project's reference catalog (one row per SKU;
//!   `UNCERTAIN[...]` / `UNKNOWN[...]` flags inside `notes`; `source` keys defined in
//!   `docs/export-rules.md` §5);
//! - `pci-names.csv`, per PCI device id: subsystem ids and the driver's product name, drawn from
//!   the catalog notes (NVIDIA open kernel modules table, pci.ids);
//! - `board-projects.csv`, board project + project SKU (from the board part number
//!   `692-2G520-0205-000` → `G520`, `0205`) → SKU, where a real dump shows it.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::Error;

const CATALOG_CSV: &str = include_str!("../data/gpu-catalog.csv");
const PCI_NAMES_CSV: &str = include_str!("../data/pci-names.csv");
const BOARD_PROJECTS_CSV: &str = include_str!("../data/board-projects.csv");

/// One SKU's datasheet figures. `None` = the catalog has no value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sku {
    pub sku: String,
    pub marketing_name: String,
    pub architecture: String,
    pub form_factor: String,
    pub pci_device_ids: Vec<u16>,
    pub memory_gib: Option<f64>,
    pub memory_bandwidth_gbs: Option<f64>,
    pub dense_fp16_tflops: Option<f64>,
    pub dense_int8_tops: Option<f64>,
    pub dense_fp8_tflops: Option<f64>,
    pub tpp: Option<f64>,
    pub die_area_mm2: Option<f64>,
    pub performance_density: Option<f64>,
    pub nvlink_bidirectional_gbs: Option<f64>,
    pub nvlink_links: Option<u32>,
    pub interconnect: String,
    pub launch_date: String,
    pub notes: String,
    pub sources: Vec<String>,
    /// Fields the catalog flags as weakly sourced or assumed.
    pub uncertain: Vec<String>,
    /// Fields the catalog leaves empty because no value was found.
    pub unknown: Vec<String>,
}

/// The driver's product name (and subsystem ids) for one PCI device id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PciName {
    pub pci_device_id: u16,
    /// `(subsystem vendor, subsystem device)` pairs, e.g. `(0x10de, 0x17a6)`.
    pub subsystems: Vec<(u16, u16)>,
    pub sku: String,
    pub driver_name: Option<String>,
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BoardProject {
    pub board_project: String,
    pub project_sku: String,
    pub sku: String,
    pub source: String,
}

/// Whether a SKU is "designed or marketed for use in datacenters" — a human judgement the
/// export rules turn on. The catalog gives a default; an operator may override it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Datacenter {
    Yes,
    No,
    /// Borderline (e.g. workstation cards): a person must decide.
    Unknown,
}

impl Sku {
    /// PCIe host-link bandwidth (bidirectional GB/s) from the `interconnect` text: Gen3 x16 = 32,
    /// Gen4 = 64, Gen5 = 128. Counts towards the 2022 rule's aggregate I/O.
    pub fn pcie_host_gbs(&self) -> Option<f64> {
        let t = &self.interconnect;
        if t.contains("Gen5") {
            Some(128.0)
        } else if t.contains("Gen4") {
            Some(64.0)
        } else if t.contains("Gen3") {
            Some(32.0)
        } else {
            None
        }
    }

    /// NVLink plus the PCIe host link, the 2022 rule's "aggregate bidirectional transfer rate".
    pub fn aggregate_io_gbs(&self) -> Option<f64> {
        Some(self.nvlink_bidirectional_gbs? + self.pcie_host_gbs()?)
    }

    /// The catalog's default answer to "designed or marketed for datacenters".
    pub fn datacenter_default(&self) -> Datacenter {
        let n = self.notes.to_ascii_lowercase();
        if n.contains("not designed/marketed for datacenter")
            || n.contains("consumer")
            || self.form_factor.contains("consumer")
        {
            Datacenter::No
        } else if n.contains("needs human/legal review") || n.contains("workstation") {
            Datacenter::Unknown
        } else {
            Datacenter::Yes
        }
    }

    pub fn is_uncertain(&self, field: &str) -> bool {
        self.uncertain.iter().any(|f| f == field || f == "all spec fields")
    }

    pub fn is_unknown(&self, field: &str) -> bool {
        self.unknown.iter().any(|f| f == field || f == "all spec fields")
    }

    /// The catalog's one-line status per rule, from `notes` (`status: ...`).
    pub fn status_note(&self) -> Option<&str> {
        self.notes.split_once("status:").map(|(_, s)| s.trim())
    }
}

/// The whole embedded catalog.
#[derive(Debug)]
pub struct Catalog {
    pub skus: Vec<Sku>,
    pub pci_names: Vec<PciName>,
    pub board_projects: Vec<BoardProject>,
}

impl Catalog {
    /// The catalog compiled into this binary, parsed once.
    pub fn embedded() -> Result<&'static Catalog, Error> {
        static CATALOG: OnceLock<Result<Catalog, Error>> = OnceLock::new();
        CATALOG.get_or_init(Catalog::parse_embedded).as_ref().map_err(Clone::clone)
    }

    fn parse_embedded() -> Result<Catalog, Error> {
        let skus = parse_skus(CATALOG_CSV)?;
        let pci_names = parse_pci_names(PCI_NAMES_CSV)?;
        let board_projects = parse_board_projects(BOARD_PROJECTS_CSV)?;
        for p in &pci_names {
            if !skus.iter().any(|s| s.sku == p.sku && s.pci_device_ids.contains(&p.pci_device_id)) {
                return Err(Error::Catalog {
                    table: "pci-names",
                    line: 0,
                    message: format!("0x{:04x} → {} is not in gpu-catalog.csv", p.pci_device_id, p.sku),
                });
            }
        }
        Ok(Catalog { skus, pci_names, board_projects })
    }

    /// The SKU by its catalog name, case-insensitively (`H800-SXM5-80GB`, `h800-sxm5-80gb`).
    pub fn sku(&self, name: &str) -> Result<&Sku, Error> {
        self.skus
            .iter()
            .find(|s| s.sku.eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| Error::UnknownSku { name: name.to_string() })
    }

    /// The SKU that carries this PCI device id, if any.
    pub fn by_pci_device(&self, device_id: u16) -> Option<&Sku> {
        self.skus.iter().find(|s| s.pci_device_ids.contains(&device_id))
    }

    /// Driver names known for a device id (and subsystem, when given and listed).
    pub fn pci_names(&self, device_id: u16) -> impl Iterator<Item = &PciName> {
        self.pci_names.iter().filter(move |p| p.pci_device_id == device_id)
    }

    pub fn board_project(&self, project: &str, project_sku: &str) -> Option<&BoardProject> {
        self.board_projects
            .iter()
            .find(|b| b.board_project.eq_ignore_ascii_case(project) && b.project_sku == project_sku)
    }
}

/// A PCI id given on the command line: `0x2324` or `0x2324:0x17a6` (subsystem device, vendor
/// 0x10de implied) or NVML's 32-bit forms `0x232410DE` / `0x17A610DE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciQuery {
    pub device_id: u16,
    pub subsystem_id: Option<u32>,
}

impl PciQuery {
    pub fn parse(s: &str) -> Result<PciQuery, Error> {
        let bad = |reason| Error::PciId { id: s.to_string(), reason };
        let (dev, sub) = match s.split_once(':') {
            Some((d, sub)) => (d, Some(sub)),
            None => (s, None),
        };
        let device_id = match parse_hex(dev).ok_or_else(|| bad("the device id is not hex"))? {
            v if v <= 0xffff => v as u16,
            v if v & 0xffff == 0x10de => (v >> 16) as u16,
            _ => return Err(bad("a 32-bit device id must end in the NVIDIA vendor id 10DE")),
        };
        let subsystem_id = match sub {
            None => None,
            Some(sub) => Some(match parse_hex(sub).ok_or_else(|| bad("the subsystem id is not hex"))? {
                v if v <= 0xffff => (v << 16) | 0x10de,
                v => v,
            }),
        };
        Ok(PciQuery { device_id, subsystem_id })
    }
}

fn parse_hex(s: &str) -> Option<u32> {
    let s = s.trim();
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

fn csv_reader(text: &str) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes())
}

fn row_error(table: &'static str, line: u64, message: impl Into<String>) -> Error {
    Error::Catalog { table, line, message: message.into() }
}

fn parse_skus(text: &str) -> Result<Vec<Sku>, Error> {
    let mut out = Vec::new();
    let mut rdr = csv_reader(text);
    for rec in rdr.records() {
        let rec = rec.map_err(|e| row_error("gpu-catalog", 0, e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        if rec.len() != 19 {
            return Err(row_error("gpu-catalog", line, format!("{} columns, expected 19", rec.len())));
        }
        let num = |i: usize| -> Result<Option<f64>, Error> {
            let v = rec[i].trim();
            if v.is_empty() {
                return Ok(None);
            }
            v.parse::<f64>()
                .map(Some)
                .map_err(|_| row_error("gpu-catalog", line, format!("column {i} is not a number: {v:?}")))
        };
        let pci_device_ids = rec[4]
            .split('|')
            .map(|id| {
                parse_hex(id)
                    .and_then(|v| u16::try_from(v).ok())
                    .ok_or_else(|| row_error("gpu-catalog", line, format!("bad PCI id {id:?}")))
            })
            .collect::<Result<Vec<u16>, Error>>()?;
        let notes = rec[17].to_string();
        out.push(Sku {
            sku: rec[0].to_string(),
            marketing_name: rec[1].to_string(),
            architecture: rec[2].to_string(),
            form_factor: rec[3].to_string(),
            pci_device_ids,
            memory_gib: num(5)?,
            memory_bandwidth_gbs: num(6)?,
            dense_fp16_tflops: num(7)?,
            dense_int8_tops: num(8)?,
            dense_fp8_tflops: num(9)?,
            tpp: num(10)?,
            die_area_mm2: num(11)?,
            performance_density: num(12)?,
            nvlink_bidirectional_gbs: num(13)?,
            nvlink_links: num(14)?.map(|v| v as u32),
            interconnect: rec[15].to_string(),
            launch_date: rec[16].to_string(),
            uncertain: flag_list(&notes, "UNCERTAIN["),
            unknown: flag_list(&notes, "UNKNOWN["),
            notes,
            sources: rec[18].split(';').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        });
    }
    Ok(out)
}

/// The field names inside `UNCERTAIN[a,b (comment),c]`, comments dropped.
fn flag_list(notes: &str, marker: &str) -> Vec<String> {
    let Some(start) = notes.find(marker) else { return vec![] };
    let rest = &notes[start + marker.len()..];
    // Brackets may nest one level inside comments: "(AD104 area from general knowledge)".
    let mut depth = 0usize;
    let mut end = rest.len();
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ']' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    rest[..end]
        .split(',')
        .map(|f| f.split('(').next().unwrap_or("").trim().to_string())
        .filter(|f| !f.is_empty())
        .collect()
}

fn parse_pci_names(text: &str) -> Result<Vec<PciName>, Error> {
    let mut out = Vec::new();
    for rec in csv_reader(text).records() {
        let rec = rec.map_err(|e| row_error("pci-names", 0, e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let pci_device_id = parse_hex(&rec[0])
            .and_then(|v| u16::try_from(v).ok())
            .ok_or_else(|| row_error("pci-names", line, "bad device id"))?;
        let mut subsystems = Vec::new();
        for pair in rec[1].split('|').filter(|s| !s.is_empty()) {
            let (v, d) =
                pair.split_once(':').ok_or_else(|| row_error("pci-names", line, "subsystem must be vvvv:dddd"))?;
            let v = parse_hex(v).and_then(|x| u16::try_from(x).ok());
            let d = parse_hex(d).and_then(|x| u16::try_from(x).ok());
            match (v, d) {
                (Some(v), Some(d)) => subsystems.push((v, d)),
                _ => return Err(row_error("pci-names", line, format!("bad subsystem {pair:?}"))),
            }
        }
        out.push(PciName {
            pci_device_id,
            subsystems,
            sku: rec[2].to_string(),
            driver_name: Some(rec[3].to_string()).filter(|s| !s.is_empty()),
            source: rec[4].to_string(),
        });
    }
    Ok(out)
}

fn parse_board_projects(text: &str) -> Result<Vec<BoardProject>, Error> {
    let mut out = Vec::new();
    for rec in csv_reader(text).records() {
        let rec = rec.map_err(|e| row_error("board-projects", 0, e.to_string()))?;
        out.push(BoardProject {
            board_project: rec[0].to_string(),
            project_sku: rec[1].to_string(),
            sku: rec[2].to_string(),
            source: rec[3].to_string(),
        });
    }
    Ok(out)
}
