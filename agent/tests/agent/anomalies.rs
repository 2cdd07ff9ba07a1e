//! Planted anomalies: each is caught, with its evidence.

use chipledger_domain::catalog::Catalog;
use chipledger_domain::identify::{identify, Anomaly, Severity};
use chipledger_domain::records::Record;
use time::macros::datetime;

use super::*;

#[test]
fn an_h100_relabelled_as_an_h800_is_caught_by_its_eighteen_nvlinks() {
    // The device id edited to H800's 0x2324 (a spoofed strap or a faked NVML): 18 links
    // active where an H800 has 8.
    let relabelled = read(H100_TXT).replacen("0x233010DE", "0x232410DE", 1);
    let report = parse(&[("h100-as-h800.txt", &relabelled), ("links.txt", &read(H100_NVLINK))]);
    let id = identify(Catalog::embedded().unwrap(), &report.gpus[0]);
    assert_eq!(id.sku.as_deref(), Some("H800-SXM5-80GB"));
    assert!(
        id.anomalies.iter().any(|a| matches!(a, Anomaly::NvlinkExcess { expected_links: 8, active_links: 18, .. })),
        "{:#?}",
        id.anomalies
    );
    // The name, GPU part number and board part number all still say H100.
    assert!(id
        .anomalies
        .iter()
        .any(|a| matches!(a, Anomaly::NameMismatch { reported, .. } if reported == "NVIDIA H100 80GB HBM3")));
    assert!(id.anomalies.iter().any(|a| matches!(a, Anomaly::GpuPartNumberMismatch { .. })));
    assert!(id.anomalies.iter().any(|a| matches!(a, Anomaly::BoardPartNumberMismatch { .. })));
    assert_eq!(id.worst(), Some(Severity::Danger));
    let excess = id.anomalies.iter().find(|a| matches!(a, Anomaly::NvlinkExcess { .. })).unwrap();
    assert!(excess.explain().contains("18 active NVLinks"), "{}", excess.explain());
}

/// Attests `report` from `host` with `key` and returns the anomalies recorded for GPU `i`.
fn attest_and_read(
    fleet: &Fleet,
    attestor: &mut chipledger_agent::attest::Attestor,
    report: &ProbeReport,
    host_name: &str,
) -> Vec<Vec<Anomaly>> {
    let att = attestor.build(report, host(host_name)).unwrap();
    attestor.sign_and_spool(&att).unwrap();
    let flush = attestor.flush().unwrap();
    assert_eq!(flush.accepted.len(), 1, "{flush:?}");
    let index = flush.accepted[0].receipt.index;
    let envelope = fleet.log.ledger.envelope(index).unwrap();
    let env = chipledger_domain::dsse::Envelope::from_json(&envelope).unwrap();
    let Record::GpuAttestation(stored) = Record::from_payload(&env.payload_bytes().unwrap()).unwrap() else { panic!() };
    stored.gpus.iter().map(|g| g.identification.anomalies.clone()).collect()
}

fn kinds(a: &[Anomaly]) -> Vec<String> {
    a.iter().map(|x| serde_json::to_value(x).unwrap()["kind"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_vbios_change_between_two_attestations_of_one_uuid_is_recorded_with_both_versions() {
    let clock = TestClock::at(datetime!(2026-11-29 09:00 UTC));
    let mut fleet = Fleet::new(clock.clone());
    let key = fleet.agent_key(1, "hgx-01");
    let mut agent = fleet.attestor(key, "agent-1");
    let before = probe_files(&[H800_TXT]);
    assert_eq!(attest_and_read(&fleet, &mut agent, &before, "hgx-01"), vec![vec![]]);
    clock.advance(time::Duration::hours(1));
    let reflashed = parse(&[("h800.txt", &read(H800_TXT).replacen("96.00.51.00.0E", "96.00.74.00.0F", 1))]);
    let after = attest_and_read(&fleet, &mut agent, &reflashed, "hgx-01");
    assert_eq!(kinds(&after[0]), ["vbios-changed"]);
    let Anomaly::VbiosChanged { from, to, .. } = &after[0][0] else { panic!() };
    assert_eq!((from.as_str(), to.as_str()), ("96.00.51.00.0E", "96.00.74.00.0F"));
}

#[test]
fn one_serial_under_two_uuids_is_recorded() {
    let clock = TestClock::at(datetime!(2026-11-29 09:00 UTC));
    let mut fleet = Fleet::new(clock.clone());
    let key = fleet.agent_key(1, "hgx-01");
    let mut agent = fleet.attestor(key, "agent-1");
    attest_and_read(&fleet, &mut agent, &probe_files(&[H800_TXT]), "hgx-01");
    clock.advance(time::Duration::hours(2));
    let cloned = parse(&[(
        "h800.txt",
        &read(H800_TXT).replacen(
            "GPU-34bf77d1-c686-6821-79a8-32d326c5039c",
            "GPU-99999999-c686-6821-79a8-32d326c5039c",
            1,
        ),
    )]);
    let got = attest_and_read(&fleet, &mut agent, &cloned, "hgx-01");
    assert_eq!(kinds(&got[0]), ["serial-under-two-uuids"]);
    let Anomaly::SerialUnderTwoUuids { serial, uuids } = &got[0][0] else { panic!() };
    assert_eq!(serial, "1651323018291");
    assert_eq!(uuids.len(), 2);
}

#[test]
fn one_uuid_attested_from_two_hosts_at_once_is_recorded() {
    let clock = TestClock::at(datetime!(2026-11-29 09:00 UTC));
    let mut fleet = Fleet::new(clock.clone());
    let (k1, k2) = (fleet.agent_key(1, "hgx-01"), fleet.agent_key(2, "hgx-02"));
    let (mut a1, mut a2) = (fleet.attestor(k1, "agent-1"), fleet.attestor(k2, "agent-2"));
    let report = probe_files(&[H800_TXT]);
    attest_and_read(&fleet, &mut a1, &report, "hgx-01");
    clock.advance(time::Duration::minutes(5));
    let got = attest_and_read(&fleet, &mut a2, &report, "hgx-02");
    assert_eq!(kinds(&got[0]), ["uuid-on-two-hosts"]);
    let Anomaly::UuidOnTwoHosts { hosts, .. } = &got[0][0] else { panic!() };
    assert_eq!(hosts, &["hgx-01".to_string(), "hgx-02".to_string()]);
}
