//! What every probe must give, live or imported: one body, run on the recorded dumps here and
//! against a real GPU with `cargo test -p chipledger-agent -- --ignored`.

use std::path::Path;

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

#[test]
fn the_packaged_example_config_loads_and_the_unit_runs_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
    let no_env = |_: &str| None;
    let config = chipledger_agent::config::AgentConfig::load(Some(&root.join("agent.toml")), &no_env).unwrap();
    assert_eq!(config.state_dir.as_deref(), Some(Path::new("/var/lib/chipledger-agent")));
    assert_eq!(config.schedule.interval, std::time::Duration::from_secs(3600));
    let unit = std::fs::read_to_string(root.join("chipledger-agent.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/chipledger agent run --config /etc/chipledger/agent.toml"));
    assert!(unit.contains("User=chipledger-agent") && unit.contains("DevicePolicy=closed"));
    assert!(unit.contains("StateDirectory=chipledger-agent") && unit.contains("ProtectSystem=strict"));
}

#[test]
fn environment_overrides_the_file_and_bad_values_name_their_key() {
    use chipledger_agent::config::AgentConfig;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, "interval = \"2h\"\npoll = \"10s\"\n").unwrap();
    let env = |k: &str| (k == "CHIPLEDGER_AGENT_INTERVAL").then(|| "15m".to_string());
    let c = AgentConfig::load(Some(&file), &env).unwrap();
    assert_eq!((c.schedule.interval.as_secs(), c.schedule.poll.as_secs()), (900, 10));
    let no_env = |_: &str| None;
    for (text, key) in [
        ("jitter = 0.9\n", "jitter"),
        ("poll = \"5 fortnights\"\n", "poll"),
        ("interval = \"0s\"\n", "interval"),
        ("colour = \"blue\"\n", "colour"),
        ("jitter = \"lots\"\n", "jitter"),
    ] {
        std::fs::write(&file, text).unwrap();
        let err = AgentConfig::load(Some(&file), &no_env).unwrap_err();
        assert!(matches!(&err, chipledger_agent::Error::Config { key: k, .. } if k == key), "{text}: {err}");
    }
    let missing = AgentConfig::load(Some(&dir.path().join("nope.toml")), &no_env).unwrap_err();
    assert!(missing.to_string().contains("nope.toml"), "{missing}");
}
