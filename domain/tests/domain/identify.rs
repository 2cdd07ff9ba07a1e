use chipledger_domain::catalog::Catalog;
use chipledger_domain::fingerprint::{GpuFacts, GpuUuid, NvLink};
use chipledger_domain::identify::{history_anomalies, identify, Anomaly, HistoryRules, Severity, Sighting};
use time::macros::datetime;

use crate::fingerprint::h800_facts;

fn links(active: u32, total: u32) -> Option<Vec<NvLink>> {
    Some(
        (0..total)
            .map(|i| NvLink {
                index: i,
                active: i < active,
                version: Some(6),
                speed_gbs: Some(26.562),
                remote_bus_id: None,
            })
            .collect(),
    )
}

#[track_caller]
fn check(facts: &GpuFacts, sku: Option<&str>, kinds: &[&str]) -> Vec<Anomaly> {
    let id = identify(Catalog::embedded().unwrap(), facts);
    assert_eq!(id.sku.as_deref(), sku);
    let got: Vec<String> =
        id.anomalies.iter().map(|a| serde_json::to_value(a).unwrap()["kind"].as_str().unwrap().to_string()).collect();
    assert_eq!(got, kinds, "{:#?}", id.anomalies);
    id.anomalies
}

#[test]
fn a_consistent_h800_is_identified_without_anomalies() {
    check(&h800_facts(), Some("H800-SXM5-80GB"), &[]);
}

#[test]
fn an_h800_with_h100_nvlink_is_a_red_flag_with_evidence() {
    let mut f = h800_facts();
    f.nvlinks = links(18, 18);
    let a = check(&f, Some("H800-SXM5-80GB"), &["nvlink-excess"]);
    assert_eq!(a[0], Anomaly::NvlinkExcess { sku: "H800-SXM5-80GB".into(), expected_links: 8, active_links: 18 });
    assert_eq!(a[0].severity(), Severity::Danger);
    assert!(a[0].explain().contains("18 active NVLinks"));
}

#[test]
fn an_a800_with_twelve_links_is_flagged_and_a_vm_with_fewer_is_only_info() {
    let a800 = GpuFacts {
        pci_device_id: Some(0x20f3),
        name: Some("NVIDIA A800-SXM4-80GB".into()),
        nvlinks: links(12, 12),
        ..Default::default()
    };
    check(&a800, Some("A800-SXM4-80GB"), &["nvlink-excess"]);
    let mut vm = h800_facts();
    vm.nvlinks = links(0, 18);
    let a = check(&vm, Some("H800-SXM5-80GB"), &["nvlink-fewer"]);
    assert_eq!(a[0].severity(), Severity::Info);
}

#[test]
fn name_part_number_board_and_memory_disagreements_are_each_reported() {
    let mut f = h800_facts();
    f.name = Some("NVIDIA H100 80GB HBM3".into());
    f.gpu_part_number = Some("2330-885-A1".into());
    f.board_part_number = Some("692-2G520-0200-000".into());
    f.memory_total_bytes = Some(143771 * 1024 * 1024);
    f.pci_subsystem_id = Some(0x16c1_10de);
    check(
        &f,
        Some("H800-SXM5-80GB"),
        &[
            "unknown-subsystem",
            "name-mismatch",
            "gpu-part-number-mismatch",
            "board-part-number-mismatch",
            "inforom-board-mismatch",
            "memory-mismatch",
        ],
    );
}

#[test]
fn the_real_dumps_identify_cleanly() {
    let h100 = GpuFacts {
        pci_device_id: Some(0x2330),
        pci_subsystem_id: Some(0x16c1_10de),
        name: Some("NVIDIA H100 80GB HBM3".into()),
        board_part_number: Some("692-2G520-0200-000".into()),
        gpu_part_number: Some("2330-885-A1".into()),
        inforom_image_version: Some("G520.0200.00.05".into()),
        memory_total_bytes: Some(81559 << 20),
        nvlinks: links(18, 18),
        ..Default::default()
    };
    check(&h100, Some("H100-SXM5-80GB"), &[]);
    let a100 = GpuFacts {
        pci_device_id: Some(0x20b2),
        pci_subsystem_id: Some(0x147f_10de),
        name: Some("NVIDIA A100-SXM4-80GB".into()),
        board_part_number: Some("692-2G506-0212-002".into()),
        gpu_part_number: Some("20B2-895-A1".into()),
        inforom_image_version: Some("G506.0212.00.01".into()),
        memory_total_bytes: Some(81920 << 20),
        ..Default::default()
    };
    check(&a100, Some("A100-SXM4-80GB"), &[]);
}

#[test]
fn an_unknown_pci_id_needs_review_and_is_never_guessed() {
    let f = GpuFacts { pci_device_id: Some(0x2328), name: Some("NVIDIA H20B".into()), ..Default::default() };
    let id = identify(Catalog::embedded().unwrap(), &f);
    assert_eq!(id.sku, None);
    assert!(id.needs_review.unwrap().contains("0x2328"));
    check(&f, None, &["unknown-pci-id"]);
    let none = identify(Catalog::embedded().unwrap(), &GpuFacts::default());
    assert!(none.needs_review.is_some());
}

fn sighting(uuid: &str, serial: &str, host: &str, vbios: &str, at: time::OffsetDateTime) -> Sighting {
    let mut f = h800_facts();
    f.uuid = Some(GpuUuid::parse(uuid).unwrap());
    f.serial = Some(serial.into());
    f.vbios_version = Some(vbios.into());
    let fp = f.fingerprint();
    Sighting {
        uuid: GpuUuid::parse(uuid).unwrap(),
        serial: Some(serial.into()),
        host: host.into(),
        vbios_version: Some(vbios.into()),
        fingerprint_digest: fp.digest(),
        fingerprint: Some(fp),
        observed_at: at,
    }
}

const U1: &str = "GPU-34bf77d1-c686-6821-79a8-32d326c5039c";
const U2: &str = "GPU-00000000-1111-2222-3333-444444444444";

#[track_caller]
fn check_history(current: &Sighting, history: &[Sighting], kinds: &[&str]) -> Vec<Anomaly> {
    let a = history_anomalies(current, history, HistoryRules::default());
    let got: Vec<String> =
        a.iter().map(|x| serde_json::to_value(x).unwrap()["kind"].as_str().unwrap().to_string()).collect();
    assert_eq!(got, kinds, "{a:#?}");
    a
}

#[test]
fn history_shows_a_vbios_change() {
    let old = sighting(U1, "1651323018291", "h1", "96.00.51.00.0E", datetime!(2026-01-01 00:00 UTC));
    let now = sighting(U1, "1651323018291", "h1", "96.00.74.00.0F", datetime!(2026-02-01 00:00 UTC));
    let a = check_history(&now, std::slice::from_ref(&old), &["vbios-changed"]);
    assert!(a[0].explain().contains("96.00.51.00.0E"));
    check_history(&old, std::slice::from_ref(&old), &[]);
}

#[test]
fn history_shows_a_serial_under_two_uuids_and_a_changed_identity() {
    let a = sighting(U1, "1651323018291", "h1", "v", datetime!(2026-01-01 00:00 UTC));
    let b = sighting(U2, "1651323018291", "h2", "v", datetime!(2026-01-02 00:00 UTC));
    check_history(&b, std::slice::from_ref(&a), &["serial-under-two-uuids"]);
    let c = sighting(U1, "9999999999999", "h1", "v", datetime!(2026-01-03 00:00 UTC));
    let got = check_history(&c, std::slice::from_ref(&a), &["identity-changed"]);
    assert!(matches!(&got[0], Anomaly::IdentityChanged { field, .. } if field == "serial"));
    let masked = sighting(U2, "0000000000000", "h2", "v", datetime!(2026-01-02 00:00 UTC));
    let masked_old = sighting(U1, "0000000000000", "h1", "v", datetime!(2026-01-01 00:00 UTC));
    check_history(&masked, &[masked_old], &[]);
}

#[test]
fn history_tells_a_move_from_one_uuid_on_two_hosts_at_once() {
    let a = sighting(U1, "1651323018291", "h1", "v", datetime!(2026-01-01 00:00 UTC));
    let moved = sighting(U1, "1651323018291", "h2", "v", datetime!(2026-01-05 00:00 UTC));
    check_history(&moved, std::slice::from_ref(&a), &["moved-host"]);
    let at_once = sighting(U1, "1651323018291", "h2", "v", datetime!(2026-01-01 00:05 UTC));
    check_history(&at_once, std::slice::from_ref(&a), &["uuid-on-two-hosts"]);
    let back = sighting(U1, "1651323018291", "h1", "v", datetime!(2026-01-09 00:00 UTC));
    check_history(&back, &[a, moved], &["uuid-on-two-hosts"]);
}

#[test]
fn history_does_not_call_a_fact_that_appears_or_disappears_an_identity_change() {
    let old = sighting(U1, "1651323018291", "h1", "v", datetime!(2026-01-01 00:00 UTC));
    let mut f = h800_facts();
    f.uuid = Some(GpuUuid::parse(U1).unwrap());
    f.serial = Some("1651323018291".into());
    f.vbios_version = Some("v".into());
    f.cuda_cores = Some(16896);
    f.pdi = Some("0xd52bae2e458244e2".into());
    let fp = f.fingerprint();
    let live = Sighting {
        fingerprint_digest: fp.digest(),
        fingerprint: Some(fp),
        observed_at: datetime!(2026-01-02 00:00 UTC),
        ..old.clone()
    };
    assert_ne!(live.fingerprint_digest, old.fingerprint_digest);
    check_history(&live, &[old], &[]);
}

/// A part number that is not ASCII names no board project, and costs no panic.
#[test]
fn a_board_part_number_with_non_ascii_bytes_names_no_project() {
    use chipledger_domain::identify::board_project_of;
    assert_eq!(board_project_of("692-2G5€-0205-000"), None);
    assert_eq!(board_project_of("692-€€-0205-000"), None);
    assert_eq!(board_project_of("692-2G520-0205-000"), Some(("G520".into(), "0205".into())));
}
