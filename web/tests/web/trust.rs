//! The reader decides: what the dashboard, its exports, `/metrics` and the scheduler show of a
//! GPU is computed from the record's facts, never taken from its signer's identification.

use chipledger_domain::catalog::Catalog;
use chipledger_domain::country::Country;
use chipledger_domain::identify::Identification;
use chipledger_domain::records::{Acquisition, AttestedGpu, DriverFacts, GpuAttestation, HostFacts, ProbeSource};

use crate::*;

/// Signs and appends an attestation of the GPUs in `dump` by `key` for `host`, with each GPU's
/// identification replaced by `claim` (what a lying agent would send).
fn attest_claiming(w: &World, key: &SigningKey, host: &str, dump: &str, claim: impl Fn(&mut Identification)) {
    attest_as(
        w,
        key,
        host,
        dump,
        claim,
        DriverFacts { nvml_version: Some("12.535.104.05".into()), ..DriverFacts::default() },
    )
}

/// [`attest_claiming`] with the driver facts given.
fn attest_as(
    w: &World,
    key: &SigningKey,
    host: &str,
    dump: &str,
    claim: impl Fn(&mut Identification),
    driver: DriverFacts,
) {
    attest_at(w, key, (1, NOW), host, dump, claim, driver)
}

/// [`attest_as`] with the record's counter and time given.
fn attest_at(
    w: &World,
    key: &SigningKey,
    (counter, observed_at): (u64, time::OffsetDateTime),
    host: &str,
    dump: &str,
    claim: impl Fn(&mut Identification),
    driver: DriverFacts,
) {
    let report = chipledger_agent::smi::parse_dumps(&[("dump.txt", dump)]).unwrap();
    let catalog = Catalog::embedded().unwrap();
    let gpus = report
        .gpus
        .iter()
        .map(|f| {
            let mut id = chipledger_domain::identify::identify(catalog, f);
            claim(&mut id);
            AttestedGpu::new(f.uuid.clone().unwrap(), f.clone(), id)
        })
        .collect();
    let att = GpuAttestation {
        format_version: FORMAT_VERSION,
        counter,
        observed_at,
        source: ProbeSource::Nvml,
        host: HostFacts { hostname: host.into(), ..HostFacts::default() },
        driver,
        gpus,
        vendor_evidence: vec![],
    };
    w.ledger.append(&[sign_record(&att, key).unwrap().to_json()]).unwrap();
}

fn h100_dump(uuid: &str, serial: &str) -> String {
    data("h100-sxm5-80gb-utkuozdemir-nvidia_gpu_exporter.txt")
        .replace("GPU-00000000-0000-0000-0000-000000000000", uuid)
        .replace("0000000000000", serial)
}

/// The admin records a lawful acquisition of the world's H800 serial (1651323018291).
fn acquire_h800_serial(w: &mut World) {
    w.counter += 1;
    let acq = Acquisition {
        format_version: FORMAT_VERSION,
        counter: w.counter,
        recorded_at: NOW,
        serials: vec!["1651323018291".into()],
        sku: Some("H800-SXM5-80GB".into()),
        supplier: "Example Distribution".into(),
        invoice_reference: "INV-7".into(),
        invoice_digest: None,
        shipped_on: time::macros::date!(2023 - 03 - 15),
        ship_from: Country::parse("TW").unwrap(),
        ship_to: Country::parse("CN").unwrap(),
        end_user: "Example Lab".into(),
        licence: None,
        note: String::new(),
    };
    w.ledger.append(&[sign_record(&acq, &w.admin).unwrap().to_json()]).unwrap();
}

/// An annotation saying the world's H800 holds serial 1651323018291, as `counter`.
fn h800_holds_its_serial(counter: u64) -> chipledger_domain::records::Annotation {
    chipledger_domain::records::Annotation {
        format_version: FORMAT_VERSION,
        counter,
        written_at: NOW,
        target: chipledger_domain::records::AnnotationTarget::Gpu { uuid: GpuUuid::parse(H800_UUID).unwrap() },
        severity: chipledger_domain::identify::Severity::Info,
        text: "the card in hgx-h800-01 was checked by hand: its label reads 1651323018291".into(),
        resolves_serial: Some("1651323018291".into()),
        settles_history: false,
    }
}

const FORGED_UUID: &str = "GPU-7a1c0e55-3b2d-4f60-9e8a-1c2b3d4e5f60";

#[test]
fn a_record_claiming_another_sku_shows_the_recomputed_one_and_the_disagreement_everywhere() {
    let mut w = world();
    let key = SigningKey::from_seed(&[31; 32]);
    w.enroll(&key, Role::Agent, Some("hgx-liar"));
    // An H100 (PCI id 0x2330) claimed as an L40S with no anomalies.
    attest_claiming(&w, &key, "hgx-liar", &h100_dump(FORGED_UUID, "1654423009999"), |id| {
        id.sku = Some("L40S-48GB".into());
        id.anomalies.clear();
    });
    let token = w.auditor_token.clone();
    let t = As::Bearer(&token);
    let rows = call(&w, t, "GET", &format!("/fleet.json?q={FORGED_UUID}"), vec![]).json();
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["sku"], "H100-SXM5-80GB", "{row}");
    assert!(row["anomalies"].to_string().contains("claims sku L40S-48GB, but its facts give H100-SXM5-80GB"), "{row}");
    let csv = call(&w, t, "GET", &format!("/fleet.csv?q={FORGED_UUID}"), vec![]).text();
    assert!(csv.contains("H100-SXM5-80GB") && !csv.contains(",L40S") && csv.contains("claims sku L40S-48GB"), "{csv}");
    let metrics = call(&w, t, "GET", "/metrics", vec![]).text();
    let line = metrics.lines().find(|l| l.contains(FORGED_UUID) && l.starts_with("chipledger_gpu_info")).unwrap();
    assert!(line.contains("sku=\"H100-SXM5-80GB\""), "{line}");
    // The scheduler: the same recomputed SKU, the disagreement a reason to refuse it.
    let fleet = chipledger_domain::fleet::load(w.ledger.as_ref(), w.ledger.verifier_key()).unwrap();
    let c = fleet.candidates.iter().find(|c| c.uuid.as_str() == FORGED_UUID).unwrap();
    assert_eq!(c.sku.as_deref(), Some("H100-SXM5-80GB"));
    assert!(c.anomalies.iter().any(|a| a.kind_name() == "claim-disagrees"), "{:?}", c.anomalies);
    // Hiding an anomaly the facts show is a disagreement too: the planted H800-with-H100-NVLink.
    let key2 = SigningKey::from_seed(&[32; 32]);
    w.enroll(&key2, Role::Agent, Some("hgx-hider"));
    let relabelled =
        h100_dump("GPU-7a1c0e55-3b2d-4f60-9e8a-1c2b3d4e5f61", "1651323099998").replace("0x233010DE", "0x232410DE");
    attest_claiming(&w, &key2, "hgx-hider", &relabelled, |id| id.anomalies.clear());
    let rows = call(&w, t, "GET", "/fleet.json?q=hgx-hider", vec![]).json();
    let text = rows.to_string();
    assert!(text.contains("claims anomalies none"), "{text}");
}

#[test]
fn a_borrowed_serial_inherits_no_verdict_and_both_gpus_are_flagged() {
    let mut w = world();
    // The H800 in the world (serial 1651323018291) gets an acquisition record.
    acquire_h800_serial(&mut w);
    let token = w.auditor_token.clone();
    let t = As::Bearer(&token);
    let verdict_of = |w: &World, uuid: &str| {
        let rows = call(w, t, "GET", &format!("/fleet.json?q={uuid}"), vec![]).json();
        rows.as_array().unwrap()[0].clone()
    };
    let before = verdict_of(&w, H800_UUID);
    assert_eq!(before["verdict"], "lawful", "{before}");
    // Another host reports a GPU under that serial.
    let key = SigningKey::from_seed(&[33; 32]);
    w.enroll(&key, Role::Agent, Some("hgx-borrower"));
    let borrowed = data("h800-sxm5-80gb-liguodongiot-llm-action.txt")
        .replace(H800_UUID, "GPU-0d0e0f10-1112-4314-9516-171819202122");
    attest_claiming(&w, &key, "hgx-borrower", &borrowed, |_| {});
    for uuid in [H800_UUID, "GPU-0d0e0f10-1112-4314-9516-171819202122"] {
        let row = verdict_of(&w, uuid);
        assert_eq!(row["verdict"], "needs-review", "{uuid}: {row}");
        assert!(row["anomalies"].to_string().contains("serial 1651323018291 reported under 2 UUIDs"), "{row}");
    }
    // The scheduler refuses both (the default policy accepts only lawful verdicts).
    let fleet = chipledger_domain::fleet::load(w.ledger.as_ref(), w.ledger.verifier_key()).unwrap();
    for c in fleet.candidates.iter().filter(|c| c.serial.as_deref() == Some("1651323018291")) {
        assert_eq!(c.verdict, chipledger_domain::rules::VerdictKind::NeedsReview, "{}", c.uuid);
    }
    // Which GPU holds the serial is an admin's call: an auditor's resolution is refused...
    let resolution = h800_holds_its_serial;
    let err = w.ledger.append(&[sign_record(&resolution(50), &w.auditor_key).unwrap().to_json()]).unwrap_err();
    assert!(err.to_string().contains("only an admin key may resolve"), "{err}");
    // ...an admin's gives the acquisition back to that GPU, and marks the other one.
    w.counter += 1;
    w.ledger.append(&[sign_record(&resolution(w.counter), &w.admin).unwrap().to_json()]).unwrap();
    let owner = verdict_of(&w, H800_UUID);
    assert_eq!(owner["verdict"], "lawful", "{owner}");
    assert!(!owner["anomalies"].to_string().contains("serial 1651323018291"), "{owner}");
    let other = verdict_of(&w, "GPU-0d0e0f10-1112-4314-9516-171819202122");
    assert_eq!(other["verdict"], "needs-review", "{other}");
    assert!(other["anomalies"].to_string().contains("serial 1651323018291 reported under 2 UUIDs"), "{other}");
    let fleet = chipledger_domain::fleet::load(w.ledger.as_ref(), w.ledger.verifier_key()).unwrap();
    let c = fleet.candidates.iter().find(|c| c.uuid.as_str() == H800_UUID).unwrap();
    assert_eq!(c.verdict, chipledger_domain::rules::VerdictKind::Lawful);
}

#[test]
fn a_run_page_says_why_a_run_citing_something_else_than_its_gpus_attestation_fails() {
    use chipledger_domain::log::LogClient;
    use chipledger_domain::records::{AttestationRef, RunGpu, RunProvenance, RunTimings, Sampling};
    let mut w = world();
    let node = SigningKey::from_seed(&[34; 32]);
    w.enroll(&node, Role::Node, Some("node-01"));
    let (size, checkpoint) = w.ledger.checkpoint().unwrap();
    let h800 = w.ledger.gpu_latest_index(&GpuUuid::parse(H800_UUID).unwrap()).unwrap().unwrap();
    let cite = |index: u64, sku: &str| {
        let e = LogClient::entry(w.ledger.as_ref(), index).unwrap();
        RunGpu {
            uuid: GpuUuid::parse(H800_UUID).unwrap(),
            serial: None,
            sku: Some(sku.into()),
            classification: "3A090.a.1".into(),
            acquisition_verdict: "no-acquisition-record".into(),
            attestation: AttestationRef {
                log_index: index,
                leaf_hash: e.leaf_hash,
                inclusion_proof: LogClient::inclusion_proof(w.ledger.as_ref(), index, size).unwrap(),
                age_seconds: 60,
            },
        }
    };
    let record = |counter: u64, gpu: RunGpu| RunProvenance {
        format_version: FORMAT_VERSION,
        counter,
        run_id: format!("{counter:032x}"),
        started_at: NOW,
        finished_at: NOW,
        node_key_id: node.key_id(),
        node_host: "node-01".into(),
        policy_name: "default".into(),
        policy_digest: chipledger_domain::merkle::Hash([0; 32]),
        gpus: vec![gpu],
        rejected: vec![],
        checkpoint: checkpoint.clone(),
        model_name: "tiny".into(),
        model_files: vec![],
        prompt_digest: chipledger_domain::merkle::Hash::sha256(b"p"),
        output_digest: chipledger_domain::merkle::Hash::sha256(b"o"),
        sampling: Sampling { temperature: 0.0, top_p: 1.0, seed: 1, max_tokens: 1 },
        prompt_tokens: 1,
        generated_tokens: 1,
        timings: RunTimings { load_ms: 0, prefill_ms: 0, decode_ms: 0 },
        backend: "cpu".into(),
    };
    let honest = record(1, cite(h800, "H800-SXM5-80GB"));
    let enrollment = record(2, cite(1, "H800-SXM5-80GB"));
    let other_sku = record(3, cite(h800, "H100-SXM5-80GB"));
    let receipts =
        w.ledger.append(&[honest, enrollment, other_sku].map(|r| sign_record(&r, &node).unwrap().to_json())).unwrap();
    let token = w.auditor_token.clone();
    let page = |index: u64| call(&w, As::Bearer(&token), "GET", &format!("/runs/{index}"), vec![]).text();
    let good = page(receipts[0].index);
    assert!(!good.contains("is not an attestation") && !good.contains("but its attestation"), "{good}");
    let bad = page(receipts[1].index);
    assert!(bad.contains("entry 1, cited as the attestation of") && bad.contains("not an attestation"), "{bad}");
    let bad = page(receipts[2].index);
    assert!(bad.contains("is a H100-SXM5-80GB, but its attestation at entry"), "{bad}");
}

#[test]
fn an_import_claiming_a_live_nvml_probe_is_flagged_and_shown_as_imported() {
    let mut w = world();
    let key = SigningKey::from_seed(&[35; 32]);
    w.enroll(&key, Role::Agent, Some("hgx-pretender"));
    let uuid = "GPU-7a1c0e55-3b2d-4f60-9e8a-1c2b3d4e5f62";
    // An nvidia-smi dump's facts (no NVML version among the driver facts) signed as `source: nvml`.
    attest_as(&w, &key, "hgx-pretender", &h100_dump(uuid, "1654423009998"), |_| {}, DriverFacts::default());
    let token = w.auditor_token.clone();
    let rows = call(&w, As::Bearer(&token), "GET", &format!("/fleet.json?q={uuid}"), vec![]).json();
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["source"], "nvml", "{row}");
    assert_eq!(row["evidence"], "imported", "{row}");
    assert!(row["anomalies"].to_string().contains("claims source nvml"), "{row}");
}

#[test]
fn the_cached_fleet_after_each_change_equals_a_fresh_read() {
    let mut w = world();
    let app = chipledger_web::router(w.ledger.clone(), ServerConfig::default());
    let token = w.auditor_token.clone();
    let fleet_of =
        |app: axum::Router| crate::send_to(app, As::Bearer(&token), "GET", "/fleet.json", "text/plain", vec![]).json();
    let check = |w: &World, step: &str| {
        let cached = fleet_of(app.clone());
        let fresh = fleet_of(chipledger_web::router(w.ledger.clone(), ServerConfig::default()));
        assert_eq!(cached, fresh, "after {step}: the cache updated from new entries differs from a cold read");
    };
    check(&w, "nothing");
    // An acquisition of the H800's serial.
    acquire_h800_serial(&mut w);
    check(&w, "an acquisition");
    // A second GPU under that serial.
    let key = SigningKey::from_seed(&[36; 32]);
    w.enroll(&key, Role::Agent, Some("hgx-borrower"));
    let borrowed = data("h800-sxm5-80gb-liguodongiot-llm-action.txt")
        .replace(H800_UUID, "GPU-0d0e0f10-1112-4314-9516-171819202199");
    attest_claiming(&w, &key, "hgx-borrower", &borrowed, |_| {});
    check(&w, "a borrowed serial");
    // An admin resolution.
    w.counter += 1;
    let resolution = h800_holds_its_serial(w.counter);
    w.ledger.append(&[sign_record(&resolution, &w.admin).unwrap().to_json()]).unwrap();
    check(&w, "a resolution");
    // The borrower re-attests under its own serial: the H800's serial is no longer shared.
    let own = data("h800-sxm5-80gb-liguodongiot-llm-action.txt")
        .replace(H800_UUID, "GPU-0d0e0f10-1112-4314-9516-171819202199")
        .replace("1651323018291", "1651323018777");
    let env: chipledger_domain::dsse::Envelope = {
        let report = chipledger_agent::smi::parse_dumps(&[("dump.txt", own.as_str())]).unwrap();
        let catalog = Catalog::embedded().unwrap();
        let gpus = report
            .gpus
            .iter()
            .map(|f| {
                AttestedGpu::new(f.uuid.clone().unwrap(), f.clone(), chipledger_domain::identify::identify(catalog, f))
            })
            .collect();
        let att = GpuAttestation {
            format_version: FORMAT_VERSION,
            counter: 2,
            observed_at: NOW,
            source: ProbeSource::Nvml,
            host: HostFacts { hostname: "hgx-borrower".into(), ..HostFacts::default() },
            driver: DriverFacts { nvml_version: Some("12.535.104.05".into()), ..DriverFacts::default() },
            gpus,
            vendor_evidence: vec![],
        };
        sign_record(&att, &key).unwrap()
    };
    w.ledger.append(&[env.to_json()]).unwrap();
    check(&w, "a re-attestation under another serial");
}

/// History anomalies are the reader's: an agent that claims one the log does not show is not
/// believed, and one that hides a VBIOS change, a move or a second host is found out — on the
/// dashboard, in the cache and in the scheduler's fleet alike.
#[test]
fn a_gpus_history_anomalies_come_from_its_trail_not_from_what_its_agents_claim() {
    let mut w = world();
    let app = chipledger_web::router(w.ledger.clone(), ServerConfig::default());
    let token = w.auditor_token.clone();
    const U: &str = "GPU-5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b";
    let (a, b) = (SigningKey::from_seed(&[41; 32]), SigningKey::from_seed(&[42; 32]));
    w.enroll(&a, Role::Agent, Some("hgx-a"));
    w.enroll(&b, Role::Agent, Some("hgx-b"));
    let driver = || DriverFacts { nvml_version: Some("12.535.104.05".into()), ..DriverFacts::default() };
    let dump = h100_dump(U, "1654423000777");
    let reflashed = dump.replace("96.00.A5.00.01", "96.00.A5.00.99");
    let hour = time::Duration::hours(1);
    // What the dashboard (its cache, and a cold read, which must agree) and the scheduler show.
    let kinds = |w: &World, step: &str| -> Vec<String> {
        let cached = crate::send_to(app.clone(), As::Bearer(&token), "GET", "/fleet.json", "text/plain", vec![]).json();
        let fresh = crate::send_to(
            chipledger_web::router(w.ledger.clone(), ServerConfig::default()),
            As::Bearer(&token),
            "GET",
            "/fleet.json",
            "text/plain",
            vec![],
        )
        .json();
        assert_eq!(cached, fresh, "after {step}: the cached fleet differs from a cold read");
        let fleet = chipledger_domain::fleet::load(w.ledger.as_ref(), w.ledger.verifier_key()).unwrap();
        let c = fleet.candidates.iter().find(|c| c.uuid.as_str() == U).unwrap();
        let row = fresh.as_array().unwrap().iter().find(|r| r["uuid"] == U).unwrap().clone();
        let explained: Vec<String> = c.anomalies.iter().map(|a| a.explain()).collect();
        assert_eq!(row["anomalies"], serde_json::json!(explained), "{step}: the dashboard and the scheduler differ");
        let mut kinds: Vec<String> = c.anomalies.iter().map(|a| a.kind_name()).collect();
        kinds.sort();
        kinds
    };
    // A claims two hosts it never had: nothing in the log says so.
    let two_hosts = chipledger_domain::identify::Anomaly::UuidOnTwoHosts {
        uuid: chipledger_domain::fingerprint::GpuUuid::parse(U).unwrap(),
        hosts: vec!["hgx-a".into(), "elsewhere".into()],
    };
    attest_at(&w, &a, (1, NOW - 3 * hour), "hgx-a", &dump, |id| id.anomalies.push(two_hosts.clone()), driver());
    assert_eq!(kinds(&w, "a claimed second host"), Vec::<String>::new());
    // A reflashes the VBIOS and says nothing of it.
    attest_at(&w, &a, (2, NOW - 2 * hour), "hgx-a", &reflashed, |id| id.anomalies.clear(), driver());
    assert_eq!(kinds(&w, "a hidden reflash"), ["vbios-changed"]);
    // B attests the same GPU under its own host, an hour after A last did: a move, and the
    // reflash still stands (the facts have not changed since).
    attest_at(&w, &b, (1, NOW - hour), "hgx-b", &reflashed, |id| id.anomalies.clear(), driver());
    assert_eq!(kinds(&w, "a move"), ["moved-host", "vbios-changed"]);
    // A attests it again: two hosts hold one UUID (Danger: placement tolerates no such GPU).
    attest_at(&w, &a, (3, NOW), "hgx-a", &reflashed, |id| id.anomalies.clear(), driver());
    assert_eq!(kinds(&w, "a second host"), ["uuid-on-two-hosts", "vbios-changed"]);
    // Only an admin may settle a GPU's history: an auditor's settlement is refused.
    let settlement = |counter: u64| chipledger_domain::records::Annotation {
        format_version: FORMAT_VERSION,
        counter,
        written_at: NOW,
        target: chipledger_domain::records::AnnotationTarget::Gpu {
            uuid: chipledger_domain::fingerprint::GpuUuid::parse(U).unwrap(),
        },
        severity: chipledger_domain::identify::Severity::Info,
        text: "reflash by the vendor, RMA ticket 4411; hgx-b's key was a test enrollment".into(),
        resolves_serial: None,
        settles_history: true,
    };
    let refused = w.ledger.append(&[sign_record(&settlement(900), &w.auditor_key).unwrap().to_json()]).unwrap_err();
    assert!(refused.to_string().contains("admin"), "{refused}");
    // The admin's settlement: the reviewed history stands down, the current host and facts stay.
    w.counter += 1;
    w.ledger.append(&[sign_record(&settlement(w.counter), &w.admin).unwrap().to_json()]).unwrap();
    assert_eq!(kinds(&w, "a settlement"), Vec::<String>::new());
    // B attests it again: two hosts once more.
    attest_at(&w, &b, (2, NOW), "hgx-b", &reflashed, |id| id.anomalies.clear(), driver());
    assert_eq!(kinds(&w, "a second host after the settlement"), ["uuid-on-two-hosts"]);
    assert_eq!(w.ledger.audit(&mut |_, _| {}).unwrap().problem, None);
}
