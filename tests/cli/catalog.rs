use crate::{fails, ok};

#[test]
fn catalog_lists_every_sku_in_each_format() {
    let table = ok(&["catalog"]);
    assert!(table.stdout.contains("H800-SXM5-80GB") && table.stdout.contains("0x2324"));
    let json: serde_json::Value = serde_json::from_str(&ok(&["catalog", "--format", "json"]).stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 38);
    assert!(json[0]["sources"].as_array().is_some_and(|s| !s.is_empty()));
    let csv = ok(&["catalog", "--format", "csv"]).stdout;
    assert_eq!(csv.lines().count(), 39);
    assert!(csv.starts_with("sku,marketing_name,pci_device_ids"));
}

#[test]
fn classify_shows_every_rule_version_for_a_sku() {
    let r = ok(&["classify", "--sku", "h800-sxm5-80gb"]);
    for part in [
        "H800-SXM5-80GB",
        "Oct 2022",
        "not 3A090",
        "3A090.a.1",
        "88 FR 73458",
        "designed or marketed for datacenters: yes",
    ] {
        assert!(r.stdout.contains(part), "lacks {part:?}:\n{}", r.stdout);
    }
}

#[test]
fn classify_by_pci_id_with_a_shipment_gives_the_verdict() {
    let r = ok(&["classify", "--pci", "0x2324:0x17a6", "--shipped", "2024-02-01", "--to", "CN", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["sku"]["sku"], "H800-SXM5-80GB");
    assert_eq!(v["verdict"]["verdict"], "licence-required-none-recorded");
    assert_eq!(v["classifications"].as_array().unwrap().len(), 5);
    let lawful = ok(&["classify", "--sku", "H800-SXM5-80GB", "--shipped", "2023-03-15", "--to", "cn"]);
    assert!(lawful.stdout.contains("verdict: lawful\n"), "{}", lawful.stdout);
    let licensed = ok(&["classify", "--sku", "H20", "--shipped", "2025-06-01", "--to", "HK", "--licence", "D765432"]);
    assert!(licensed.stdout.contains("verdict: lawful-under-licence"), "{}", licensed.stdout);
    let unknown_sub = ok(&["classify", "--pci", "0x2324:0x1234"]);
    assert!(unknown_sub.stdout.contains("subsystem 0x123410de is not listed"), "{}", unknown_sub.stdout);
}

#[test]
fn classify_errors_say_what_is_wrong() {
    fails(&["classify", "--pci", "0x2328"], "0x2328 is not in the catalog");
    fails(&["classify", "--pci", "H800"], "is not of the form 0xDEVICE");
    fails(&["classify", "--sku", "H900"], "no catalog SKU named \"H900\"");
    fails(
        &["classify", "--sku", "H20", "--shipped", "2025-13-01", "--to", "CN"],
        "is not a date of the form YYYY-MM-DD",
    );
    fails(
        &["classify", "--sku", "H20", "--shipped", "2025-01-01", "--to", "ZZ"],
        "\"ZZ\" is not an ISO 3166-1 alpha-2 country code",
    );
    fails(&["classify", "--sku", "H20", "--shipped", "2025-01-01"], "--to");
    fails(&["classify"], "--sku");
}
