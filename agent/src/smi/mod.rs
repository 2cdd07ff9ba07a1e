//! The import probe: recorded `nvidia-smi` output instead of a live NVML session.
//!
//! Understands `nvidia-smi -q -x` (XML), `nvidia-smi -q` (text) — several GPUs per dump, every
//! driver generation's layout, `N/A` / `[N/A]` / `Not Supported` values, MIG sections — and
//! `nvidia-smi nvlink -s` (per-link status) given as a separate file. Facts from an import are
//! marked as such (`nvidia-smi-xml` / `nvidia-smi-text`): evidence, not a live attestation.

mod nvlink;
mod text;
mod tree;
mod xml;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chipledger_domain::fingerprint::{GpuFacts, GpuUuid, NvLink};
use chipledger_domain::records::{DriverFacts, ProbeSource};

use crate::probe::{GpuProbe, ProbeReport};
use crate::Error;

/// The largest dump the import probe reads (a 64-GPU `-q -x` dump is well under 2 MiB).
pub const MAX_DUMP_BYTES: u64 = 16 * 1024 * 1024;

/// The most GPUs one host's dumps may describe (the largest single systems hold tens; a dump
/// with more is not one host's).
pub const MAX_GPUS: usize = 1024;

/// A probe over recorded nvidia-smi output files, re-read on every [`GpuProbe::probe`] call
/// (so a daemon over files sees the files change).
#[derive(Debug, Clone)]
pub struct FileProbe {
    paths: Vec<PathBuf>,
}

impl FileProbe {
    pub fn new(paths: Vec<PathBuf>) -> FileProbe {
        FileProbe { paths }
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }
}

impl GpuProbe for FileProbe {
    fn probe(&mut self) -> Result<ProbeReport, Error> {
        let mut files = Vec::with_capacity(self.paths.len());
        for path in &self.paths {
            files.push((path.display().to_string(), read_dump(path)?));
        }
        let borrowed: Vec<(&str, &str)> = files.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
        parse_dumps(&borrowed)
    }
}

fn read_dump(path: &Path) -> Result<String, Error> {
    let meta = std::fs::metadata(path).map_err(Error::io(path))?;
    if meta.len() > MAX_DUMP_BYTES {
        return Err(Error::UnknownDump {
            path: path.display().to_string(),
            reason: format!("{} bytes, over the {MAX_DUMP_BYTES}-byte limit for an nvidia-smi dump", meta.len()),
        });
    }
    let bytes = std::fs::read(path).map_err(Error::io(path))?;
    String::from_utf8(bytes)
        .map_err(|_| Error::UnknownDump { path: path.display().to_string(), reason: "not UTF-8 text".into() })
}

/// What kind of nvidia-smi output a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Xml,
    Text,
    NvlinkStatus,
}

fn kind_of(name: &str, text: &str) -> Result<Kind, Error> {
    let head = text.trim_start();
    if head.starts_with("<?xml") || head.starts_with("<!DOCTYPE nvidia_smi_log") || head.starts_with("<nvidia_smi_log")
    {
        return Ok(Kind::Xml);
    }
    if text.contains("NVSMI LOG") || text.lines().any(|l| l.starts_with("Attached GPUs")) {
        return Ok(Kind::Text);
    }
    if nvlink::looks_like(text) {
        return Ok(Kind::NvlinkStatus);
    }
    let reason = if head.starts_with("name,") || head.starts_with("index,") || head.starts_with("timestamp,") {
        "this is `--query-gpu … --format=csv` output, which lacks identity fields; record `nvidia-smi -q -x` instead"
    } else {
        "not nvidia-smi output the import understands (`nvidia-smi -q -x`, `nvidia-smi -q` or `nvidia-smi nvlink -s`)"
    };
    Err(Error::UnknownDump { path: name.to_string(), reason: reason.into() })
}

/// Parses a set of named dumps (file name, contents) into one report. `nvlink -s` files attach
/// their links to the GPU with the same UUID (or, when the UUIDs are masked, the same index).
pub fn parse_dumps(files: &[(&str, &str)]) -> Result<ProbeReport, Error> {
    let mut source: Option<ProbeSource> = None;
    let mut driver = DriverFacts::default();
    let mut gpus: Vec<GpuFacts> = Vec::new();
    let mut statuses = Vec::new();
    for (name, text) in files {
        let kind = kind_of(name, text)?;
        let this_source = match kind {
            Kind::NvlinkStatus => {
                statuses.push((name, nvlink::parse(text, name)?));
                continue;
            }
            Kind::Xml => ProbeSource::NvidiaSmiXml,
            Kind::Text => ProbeSource::NvidiaSmiText,
        };
        if source.is_some_and(|s| s != this_source) {
            return Err(Error::UnknownDump {
                path: name.to_string(),
                reason: "mixes XML and text dumps in one attestation; attest each kind on its own".into(),
            });
        }
        source = Some(this_source);
        let before = gpus.len();
        let (drv, found) = match kind {
            Kind::Xml => {
                let root = xml::parse(text, name)?;
                let drv = DriverFacts {
                    driver_version: value(&root, "driver_version"),
                    nvml_version: None,
                    cuda_driver_version: value(&root, "cuda_version"),
                };
                let mut found = Vec::new();
                for gpu in root.children.iter().filter(|n| n.name == "gpu") {
                    let bus = gpu.child("@id").and_then(|n| n.value.clone());
                    found.push(tree::extract(gpu, &xml::LAYOUT, bus.as_deref(), name)?);
                }
                (drv, found)
            }
            _ => {
                let top = text::parse(text, name)?;
                let find =
                    |key: &str| top.iter().find(|n| n.name.eq_ignore_ascii_case(key)).and_then(|n| n.value.clone());
                let drv = DriverFacts {
                    driver_version: find("Driver Version"),
                    nvml_version: find("NVML Version"),
                    cuda_driver_version: find("CUDA Version"),
                };
                let mut found = Vec::new();
                for (gpu, bus) in text::gpu_sections(&top) {
                    found.push(tree::extract(gpu, &text::LAYOUT, Some(bus), name)?);
                }
                (drv, found)
            }
        };
        if found.is_empty() {
            return Err(Error::Dump {
                path: name.to_string(),
                line: 1,
                message: "the dump holds no GPU section".into(),
            });
        }
        if driver == DriverFacts::default() {
            driver = drv;
        }
        gpus.extend(found);
        if gpus.len() > MAX_GPUS {
            return Err(Error::UnknownDump {
                path: name.to_string(),
                reason: format!("the dumps describe {} GPUs, more than the {MAX_GPUS} one host can hold", gpus.len()),
            });
        }
        tracing::debug!(file = %name, gpus = gpus.len() - before, "parsed nvidia-smi dump");
    }
    let source = source.ok_or_else(|| Error::UnknownDump {
        path: files.first().map_or(String::new(), |f| f.0.to_string()),
        reason: "only NVLink status given; add the `nvidia-smi -q -x` (or `-q`) dump of the same host".into(),
    })?;
    for gpu in &mut gpus {
        gpu.absent
            .entry("nvlinks".to_string())
            .or_insert_with(|| "nvidia-smi -q does not list NVLinks; add `nvidia-smi nvlink -s` output".into());
    }
    // Which GPUs carry each UUID, in order: one pass, so matching statuses is linear.
    let mut by_uuid: HashMap<&GpuUuid, Vec<usize>> = HashMap::new();
    for (i, g) in gpus.iter().enumerate() {
        if let Some(u) = &g.uuid {
            by_uuid.entry(u).or_default().push(i);
        }
    }
    let mut links: Vec<(usize, Vec<NvLink>)> = Vec::new();
    for (name, list) in statuses {
        if list.len() > MAX_GPUS {
            return Err(Error::UnknownDump {
                path: name.to_string(),
                reason: format!("NVLink status for {} GPUs, more than the {MAX_GPUS} one host can hold", list.len()),
            });
        }
        for status in list {
            let by_index = Some(status.gpu_index as usize).filter(|i| *i < gpus.len());
            let i = match &status.uuid {
                // A UUID that names no GPU means the files are from different hosts; several
                // matches happen when a capture tool masked the UUIDs, and then order decides.
                Some(u) => match by_uuid.get(u).map(Vec::as_slice).unwrap_or_default() {
                    [one] => Some(*one),
                    [] => None,
                    same => by_index.filter(|i| same.binary_search(i).is_ok()),
                },
                None => by_index,
            };
            let Some(i) = i else {
                return Err(Error::UnknownDump {
                    path: name.to_string(),
                    reason: format!("NVLink status for GPU {} matches no GPU in the dumps", status.gpu_index),
                });
            };
            links.push((i, status.links));
        }
    }
    for (i, l) in links {
        gpus[i].nvlinks = Some(l);
        gpus[i].absent.remove("nvlinks");
    }
    Ok(ProbeReport { source, driver, gpus, vendor_evidence: Vec::new() })
}

fn value(node: &tree::Node, key: &str) -> Option<String> {
    node.child(key).and_then(|n| n.value.clone()).map(|v| v.trim().to_string()).filter(|v| !v.is_empty() && v != "N/A")
}
