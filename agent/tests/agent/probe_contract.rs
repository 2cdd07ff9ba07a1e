//! What every probe must give, live or imported: one body, run on the recorded dumps here and
//! against a real GPU with `cargo test -p chipledger-agent -- --ignored`.

use chipledger_agent::{GpuProbe, NvmlProbe};
use chipledger_domain::catalog::Catalog;
use chipledger_domain::identify::identify;

use super::*;

/// Probes twice and checks what any healthy host's report must hold.
#[track_caller]
fn check_probe(probe: &mut dyn GpuProbe) {
    let first = probe.probe().unwrap();
    assert!(!first.gpus.is_empty(), "no GPU found");
    let catalog = Catalog::embedded().unwrap();
    for g in &first.gpus {
        assert!(g.uuid.is_some(), "every GPU has a UUID: {g:?}");
        assert!(g.pci_device_id.is_some(), "every GPU has a PCI device id");
        assert!(g.name.is_some() && g.vbios_version.is_some(), "name and VBIOS");
        assert!(g.memory_total_bytes.is_some_and(|m| m > 1 << 30), "memory");
        let id = identify(catalog, g);
        assert!(id.sku.is_some() || id.needs_review.is_some(), "identified or sent to review: {id:?}");
        let fp = g.fingerprint();
        assert_eq!(fp.value("uuid"), g.uuid.as_ref().map(|u| u.as_str()));
        for key in g.absent.keys() {
            assert!(!key.is_empty());
        }
    }
    assert!(first.driver.driver_version.is_some(), "driver version");
    let second = probe.probe().unwrap();
    assert_eq!(first.identity_set(), second.identity_set(), "an unchanged host gives the same fingerprints");
}

#[test]
fn the_import_probe_meets_the_probe_contract() {
    for files in [vec![H800_TXT], vec![A100_XML], vec![H100_TXT, H100_NVLINK]] {
        check_probe(&mut FileProbe::new(files.iter().map(|f| data(f)).collect()));
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn the_nvml_probe_meets_the_probe_contract() {
    let mut probe = NvmlProbe::new(None).unwrap();
    check_probe(&mut probe);
    let report = probe.probe().unwrap();
    for g in &report.gpus {
        assert!(g.serial.is_some() || g.absent.contains_key("serial"));
        assert!(g.compute_capability.is_some(), "NVML gives the compute capability");
    }
}

#[test]
fn without_a_driver_the_nvml_probe_says_so_and_points_to_imports() {
    if std::path::Path::new("/proc/driver/nvidia").exists() {
        return; // a GPU host: the ignored test above covers it
    }
    let err = NvmlProbe::new(None).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("NVIDIA driver") && msg.contains("--from-file"), "{msg}");
    let pinned = NvmlProbe::new(Some(std::path::Path::new("/nonexistent/libnvidia-ml.so.1"))).unwrap_err();
    assert!(pinned.to_string().contains("/nonexistent/libnvidia-ml.so.1"), "{pinned}");
}
