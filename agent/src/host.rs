//! Host facts: who this machine is (sysinfo and the files systemd keeps).

use chipledger_domain::records::HostFacts;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

/// Reads this host's facts. `hostname` overrides the system's name (a config setting, e.g.
/// for hosts whose name is not unique in the fleet).
pub fn host_facts(hostname: Option<&str>) -> HostFacts {
    let system = System::new_with_specifics(
        RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing()).with_memory(MemoryRefreshKind::nothing().with_ram()),
    );
    HostFacts {
        hostname: hostname.map(str::to_string).or_else(System::host_name).unwrap_or_else(|| "unknown-host".to_string()),
        machine_id: read_id("/etc/machine-id"),
        boot_id: read_id("/proc/sys/kernel/random/boot_id"),
        os: System::long_os_version(),
        kernel: System::kernel_version(),
        cpu_model: system.cpus().first().map(|c| c.brand().trim().to_string()).filter(|s| !s.is_empty()),
        memory_bytes: Some(system.total_memory()).filter(|m| *m > 0),
    }
}

fn read_id(path: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then(|| s.to_string())
}
