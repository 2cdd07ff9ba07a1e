//! Location proofs on the dashboard: the fleet's location column (page, CSV, JSON), a GPU's
//! Location section with its host's proofs and the map, and the anomalies a contradicting
//! proof gives — the same judgement `fleet::locate` makes, also after the log grew.

use std::sync::Arc;

use axum::http::StatusCode;
use chipledger_domain::country::Country;
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::location::Coord;
use chipledger_domain::location_proof::{answer, LocatedSubject, LocationProof, ProofHeader, Round};
use chipledger_domain::log::Clock;
use chipledger_domain::records::{sign_record, Acquisition, KeyEnrollment, KeyRevocation, Role, Site, FORMAT_VERSION};
use chipledger_ledger::{Ledger, LedgerConfig};
use time::OffsetDateTime;

use crate::{call, send_to, world, As, World, H800_UUID, NOW};

const KAS: &str = "51.3200,9.5000";
const KAS_LANDMARK: &str = "51.3127,9.4797";
const SIN_LANDMARK: &str = "1.2966,103.7764";
/// A GPU of the Kassel host, and of the host that declares Kassel but answers from Singapore.
const KAS_UUID: &str = "GPU-6a1f0c2e-3b4d-4e5f-8a9b-0c1d2e3f4a51";
const FAR_UUID: &str = "GPU-6a1f0c2e-3b4d-4e5f-8a9b-0c1d2e3f4a52";

fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed(&[seed; 32])
}

fn at(s: &str) -> Coord {
    Coord::parse(s).unwrap()
}

/// Enrolls `key` for `role` under `name`, at `site` if any, valid from ten days ago.
fn enroll_at(w: &mut World, key: &SigningKey, role: Role, name: &str, site: Option<(&str, &str, Option<&str>)>) {
    w.counter += 1;
    let e = KeyEnrollment {
        format_version: FORMAT_VERSION,
        counter: w.counter,
        issued_at: NOW,
        key_id: key.key_id(),
        verifier_key: VerifierKey::new(name, key.public_key()).unwrap().to_string(),
        role,
        host: Some(name.to_string()),
        valid_from: NOW - time::Duration::days(10),
        valid_until: None,
        site: site.map(|(coord, operator, country)| Site {
            at: at(coord),
            operator: operator.into(),
            country: country.map(|c| Country::parse(c).unwrap()),
            floor_ns: 0,
        }),
    };
    w.ledger.append(&[sign_record(&e, &w.admin).unwrap().to_json()]).unwrap();
}

/// A host with its agent (declaring `site`) that attested one H100 `uuid`.
fn host(w: &mut World, seed: u8, name: &str, site: Option<(&str, &str, Option<&str>)>, uuid: &str) {
    enroll_at(w, &key(seed), Role::Agent, name, site);
    let h100 = std::fs::read_to_string(format!(
        "{}/../agent/tests/data/nvidia-smi/h100-sxm5-80gb-utkuozdemir-nvidia_gpu_exporter.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .replace("GPU-00000000-0000-0000-0000-000000000000", uuid)
    .replace("0000000000000", &format!("16500000000{seed:02}"));
    w.attest(key(seed), name, &[("h100.txt", h100)]);
}

/// Landmark `name` (key `lm`, at `site`) appends a proof that `agent`'s host answered its three
/// rounds in `rtt_ns` at best, measured at `measured_at`. Returns its log index.
fn prove(
    w: &mut World,
    lm: &SigningKey,
    name: &str,
    site: &str,
    (agent, host): (&SigningKey, &str),
    rtt_ns: u64,
    measured_at: OffsetDateTime,
) -> u64 {
    w.counter += 1;
    let rounds = (0..3u8)
        .map(|i| {
            let nonce = [w.counter as u8 ^ (i + 1); 32];
            Round {
                nonce: hex::encode(nonce),
                rtt_ns: rtt_ns + u64::from(i) * 7_000,
                answer: answer(agent, name, host, &nonce),
            }
        })
        .collect();
    let header =
        ProofHeader { counter: w.counter, measured_at, landmark: name.into(), landmark_at: at(site), floor_ns: 0 };
    let subject = LocatedSubject { host: host.into(), key_id: agent.key_id(), gpus: vec![] };
    let proof = LocationProof::new(header, subject, rounds);
    let receipts = w.ledger.append(&[sign_record(&proof, lm).unwrap().to_json()]).unwrap();
    receipts[0].index
}

/// The world, plus: `hgx-kas-01` declaring Kassel and located there by `kas-1` (30 km) and a
/// stale proof of `sin-1`; `hgx-far-02` declaring Kassel and located by `sin-1` within 150 km
/// of Singapore. Returns the world and the index of `kas-1`'s proof.
fn located_world() -> (World, u64) {
    let mut w = world();
    host(&mut w, 21, "hgx-kas-01", Some((KAS, "Example DC Kassel", Some("DE"))), KAS_UUID);
    host(&mut w, 22, "hgx-far-02", Some((KAS, "Example DC Kassel", Some("DE"))), FAR_UUID);
    enroll_at(&mut w, &key(31), Role::Landmark, "kas-1", Some((KAS_LANDMARK, "Landmark Org <DE>", None)));
    enroll_at(&mut w, &key(32), Role::Landmark, "sin-1", Some((SIN_LANDMARK, "Landmark Org SG", None)));
    let kas = prove(
        &mut w,
        &key(31),
        "kas-1",
        KAS_LANDMARK,
        (&key(21), "hgx-kas-01"),
        200_000,
        NOW - time::Duration::hours(1),
    );
    // Measured two days ago (appended now): listed, not counted.
    prove(&mut w, &key(32), "sin-1", SIN_LANDMARK, (&key(21), "hgx-kas-01"), 90_000_000, NOW - time::Duration::days(2));
    prove(
        &mut w,
        &key(32),
        "sin-1",
        SIN_LANDMARK,
        (&key(22), "hgx-far-02"),
        1_000_000,
        NOW - time::Duration::minutes(5),
    );
    (w, kas)
}

#[track_caller]
fn check(w: &World, uri: &str) -> String {
    let a = call(w, As::Bearer(&w.auditor_token), "GET", uri, vec![]);
    assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.text());
    a.text()
}

fn gpu<'a>(rows: &'a serde_json::Value, uuid: &str) -> &'a serde_json::Value {
    rows.as_array().unwrap().iter().find(|g| g["uuid"] == uuid).unwrap_or_else(|| panic!("{uuid} in {rows}"))
}

#[test]
fn a_gpu_page_shows_its_hosts_proofs_the_declared_site_and_the_map_of_the_region() {
    let (w, kas) = located_world();
    let html = check(&w, &format!("/gpus/{KAS_UUID}"));
    assert!(html.contains("id=\"location-verdict\">consistent (host-key)<"), "{html}");
    assert!(html.contains("class=\"location loc-ok\""), "{html}");
    assert!(html.contains("the round trip to landmark kas-1 bounds the key holder within 30 km"), "{html}");
    assert!(html.contains("Host-key proofs locate the holder of the host's key, not the chip"));
    assert!(html.contains("<code>51.3200,9.5000</code>, Example DC Kassel, DE (Germany)"), "{html}");
    assert!(html.contains("id=\"licensed-to\">none recorded<"), "{html}");
    // Both proofs, with the landmark's operator from its enrollment (escaped), the least round
    // trip, the bound, and a link to the entry; the stale one is listed but not counted.
    assert!(
        html.contains("<td>kas-1</td><td><code>51.3127,9.4797</code></td><td>Landmark Org &#60;DE&#62;</td>"),
        "{html}"
    );
    assert!(html.contains("<td>0.200 ms</td><td>30 km</td><td>host-key</td>"), "{html}");
    assert!(html.contains(&format!("<a href=\"/api/v1/entries/{kas}\">#{kas}</a>")), "{html}");
    assert_eq!(html.matches("not counted: measured outside the last 24 h").count(), 1, "{html}");
    // The map: inline SVG, no script, with the disk, the landmark, the declared site and the region.
    let svg = &html[html.find("<svg id=\"location-map\"").expect("the map")..];
    let svg = &svg[..svg.find("</svg>").unwrap()];
    assert!(!html.contains("<script"));
    assert!(svg.contains("class=\"disk-edge\" d=\"M"), "{svg}");
    assert!(svg.contains(">kas-1</text>") && svg.contains(">declared site</text>"), "{svg}");
    let region = &svg[svg.find("id=\"feasible-region\"").unwrap()..];
    assert!(region[..region.find("</g>").unwrap()].contains("<rect x="), "{svg}");
    assert!(svg.contains(">DE</text>"), "a country code on the land: {svg}");
    assert!(!svg.contains("NaN") && !svg.contains("inf"));
    // The JSON the table links to is the entry.
    let entry = call(&w, As::Bearer(&w.auditor_token), "GET", &format!("/api/v1/entries/{kas}"), vec![]);
    assert_eq!(entry.status, StatusCode::OK);
}

#[test]
fn a_host_whose_proofs_rule_out_its_declared_site_is_flagged_on_every_view() {
    let (w, _) = located_world();
    let html = check(&w, &format!("/gpus/{FAR_UUID}"));
    assert!(html.contains("id=\"location-verdict\">contradicts-declared (host-key)<"), "{html}");
    assert!(html.contains("class=\"location loc-danger\""), "{html}");
    assert!(html.contains("from landmark sin-1, whose round trip bounds the key holder within 150 km"), "{html}");
    assert!(html.contains("location proofs (host-key) contradict the declaration"), "the anomaly: {html}");
    assert!(html.contains("<svg id=\"location-map\""), "{html}");

    // The fleet page: the column, styled, its reason as the tooltip; the filter finds it.
    let page = check(&w, "/?location=contradicts-declared");
    assert!(page.contains("<td class=\"location loc-danger\" title=\"the declared site is"), "{page}");
    assert!(page.contains(">contradicts-declared (host-key)</td>"), "{page}");
    assert!(page.contains(FAR_UUID) && !page.contains(KAS_UUID), "{page}");
    let all = check(&w, "/");
    assert!(all.contains(">Location</a></th>"), "{all}");

    // CSV and JSON carry the same.
    let csv = call(&w, As::Bearer(&w.auditor_token), "GET", "/fleet.csv", vec![]);
    let mut r = csv::Reader::from_reader(&csv.body[..]);
    assert_eq!(r.headers().unwrap().iter().next_back(), Some("location"));
    let by_uuid: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let far = by_uuid.iter().find(|rec| &rec[3] == FAR_UUID).unwrap();
    assert_eq!(&far[11], "contradicts-declared (host-key)");
    assert!(far[9].contains("location proofs (host-key) contradict the declaration"), "{far:?}");
    let fra = by_uuid.iter().find(|rec| &rec[3] == KAS_UUID).unwrap();
    assert_eq!(&fra[11], "consistent (host-key)");
    let rows = call(&w, As::Bearer(&w.auditor_token), "GET", "/fleet.json", vec![]).json();
    assert_eq!(gpu(&rows, FAR_UUID)["location"], "contradicts-declared (host-key)");
    assert!(gpu(&rows, FAR_UUID)["location_reason"].as_str().unwrap().starts_with("the declared site is"));
    assert_eq!(gpu(&rows, H800_UUID)["location"], "unproven");
}

#[test]
fn a_gpu_whose_host_has_no_proof_is_unproven_and_gets_no_map() {
    let (w, _) = located_world();
    let html = check(&w, &format!("/gpus/{H800_UUID}"));
    assert!(html.contains("id=\"location-verdict\">unproven<"), "{html}");
    assert!(html.contains("class=\"location loc-muted\""), "{html}");
    assert!(html.contains("id=\"location-reason\">no location proof<"), "{html}");
    assert!(html.contains("id=\"no-proofs\""), "{html}");
    assert!(html.contains("none: the host's agent key was enrolled without a site"), "{html}");
    assert!(!html.contains("<svg id=\"location-map\""), "{html}");
    // And on a log without any landmark at all.
    let plain = world();
    let html = check(&plain, &format!("/gpus/{H800_UUID}"));
    assert!(html.contains("id=\"location-verdict\">unproven<") && html.contains("id=\"no-proofs\""), "{html}");
}

#[test]
fn the_dashboard_judges_locations_as_fleet_locate_does_also_after_the_log_grew() {
    let (mut w, _) = located_world();
    let app = chipledger_web::router(w.ledger.clone(), chipledger_web::ServerConfig::default());
    let token = w.auditor_token.clone();
    let get = |app: &axum::Router| {
        send_to(app.clone(), As::Bearer(&token), "GET", "/fleet.json", "text/plain", vec![]).json()
    };
    let expected = |w: &World| {
        let mut fleet = chipledger_domain::fleet::load(w.ledger.as_ref(), w.ledger.verifier_key()).unwrap();
        let max_age = chipledger_domain::located::DEFAULT_MAX_AGE_SECS;
        chipledger_domain::fleet::locate(&mut fleet, w.ledger.as_ref(), None, NOW, max_age).unwrap();
        serde_json::to_value(chipledger_domain::fleet::rows(&fleet.candidates)).unwrap()
    };
    let same = |got: &serde_json::Value, want: &serde_json::Value| {
        for g in want.as_array().unwrap() {
            let uuid = g["uuid"].as_str().unwrap();
            for field in ["location", "location_reason", "anomalies"] {
                assert_eq!(gpu(got, uuid)[field], g[field], "{uuid} {field}");
            }
        }
    };
    same(&get(&app), &expected(&w));

    // The far host is licensed to Singapore, a new landmark in Kassel contradicts `sin-1`
    // for it, and the Kassel host gets a second proof: the cached facts are brought up to
    // date from the new entries only.
    w.counter += 1;
    let a = Acquisition {
        format_version: FORMAT_VERSION,
        counter: w.counter,
        recorded_at: NOW,
        serials: vec!["1650000000022".into()],
        sku: Some("H100-SXM5-80GB".into()),
        supplier: "S".into(),
        invoice_reference: "I".into(),
        invoice_digest: None,
        shipped_on: time::macros::date!(2024 - 02 - 01),
        ship_from: Country::parse("US").unwrap(),
        ship_to: Country::parse("SG").unwrap(),
        end_user: "E".into(),
        licence: None,
        note: String::new(),
    };
    w.ledger.append(&[sign_record(&a, &w.admin).unwrap().to_json()]).unwrap();
    enroll_at(&mut w, &key(33), Role::Landmark, "kas-2", Some((KAS, "Another Org", Some("DE"))));
    prove(&mut w, &key(33), "kas-2", KAS, (&key(22), "hgx-far-02"), 300_000, NOW - time::Duration::minutes(1));
    prove(&mut w, &key(33), "kas-2", KAS, (&key(21), "hgx-kas-01"), 250_000, NOW - time::Duration::minutes(1));
    let updated = get(&app);
    let fresh = get(&chipledger_web::router(w.ledger.clone(), chipledger_web::ServerConfig::default()));
    assert_eq!(updated, fresh);
    same(&updated, &expected(&w));
    let far = gpu(&updated, FAR_UUID);
    assert_eq!(far["location"], "unproven (host-key)");
    assert!(far["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a.as_str().unwrap().starts_with("location proofs disagree")));
    let html = check(&w, &format!("/gpus/{FAR_UUID}"));
    assert!(html.contains("id=\"licensed-to\">SG (Singapore)"), "{html}");
    assert!(html.contains("id=\"no-region\""), "{html}");

    // A proof alone (the sites are kept), then the Kassel host's agent revoked (its declared
    // site goes with it, and so do its answers: only the host's current key's count).
    prove(
        &mut w,
        &key(31),
        "kas-1",
        KAS_LANDMARK,
        (&key(21), "hgx-kas-01"),
        150_000,
        NOW - time::Duration::seconds(30),
    );
    let updated = get(&app);
    same(&updated, &expected(&w));
    assert!(gpu(&updated, KAS_UUID)["location_reason"].as_str().unwrap().contains("within 22 km"), "{updated}");
    w.counter += 1;
    let r = KeyRevocation {
        format_version: FORMAT_VERSION,
        counter: w.counter,
        issued_at: NOW,
        key_id: key(21).key_id(),
        reason: "moved".into(),
    };
    w.ledger.append(&[sign_record(&r, &w.admin).unwrap().to_json()]).unwrap();
    let updated = get(&app);
    same(&updated, &expected(&w));
    assert_eq!(gpu(&updated, KAS_UUID)["location"], "unproven", "{updated}");
    assert_eq!(gpu(&updated, KAS_UUID)["location_reason"], "no location proof", "{updated}");
}

/// A clock a test moves.
struct Moving(std::sync::Mutex<OffsetDateTime>);

impl Clock for Moving {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

#[test]
fn a_verdict_turns_unproven_once_its_proofs_leave_the_window_on_the_same_server() {
    let (w, _) = located_world();
    let clock = Arc::new(Moving(std::sync::Mutex::new(NOW)));
    let ledger = Arc::new(Ledger::open(w.dir.path(), LedgerConfig::default(), clock.clone()).unwrap());
    let app = chipledger_web::router(ledger.clone(), chipledger_web::ServerConfig::default());
    let get = |uri: &str| send_to(app.clone(), As::Bearer(&w.auditor_token), "GET", uri, "text/plain", vec![]);
    assert_eq!(gpu(&get("/fleet.json").json(), KAS_UUID)["location"], "consistent (host-key)");
    // 23 h after `kas-1` measured it still counts; an hour later it does not (nor the stale one).
    *clock.0.lock().unwrap() = NOW + time::Duration::hours(22);
    assert_eq!(gpu(&get("/fleet.json").json(), KAS_UUID)["location"], "consistent (host-key)");
    *clock.0.lock().unwrap() = NOW + time::Duration::hours(23) + time::Duration::seconds(1);
    let rows = get("/fleet.json").json();
    assert_eq!(gpu(&rows, KAS_UUID)["location"], "unproven", "{rows}");
    assert_eq!(gpu(&rows, KAS_UUID)["location_reason"], "none of the 2 location proofs is from the last 86400 s");
    let html = get(&format!("/gpus/{KAS_UUID}")).text();
    assert!(html.contains("id=\"location-verdict\">unproven<") && !html.contains("<svg id=\"location-map\""), "{html}");
    // A day after they were appended, the proofs are out of the window the dashboard reads.
    *clock.0.lock().unwrap() = NOW + time::Duration::days(1) + time::Duration::seconds(1);
    assert_eq!(gpu(&get("/fleet.json").json(), KAS_UUID)["location_reason"], "no location proof");
}
