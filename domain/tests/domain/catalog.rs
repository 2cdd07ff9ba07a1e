use chipledger_domain::catalog::{Catalog, Datacenter, PciQuery};
use chipledger_domain::Error;

#[test]
fn the_embedded_catalog_parses_with_all_38_skus_and_their_sources() {
    let c = Catalog::embedded().unwrap();
    assert_eq!(c.skus.len(), 38);
    for s in &c.skus {
        assert!(!s.sources.is_empty(), "{} has no source", s.sku);
        assert!(!s.pci_device_ids.is_empty(), "{}", s.sku);
        for id in &s.pci_device_ids {
            assert!(c.pci_names(*id).next().is_some(), "{} 0x{id:04x} has no pci-names row", s.sku);
        }
    }
}

#[test]
fn lookup_by_pci_id_finds_the_sku_and_its_figures() {
    let c = Catalog::embedded().unwrap();
    let h800 = c.by_pci_device(0x2324).unwrap();
    assert_eq!(h800.sku, "H800-SXM5-80GB");
    assert_eq!((h800.tpp, h800.nvlink_links, h800.nvlink_bidirectional_gbs), (Some(15831.0), Some(8), Some(400.0)));
    assert_eq!(h800.aggregate_io_gbs(), Some(528.0));
    assert_eq!(c.by_pci_device(0x20f1).unwrap().sku, "A100-PCIE-40GB");
    assert_eq!(c.by_pci_device(0x20b1).unwrap().sku, "A100-PCIE-40GB");
    assert!(c.by_pci_device(0x2328).is_none(), "H20B is only in pci.ids: unknown, not a guess");
    assert!(c.by_pci_device(0x2717).is_none(), "the RTX 4090 Laptop GPU is not the desktop 4090");
}

#[test]
fn uncertain_and_unknown_values_are_flagged() {
    let c = Catalog::embedded().unwrap();
    let h20 = c.sku("h20").unwrap();
    assert!(h20.is_uncertain("tpp") && h20.is_uncertain("memory_gib"));
    assert!(!h20.is_uncertain("memory_bandwidth_gbs"));
    let nvl16 = c.sku("H20-NVL16").unwrap();
    assert!(nvl16.is_unknown("tpp"));
    let l4 = c.sku("L4").unwrap();
    assert_eq!(l4.uncertain, vec!["die_area_mm2"]);
    let a800 = c.sku("A800-40GB-ACTIVE").unwrap();
    assert_eq!(a800.unknown, vec!["memory_bandwidth_gbs", "launch_date"]);
}

#[test]
fn datacenter_defaults_mark_consumer_and_workstation_parts() {
    let c = Catalog::embedded().unwrap();
    assert_eq!(c.sku("RTX-4090").unwrap().datacenter_default(), Datacenter::No);
    assert_eq!(c.sku("RTX-5090D-V2").unwrap().datacenter_default(), Datacenter::No);
    assert_eq!(c.sku("A800-40GB-ACTIVE").unwrap().datacenter_default(), Datacenter::Unknown);
    let consumer: Vec<&str> =
        c.skus.iter().filter(|s| s.datacenter_default() == Datacenter::No).map(|s| s.sku.as_str()).collect();
    assert_eq!(consumer, ["RTX-4090", "RTX-4090D", "RTX-5090", "RTX-5090D", "RTX-5090D-V2"]);
}

#[test]
fn pci_queries_accept_the_usual_spellings_and_refuse_the_rest() {
    assert_eq!(PciQuery::parse("0x2324").unwrap(), PciQuery { device_id: 0x2324, subsystem_id: None });
    assert_eq!(
        PciQuery::parse("0x2324:0x17a6").unwrap(),
        PciQuery { device_id: 0x2324, subsystem_id: Some(0x17a6_10de) }
    );
    assert_eq!(
        PciQuery::parse("0x232410DE:0x17A610DE").unwrap(),
        PciQuery { device_id: 0x2324, subsystem_id: Some(0x17a6_10de) }
    );
    for bad in ["", "0x", "H800", "0x12345678", "0x2324:zz", "0x123456789"] {
        assert!(matches!(PciQuery::parse(bad), Err(Error::PciId { .. })), "{bad}");
    }
    assert!(matches!(Catalog::embedded().unwrap().sku("H900"), Err(Error::UnknownSku { .. })));
}
