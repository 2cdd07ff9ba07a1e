//! The dashboard through the router: fleet filter and exports, a GPU's page, runs, log status,
//! metrics and the evidence bundle.

use axum::http::StatusCode;
use chipledger_domain::keys::SigningKey;
use chipledger_domain::records::Role;

use crate::{call, world, As, H800_UUID};

#[test]
fn the_fleet_filters_to_h800_and_exports_exactly_those_rows() {
    let w = world();
    let t = As::Bearer(&w.auditor_token);
    let page = call(&w, t, "GET", "/?sku=H800-SXM5-80GB", vec![]);
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    let rows = html.matches("class=\"sku\">H800-SXM5-80GB<").count();
    assert!(rows > 0 && !html.contains("class=\"sku\">A100-SXM4-80GB<"), "{html}");
    assert!(html.contains("<svg role=\"img\" aria-label=\"GPUs by SKU\""));
    // No framing (clickjacking), no sniffing, no script.
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert!(page.headers["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));
    assert!(html.contains(H800_UUID));

    let csv = call(&w, t, "GET", "/fleet.csv?sku=H800-SXM5-80GB", vec![]);
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers["content-disposition"].to_str().unwrap().starts_with("attachment;"));
    let mut r = csv::Reader::from_reader(&csv.body[..]);
    let records: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), rows);
    assert!(records.iter().all(|rec| &rec[1] == "H800-SXM5-80GB" && &rec[0] == "hgx-h800-01"));
    let json = call(&w, t, "GET", "/fleet.json?sku=H800-SXM5-80GB", vec![]).json();
    assert_eq!(json.as_array().unwrap().len(), rows);

    // Search by serial, UUID fragment or host; sort descending.
    let by_host = call(&w, t, "GET", "/fleet.json?q=DGX-A100", vec![]).json();
    assert!(by_host.as_array().unwrap().iter().all(|g| g["host"] == "dgx-a100-01"));
    let sorted = call(&w, t, "GET", "/fleet.json?sort=uuid&dir=desc", vec![]).json();
    let uuids: Vec<&str> = sorted.as_array().unwrap().iter().map(|g| g["uuid"].as_str().unwrap()).collect();
    assert!(uuids.windows(2).all(|p| p[0] >= p[1]));
}

#[test]
fn csv_cells_cannot_become_formulas() {
    let mut w = world();
    let key = SigningKey::from_seed(&[11; 32]);
    let host = "=HYPERLINK(\"http://evil.example\",\"x\")";
    // An agent key speaks only for its own host: this one was enrolled for that odd name.
    w.enroll(&key, Role::Agent, Some(host));
    let h100 = std::fs::read_to_string(format!(
        "{}/../agent/tests/data/nvidia-smi/h100-sxm5-80gb-utkuozdemir-nvidia_gpu_exporter.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .replace("GPU-00000000-0000-0000-0000-000000000000", "GPU-9d2f31c4-5b1e-4c7a-8e60-2b7f0c1d4a11");
    w.attest(key, host, &[("h100.txt", h100)]);
    let csv = call(&w, As::Bearer(&w.auditor_token), "GET", "/fleet.csv?q=hyperlink", vec![]);
    let mut r = csv::Reader::from_reader(&csv.body[..]);
    let rec = r.records().next().unwrap().unwrap();
    assert_eq!(&rec[0], &format!("'{host}"));
    // And the page escapes it.
    let html = call(&w, As::Bearer(&w.auditor_token), "GET", "/?q=hyperlink", vec![]).text();
    assert!(html.contains("=HYPERLINK(&#34;http://evil.example&#34;"), "{html}");
}

#[test]
fn a_gpu_page_shows_every_record_the_verdict_and_the_classification() {
    let w = world();
    let page = call(&w, As::Bearer(&w.auditor_token), "GET", &format!("/gpus/{H800_UUID}"), vec![]);
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let html = page.text();
    assert!(html.contains("id=\"gpu-sku\">H800-SXM5-80GB<"), "{html}");
    assert!(html.contains("attested on hgx-h800-01"), "{html}");
    assert!(html.contains("id=\"verdict\">no-acquisition-record<"), "{html}");
    assert!(html.contains("Export classification under each US rule"));
    assert!(html.contains("/bundle?gpu="));
    let a = call(&w, As::Bearer(&w.auditor_token), "GET", "/gpus/GPU-00000000-0000-0000-0000-000000000001", vec![]);
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = call(&w, As::Bearer(&w.auditor_token), "GET", "/gpus/nonsense", vec![]);
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[test]
fn the_log_page_runs_page_and_bundle_answer() {
    let w = world();
    let t = As::Bearer(&w.auditor_token);
    let html = call(&w, t, "GET", "/log", vec![]).text();
    assert!(html.contains(&format!("id=\"log-size\">{} entries", w.ledger.size())), "{html}");
    assert!(html.contains("revoked at entry"), "{html}");
    let runs = call(&w, t, "GET", "/runs", vec![]);
    assert_eq!(runs.status, StatusCode::OK);
    assert_eq!(call(&w, t, "GET", "/runs/3", vec![]).status, StatusCode::NOT_FOUND);
    let bundle = call(&w, t, "GET", &format!("/bundle?gpu={H800_UUID}"), vec![]);
    assert_eq!(bundle.status, StatusCode::OK);
    let report = chipledger_ledger::bundle::verify_bundle(&bundle.body, Some(w.ledger.verifier_key())).unwrap();
    assert!(report.entries >= 2, "{report:?}");
    // The verifier judges the bundle's GPU itself, with the dashboard's columns.
    let gpu = report.gpus.iter().find(|g| g.uuid == H800_UUID).expect("the H800 the bundle is about");
    assert_eq!(
        (gpu.sku.as_str(), gpu.evidence.as_str(), gpu.class_2023.as_str()),
        ("H800-SXM5-80GB", "imported", "3A090.a.1")
    );
}

#[test]
fn metrics_put_identity_on_one_info_series_per_gpu() {
    let w = world();
    let a = call(&w, As::Bearer(&w.auditor_token), "GET", "/metrics", vec![]);
    assert_eq!(a.status, StatusCode::OK);
    let text = a.text();
    let gpus = w.ledger.inventory(chipledger_domain::log::AsOf::Latest).unwrap().len();
    assert_eq!(text.lines().filter(|l| l.starts_with("chipledger_gpu_info{")).count(), gpus);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("chipledger_gpu_last_attested_timestamp_seconds{uuid=")).count(),
        gpus
    );
    assert!(text.contains(&format!("chipledger_log_size {}", w.ledger.size())));
    assert!(text
        .contains(&format!("chipledger_gpu_info{{uuid=\"{H800_UUID}\",host=\"hgx-h800-01\",sku=\"H800-SXM5-80GB\"")));
    // Every sample line is `name{labels} value` or `name value`.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let value = l.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{l}");
    }
}

#[test]
fn the_fleet_updated_from_new_entries_equals_the_fleet_read_afresh() {
    use chipledger_domain::records::{sign_record, Acquisition, FORMAT_VERSION};
    let mut w = world();
    let app = chipledger_web::router(w.ledger.clone(), chipledger_web::ServerConfig::default());
    let token = w.auditor_token.clone();
    let get = |app: &axum::Router, uri: &str| {
        crate::send_to(app.clone(), As::Bearer(&token), "GET", uri, "text/plain", vec![]).json()
    };
    let before = get(&app, "/fleet.json");
    assert!(before.as_array().unwrap().iter().any(|g| g["verdict"] == "no-acquisition-record"));

    // A new host, and an acquisition for the H800's serial shipped after the 2023 rule.
    let key = SigningKey::from_seed(&[12; 32]);
    w.enroll(&key, Role::Agent, Some("hgx-h100-01"));
    let h100 = std::fs::read_to_string(format!(
        "{}/../agent/tests/data/nvidia-smi/h100-sxm5-80gb-utkuozdemir-nvidia_gpu_exporter.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .replace("GPU-00000000-0000-0000-0000-000000000000", "GPU-9d2f31c4-5b1e-4c7a-8e60-2b7f0c1d4a11");
    w.attest(key, "hgx-h100-01", &[("h100.txt", h100)]);
    w.counter += 1;
    let a = Acquisition {
        format_version: FORMAT_VERSION,
        counter: w.counter,
        recorded_at: crate::NOW,
        serials: vec!["1651323018291".into()],
        sku: Some("H800-SXM5-80GB".into()),
        supplier: "S".into(),
        invoice_reference: "I".into(),
        invoice_digest: None,
        shipped_on: time::macros::date!(2024 - 02 - 01),
        ship_from: chipledger_domain::country::Country::parse("SG").unwrap(),
        ship_to: chipledger_domain::country::Country::parse("CN").unwrap(),
        end_user: "E".into(),
        licence: None,
        note: String::new(),
    };
    w.ledger.append(&[sign_record(&a, &w.admin).unwrap().to_json()]).unwrap();

    let updated = get(&app, "/fleet.json");
    let fresh = get(&chipledger_web::router(w.ledger.clone(), chipledger_web::ServerConfig::default()), "/fleet.json");
    assert_eq!(updated, fresh);
    assert_eq!(updated.as_array().unwrap().len(), before.as_array().unwrap().len() + 1);
    let h800 = updated.as_array().unwrap().iter().find(|g| g["uuid"] == H800_UUID).unwrap();
    assert_eq!(h800["verdict"], "licence-required-none-recorded");
}
