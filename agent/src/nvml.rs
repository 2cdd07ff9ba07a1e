//! The live probe: NVML through nvml-wrapper, with `libnvidia-ml.so.1` loaded at run time, so
//! nothing here needs a GPU to build. The only module of chipledger that touches NVML.
//!
//! Every identity and capability fact NVML offers is read; `NotSupported`, `FailedToLoadSymbol`
//! (an older driver without the call) and other per-call failures make that fact absent, with
//! the reason, and never fail the probe. With confidential computing on, each Hopper-or-later
//! GPU's attestation report (over a fresh nonce) and certificate chains ride along as vendor
//! evidence.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use chipledger_domain::fingerprint::{GpuFacts, GpuUuid, NvLink, Observations};
use chipledger_domain::merkle::Hash;
use chipledger_domain::records::{DriverFacts, ProbeSource, VendorEvidence};
use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, InfoRom, MemoryError, TemperatureSensor};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};

use crate::probe::{EvidenceRequest, GpuProbe, ProbeReport};
use crate::Error;

/// NVML allows at most this many links per GPU (`NVML_NVLINK_MAX_LINKS`).
const MAX_LINKS: u32 = 18;

/// A live NVML session.
pub struct NvmlProbe {
    nvml: Nvml,
    library: Option<PathBuf>,
}

impl std::fmt::Debug for NvmlProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlProbe").field("library", &self.library).finish_non_exhaustive()
    }
}

impl NvmlProbe {
    /// Starts NVML from the default search path, or from `library` when given (pin the absolute
    /// path on production hosts: whatever library is loaded is trusted).
    pub fn new(library: Option<&Path>) -> Result<NvmlProbe, Error> {
        let result = match library {
            Some(path) => Nvml::builder().lib_path(path.as_os_str()).init(),
            None => Nvml::init(),
        };
        let nvml = result.map_err(|e| Error::NvmlUnavailable { reason: describe(&e) })?;
        Ok(NvmlProbe { nvml, library: library.map(Path::to_path_buf) })
    }
}

impl GpuProbe for NvmlProbe {
    fn probe(&mut self) -> Result<ProbeReport, Error> {
        let nvml = &self.nvml;
        let cuda = nvml.sys_cuda_driver_version().ok().map(|v| {
            format!("{}.{}", nvml_wrapper::cuda_driver_version_major(v), nvml_wrapper::cuda_driver_version_minor(v))
        });
        let driver = DriverFacts {
            driver_version: nvml.sys_driver_version().ok(),
            nvml_version: nvml.sys_nvml_version().ok(),
            cuda_driver_version: cuda,
        };
        let count =
            nvml.device_count().map_err(|e| Error::Nvml { call: "nvmlDeviceGetCount", message: describe(&e) })?;
        let mut gpus = Vec::with_capacity(count as usize);
        for index in 0..count {
            let device = nvml
                .device_by_index(index)
                .map_err(|e| Error::Nvml { call: "nvmlDeviceGetHandleByIndex", message: describe(&e) })?;
            gpus.push(read_device(nvml, &device));
        }
        Ok(ProbeReport { source: ProbeSource::Nvml, driver, gpus, vendor_evidence: Vec::new() })
    }

    fn vendor_evidence(&mut self, requests: &[EvidenceRequest]) -> Vec<VendorEvidence> {
        let mut out = Vec::new();
        for r in requests {
            let uuid = &r.gpu;
            match self.nvml.device_by_uuid(uuid.as_str()) {
                Ok(device) => out.extend(confidential_computing_evidence(&device, r)),
                Err(e) => tracing::warn!(gpu = %uuid, error = %describe(&e), "GPU gone before its evidence was read"),
            }
        }
        out
    }
}

/// Reads one device. Each call that fails leaves its fact absent with the reason.
fn read_device(nvml: &Nvml, d: &Device<'_>) -> GpuFacts {
    let mut f = GpuFacts::default();
    let mut a = Absent(&mut f.absent);
    let uuid = a.take("uuid", d.uuid());
    let serial = a.take("serial", d.serial());
    let name = a.take("name", d.name());
    let brand = a.take("brand", d.brand()).map(|b| format!("{b:?}"));
    let pci = a.take("pci_info", d.pci_info());
    let board_part_number = a.take("board_part_number", d.board_part_number());
    let vbios = a.take("vbios_version", d.vbios_version());
    let inforom_image = a.take("inforom_image_version", d.info_rom_image_version());
    let inforom_oem = a.take("inforom_oem_version", d.info_rom_version(InfoRom::OEM));
    let inforom_ecc = a.take("inforom_ecc_version", d.info_rom_version(InfoRom::ECC));
    let inforom_power = a.take("inforom_power_version", d.info_rom_version(InfoRom::Power));
    let architecture = a.take("architecture", d.architecture()).map(|x| x.to_string());
    let cc = a.take("compute_capability", d.cuda_compute_capability()).map(|c| format!("{}.{}", c.major, c.minor));
    let memory = a.take("memory_total_bytes", d.memory_info());
    let bus_width = a.take("memory_bus_width_bits", d.memory_bus_width());
    let cores = a.take("cuda_cores", d.num_cores());
    let sm_clock = a.take("max_sm_clock_mhz", d.max_clock_info(Clock::SM));
    let mem_clock = a.take("max_memory_clock_mhz", d.max_clock_info(Clock::Memory));
    let power = a.take("power_limit_max_mw", d.power_management_limit_constraints());
    let pcie_gen = a.take("max_pcie_link_gen", d.max_pcie_link_gen());
    let pcie_width = a.take("max_pcie_link_width", d.max_pcie_link_width());
    let mig = a.take("mig_mode_enabled", d.mig_mode()).map(|m| m.current == 1);
    let pdi = a.take("pdi", raw::pdi(nvml, d)).map(|v| format!("0x{v:016x}"));
    let module_id = a.take("module_id", raw::module_id(nvml, d));
    let platform = a.take("platform_info", raw::platform_info(nvml, d));
    let nvlinks = a.take("nvlinks", nvlinks(d));
    a.0.insert("gpu_part_number".into(), "NVML does not expose it (nvidia-smi and CC reports do)".into());
    a.0.insert("sm_count".into(), "NVML gives it only for MIG devices".into());

    f.uuid = uuid.and_then(|u| match GpuUuid::parse(&u) {
        Ok(u) => Some(u),
        Err(e) => {
            f.absent.insert("uuid".into(), e.to_string());
            None
        }
    });
    f.serial = serial;
    f.name = name;
    f.brand = brand;
    if let Some(pci) = pci {
        f.pci_device_id = Some((pci.pci_device_id >> 16) as u16);
        f.pci_subsystem_id = pci.pci_sub_system_id;
        f.pci_bus_id = Some(pci.bus_id);
    }
    f.board_part_number = board_part_number;
    f.vbios_version = vbios;
    f.inforom_image_version = inforom_image;
    f.inforom_oem_version = inforom_oem;
    f.inforom_ecc_version = inforom_ecc;
    f.inforom_power_version = inforom_power;
    f.architecture = architecture;
    f.compute_capability = cc;
    f.memory_total_bytes = memory.map(|m| m.total);
    f.memory_bus_width_bits = bus_width;
    f.cuda_cores = cores;
    f.max_sm_clock_mhz = sm_clock;
    f.max_memory_clock_mhz = mem_clock;
    f.power_limit_max_mw = power.as_ref().map(|p| p.max_limit);
    f.power_limit_min_mw = power.map(|p| p.min_limit);
    f.max_pcie_link_gen = pcie_gen;
    f.max_pcie_link_width = pcie_width;
    f.mig_mode_enabled = mig;
    f.pdi = pdi;
    f.module_id = module_id.or(platform.as_ref().map(|p| p.module_id)).filter(|m| *m != 0);
    if let Some(p) = platform {
        f.chassis_serial = p.chassis_serial;
        f.slot_number = Some(p.slot_number).filter(|s| *s != 0);
    }
    f.nvlinks = nvlinks;
    f.observations = Observations {
        temperature_c: d.temperature(TemperatureSensor::Gpu).ok().map(f64::from),
        utilization_percent: d.utilization_rates().ok().map(|u| f64::from(u.gpu)),
        power_draw_watts: d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
        sm_clock_mhz: d.clock_info(Clock::SM).ok(),
        memory_used_bytes: d.memory_info().ok().map(|m| m.used),
        ecc_enabled: d.is_ecc_enabled().ok().map(|e| e.currently_enabled),
        ecc_aggregate_uncorrectable: d.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Aggregate).ok(),
        retired_or_remapped_rows: None,
    };
    f
}

/// Records why a call gave nothing.
struct Absent<'a>(&'a mut std::collections::BTreeMap<String, String>);

impl Absent<'_> {
    fn take<T>(&mut self, field: &str, r: Result<T, NvmlError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.insert(field.to_string(), describe(&e));
                None
            }
        }
    }
}

fn describe(e: &NvmlError) -> String {
    match e {
        NvmlError::NotSupported => "NotSupported".into(),
        NvmlError::FailedToLoadSymbol(sym) => format!("FailedToLoadSymbol({sym})"),
        other => other.to_string(),
    }
}

/// Every link NVML reports. A GPU without NVLink answers `NotSupported` for link 0 (no links);
/// a link index past the GPU's last link answers `InvalidArg`.
fn nvlinks(d: &Device<'_>) -> Result<Vec<NvLink>, NvmlError> {
    let mut links = Vec::new();
    for index in 0..MAX_LINKS {
        let link = d.link_wrapper_for(index);
        let active = match link.is_active() {
            Ok(a) => a,
            Err(NvmlError::NotSupported) if index == 0 => return Ok(links),
            Err(NvmlError::InvalidArg) | Err(NvmlError::NotSupported) => break,
            Err(e) => return Err(e),
        };
        links.push(NvLink {
            index,
            active,
            version: link.version().ok(),
            speed_gbs: None,
            remote_bus_id: link.remote_pci_info().ok().map(|p| p.bus_id),
        });
    }
    Ok(links)
}

/// The attestation report (over the request's nonce) and certificate chains, when confidential
/// computing is on. Unsupported GPUs (Ampere) and drivers give nothing, silently.
fn confidential_computing_evidence(d: &Device<'_>, request: &EvidenceRequest) -> Vec<VendorEvidence> {
    if !matches!(d.is_cc_enabled(), Ok(true)) {
        return Vec::new();
    }
    let (uuid, nonce) = (&request.gpu, request.nonce);
    let mut out = Vec::new();
    let mut push = |kind: &str, blob: &[u8], nonce: Option<&[u8; 32]>| {
        if blob.is_empty() {
            return;
        }
        out.push(VendorEvidence {
            gpu: uuid.clone(),
            kind: kind.to_string(),
            blob: base64::engine::general_purpose::STANDARD.encode(blob),
            digest: Hash::sha256(blob),
            nonce: nonce.map(hex::encode),
            nonce_checkpoint: nonce.and(request.checkpoint.clone()),
        });
    };
    match d.confidential_compute_gpu_attestation_report(nonce) {
        Ok(r) => {
            push("nvml-cc-attestation-report", &r.attestation_report, Some(&nonce));
            if r.is_cec_attestation_report_present {
                push("nvml-cc-cec-attestation-report", &r.cec_attestation_report, Some(&nonce));
            }
        }
        Err(e) => {
            tracing::warn!(gpu = %uuid, error = %describe(&e), "confidential computing is on but no attestation report")
        }
    }
    match d.confidential_compute_gpu_certificate() {
        Ok(c) => {
            push("nvml-cc-certificate-chain", &c.cert_chain, None);
            push("nvml-cc-attestation-certificate-chain", &c.attestation_cert_chain, None);
        }
        Err(e) => {
            tracing::warn!(gpu = %uuid, error = %describe(&e), "confidential computing is on but no certificate chain")
        }
    }
    out
}

/// NVML calls nvml-wrapper 0.13 does not wrap, made through its raw symbol table. The only
/// unsafe code in chipledger.
#[allow(unsafe_code)]
mod raw {
    use nvml_wrapper::error::{nvml_sym, nvml_try, NvmlError};
    use nvml_wrapper::{Device, Nvml};
    use nvml_wrapper_sys::bindings::{nvmlPdi_t, nvmlPlatformInfo_t};

    /// NVML's `NVML_STRUCT_VERSION(type, ver)`: the struct size with the version in the top byte.
    fn struct_version<T>(version: u32) -> u32 {
        std::mem::size_of::<T>() as u32 | (version << 24)
    }

    /// `nvmlDeviceGetPdi`: the 64-bit per-device identifier (drivers 570+).
    pub(super) fn pdi(nvml: &Nvml, d: &Device<'_>) -> Result<u64, NvmlError> {
        let sym = nvml_sym(nvml.lib().nvmlDeviceGetPdi.as_ref())?;
        let mut out = nvmlPdi_t { version: struct_version::<nvmlPdi_t>(1), value: 0 };
        // SAFETY: `sym` is nvmlDeviceGetPdi from the loaded library; the handle comes from a live
        // `Device` of the same `Nvml`; `out` is a valid, versioned nvmlPdi_v1_t that NVML fills.
        unsafe { nvml_try(sym(d.handle(), &mut out))? };
        Ok(out.value)
    }

    /// `nvmlDeviceGetModuleId`: the HGX module slot (1…8).
    pub(super) fn module_id(nvml: &Nvml, d: &Device<'_>) -> Result<u32, NvmlError> {
        let sym = nvml_sym(nvml.lib().nvmlDeviceGetModuleId.as_ref())?;
        let mut id: u32 = 0;
        // SAFETY: as above; `id` is a valid out-pointer to an unsigned int.
        unsafe { nvml_try(sym(d.handle(), &mut id))? };
        Ok(id)
    }

    #[derive(Debug)]
    pub(super) struct PlatformInfo {
        pub chassis_serial: Option<String>,
        pub slot_number: u32,
        pub module_id: u32,
    }

    /// `nvmlDeviceGetPlatformInfo` (v2): chassis serial, slot and module on rack systems.
    pub(super) fn platform_info(nvml: &Nvml, d: &Device<'_>) -> Result<PlatformInfo, NvmlError> {
        let sym = nvml_sym(nvml.lib().nvmlDeviceGetPlatformInfo.as_ref())?;
        let mut info = nvmlPlatformInfo_t {
            version: struct_version::<nvmlPlatformInfo_t>(2),
            ibGuid: [0; 16],
            chassisSerialNumber: [0; 16],
            slotNumber: 0,
            trayIndex: 0,
            hostId: 0,
            peerType: 0,
            moduleId: 0,
        };
        // SAFETY: as above; `info` is a valid, versioned nvmlPlatformInfo_v2_t.
        unsafe { nvml_try(sym(d.handle(), &mut info))? };
        let serial: Vec<u8> = info.chassisSerialNumber.iter().copied().take_while(|b| *b != 0).collect();
        let chassis_serial = Some(String::from_utf8_lossy(&serial).trim().to_string()).filter(|s| !s.is_empty());
        Ok(PlatformInfo {
            chassis_serial,
            slot_number: u32::from(info.slotNumber),
            module_id: u32::from(info.moduleId),
        })
    }
}
