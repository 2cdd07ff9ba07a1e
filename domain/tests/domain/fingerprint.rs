use chipledger_domain::fingerprint::{GpuFacts, GpuUuid, NvLink, Observations};

/// GPU 0 of the HGX H800 in `shared/fixtures/nvidia-smi/h800-sxm5-80gb-liguodongiot-llm-action.txt`,
/// with the 8 active NVLinks the same source shows.
pub fn h800_facts() -> GpuFacts {
    GpuFacts {
        uuid: Some(GpuUuid::parse("GPU-34bf77d1-c686-6821-79a8-32d326c5039c").unwrap()),
        serial: Some("1651323018291".into()),
        name: Some("NVIDIA H800".into()),
        brand: Some("NVIDIA".into()),
        pci_device_id: Some(0x2324),
        pci_subsystem_id: Some(0x17a6_10de),
        pci_bus_id: Some("00000000:18:00.0".into()),
        board_part_number: Some("692-2G520-0205-000".into()),
        gpu_part_number: Some("2324-865-A1".into()),
        vbios_version: Some("96.00.51.00.0E".into()),
        inforom_image_version: Some("G520.0205.00.02".into()),
        inforom_oem_version: Some("2.1".into()),
        inforom_ecc_version: Some("7.16".into()),
        architecture: Some("Hopper".into()),
        compute_capability: Some("9.0".into()),
        memory_total_bytes: Some(81559 * 1024 * 1024),
        power_limit_max_mw: Some(700_000),
        module_id: Some(5),
        nvlinks: Some(
            (0..18)
                .map(|i| NvLink { index: i, active: i < 8, version: Some(6), speed_gbs: None, remote_bus_id: None })
                .collect(),
        ),
        observations: Observations { temperature_c: Some(31.0), utilization_percent: Some(0.0), ..Default::default() },
        ..Default::default()
    }
}

const H800_CANONICAL: &str = "chipledger.fingerprint.v1
uuid=GPU-34bf77d1-c686-6821-79a8-32d326c5039c
serial=1651323018291
pdi
pci.device=0x2324
pci.subsystem=0x17a610de
board_part_number=692-2G520-0205-000
gpu_part_number=2324-865-A1
vbios=96.00.51.00.0E
inforom.image=G520.0205.00.02
inforom.oem=2.1
inforom.ecc=7.16
architecture=Hopper
compute_capability=9.0
memory.total_bytes=85520809984
memory.bus_width_bits
cuda_cores
sm_count
clock.max_sm_mhz
clock.max_memory_mhz
power.max_limit_mw=700000
module_id=5
slot
chassis_serial
nvlink.active=8
nvlink.0=active,6
nvlink.1=active,6
nvlink.2=active,6
nvlink.3=active,6
nvlink.4=active,6
nvlink.5=active,6
nvlink.6=active,6
nvlink.7=active,6
nvlink.8=inactive,6
nvlink.9=inactive,6
nvlink.10=inactive,6
nvlink.11=inactive,6
nvlink.12=inactive,6
nvlink.13=inactive,6
nvlink.14=inactive,6
nvlink.15=inactive,6
nvlink.16=inactive,6
nvlink.17=inactive,6
";

#[test]
fn the_canonical_encoding_and_digest_are_frozen() {
    let fp = h800_facts().fingerprint();
    assert_eq!(String::from_utf8(fp.canonical_bytes()).unwrap(), H800_CANONICAL);
    assert_eq!(fp.digest().to_hex(), "8a3facbd4c032667aac94ef7b5400cce333c15a62ae0eba35ba3d055f48322ec");
}

#[test]
fn volatile_observations_do_not_change_the_digest() {
    let a = h800_facts();
    let mut b = a.clone();
    b.observations.temperature_c = Some(77.0);
    b.observations.utilization_percent = Some(99.0);
    b.observations.memory_used_bytes = Some(1 << 30);
    b.pci_bus_id = Some("00000000:AD:00.0".into());
    b.mig_mode_enabled = Some(true);
    assert_eq!(a.fingerprint().digest(), b.fingerprint().digest());
}

#[test]
fn a_vbios_reflash_or_another_board_changes_the_digest() {
    let a = h800_facts();
    let mut reflashed = a.clone();
    reflashed.vbios_version = Some("96.00.74.00.0F".into());
    assert_ne!(a.fingerprint().digest(), reflashed.fingerprint().digest());
    let mut swapped = a.clone();
    swapped.serial = Some("1651323018292".into());
    assert_ne!(a.fingerprint().digest(), swapped.fingerprint().digest());
    let mut absent = a.clone();
    absent.serial = None;
    assert_ne!(a.fingerprint().digest(), absent.fingerprint().digest(), "absent is not the same as any value");
    let mut empty = a.clone();
    empty.serial = Some(String::new());
    assert_ne!(absent.fingerprint().digest(), empty.fingerprint().digest(), "absent is not the empty string");
}

#[test]
fn values_cannot_forge_extra_lines() {
    let mut a = h800_facts();
    a.serial = Some("1\nvbios=evil".into());
    let text = String::from_utf8(a.fingerprint().canonical_bytes()).unwrap();
    assert!(text.contains("serial=1%0Avbios=evil\n"));
    assert_eq!(text.matches("\nvbios=").count(), 1);
}

#[test]
fn gpu_uuids_are_checked_and_normalised() {
    assert_eq!(
        GpuUuid::parse("GPU-34BF77D1-C686-6821-79A8-32D326C5039C").unwrap().as_str(),
        "GPU-34bf77d1-c686-6821-79a8-32d326c5039c"
    );
    for bad in [
        "",
        "34bf77d1-c686-6821-79a8-32d326c5039c",
        "GPU-34bf77d1-c686-6821-79a8",
        "GPU-zzbf77d1-c686-6821-79a8-32d326c5039c",
    ] {
        assert!(GpuUuid::parse(bad).is_err(), "{bad}");
    }
}
