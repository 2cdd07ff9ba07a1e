//! The import probe against every shared dump, field by field, and against edited copies for
//! the layouts no real copy is at hand for.

use std::collections::BTreeMap;

use chipledger_agent::smi::parse_dumps;
use chipledger_agent::Error;
use chipledger_domain::catalog::Catalog;
use chipledger_domain::fingerprint::{GpuFacts, GpuUuid, NvLink, Observations};
use chipledger_domain::identify::identify;
use chipledger_domain::records::{DriverFacts, ProbeSource};

use super::*;

const MIB: u64 = 1024 * 1024;

fn absent(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

const NOT_PRINTED: &str = "nvidia-smi -q does not print it";
const NO_NVLINK: &str = "nvidia-smi -q does not list NVLinks; add `nvidia-smi nvlink -s` output";

#[test]
fn the_h800_text_dump_parses_to_exactly_its_facts() {
    let report = probe_files(&[H800_TXT]);
    assert_eq!(report.source, ProbeSource::NvidiaSmiText);
    assert_eq!(
        report.driver,
        DriverFacts {
            driver_version: Some("525.105.17".into()),
            nvml_version: None,
            cuda_driver_version: Some("12.0".into())
        }
    );
    let expected = GpuFacts {
        uuid: Some(GpuUuid::parse("GPU-34bf77d1-c686-6821-79a8-32d326c5039c").unwrap()),
        serial: Some("1651323018291".into()),
        pdi: None,
        name: Some("NVIDIA H800".into()),
        brand: Some("NVIDIA".into()),
        pci_device_id: Some(0x2324),
        pci_subsystem_id: Some(0x17A6_10DE),
        pci_bus_id: Some("00000000:18:00.0".into()),
        board_part_number: Some("692-2G520-0205-000".into()),
        gpu_part_number: Some("2324-865-A1".into()),
        vbios_version: Some("96.00.51.00.0E".into()),
        inforom_image_version: Some("G520.0205.00.02".into()),
        inforom_oem_version: Some("2.1".into()),
        inforom_ecc_version: Some("7.16".into()),
        inforom_power_version: None,
        architecture: Some("Hopper".into()),
        compute_capability: None,
        memory_total_bytes: Some(81559 * MIB),
        memory_bus_width_bits: None,
        cuda_cores: None,
        sm_count: None,
        max_sm_clock_mhz: Some(1980),
        max_memory_clock_mhz: Some(2619),
        power_limit_max_mw: Some(700_000),
        power_limit_min_mw: Some(200_000),
        max_pcie_link_gen: Some(5),
        max_pcie_link_width: Some(16),
        module_id: Some(5),
        chassis_serial: None,
        slot_number: None,
        nvlinks: None,
        mig_mode_enabled: Some(false),
        ueid: None,
        observations: Observations {
            temperature_c: Some(35.0),
            utilization_percent: Some(0.0),
            power_draw_watts: Some(74.71),
            sm_clock_mhz: Some(345),
            memory_used_bytes: Some(0),
            ecc_enabled: Some(false),
            ecc_aggregate_uncorrectable: None,
            retired_or_remapped_rows: Some(0),
        },
        absent: absent(&[
            ("chassis_serial", "not in this dump's layout"),
            ("compute_capability", NOT_PRINTED),
            ("cuda_cores", NOT_PRINTED),
            ("inforom_power_version", "N/A (nvidia-smi)"),
            ("memory_bus_width_bits", NOT_PRINTED),
            ("nvlinks", NO_NVLINK),
            ("pdi", "not in this dump's layout"),
            ("slot_number", "not in this dump's layout"),
            ("sm_count", NOT_PRINTED),
        ]),
    };
    assert_eq!(report.gpus, vec![expected]);
}

#[test]
fn the_a100_xml_dump_parses_to_exactly_its_facts_despite_its_attached_count() {
    // The dump says <attached_gpus>4</attached_gpus> but holds one <gpu>: trust the elements.
    let report = probe_files(&[A100_XML]);
    assert_eq!(report.source, ProbeSource::NvidiaSmiXml);
    assert_eq!(
        report.driver,
        DriverFacts {
            driver_version: Some("535.54.03".into()),
            nvml_version: None,
            cuda_driver_version: Some("12.2".into())
        }
    );
    let expected = GpuFacts {
        uuid: Some(GpuUuid::parse("GPU-513536b6-7d19-9063-b049-1e69664bb298").unwrap()),
        serial: Some("1650522003820".into()),
        name: Some("NVIDIA A100-SXM4-80GB".into()),
        brand: Some("NVIDIA".into()),
        pci_device_id: Some(0x20B2),
        pci_subsystem_id: Some(0x147F_10DE),
        pci_bus_id: Some("00000000:01:00.0".into()),
        board_part_number: Some("692-2G506-0212-002".into()),
        gpu_part_number: Some("20B2-895-A1".into()),
        vbios_version: Some("92.00.36.00.02".into()),
        inforom_image_version: Some("G506.0212.00.01".into()),
        inforom_oem_version: Some("2.0".into()),
        inforom_ecc_version: Some("6.16".into()),
        architecture: Some("Ampere".into()),
        memory_total_bytes: Some(81920 * MIB),
        max_sm_clock_mhz: Some(1410),
        max_memory_clock_mhz: Some(1593),
        power_limit_max_mw: Some(500_000),
        power_limit_min_mw: Some(100_000),
        max_pcie_link_gen: Some(4),
        max_pcie_link_width: Some(16),
        module_id: Some(4),
        mig_mode_enabled: Some(true),
        ueid: None,
        observations: Observations {
            temperature_c: Some(27.0),
            utilization_percent: None, // N/A with MIG on
            power_draw_watts: Some(67.03),
            sm_clock_mhz: Some(1275),
            memory_used_bytes: Some(50 * MIB),
            ecc_enabled: Some(true),
            ecc_aggregate_uncorrectable: Some(0),
            retired_or_remapped_rows: None,
        },
        absent: absent(&[
            ("chassis_serial", "not in this dump's layout"),
            ("compute_capability", NOT_PRINTED),
            ("cuda_cores", NOT_PRINTED),
            ("inforom_power_version", "N/A (nvidia-smi)"),
            ("memory_bus_width_bits", NOT_PRINTED),
            ("nvlinks", NO_NVLINK),
            ("pdi", "not in this dump's layout"),
            ("slot_number", "not in this dump's layout"),
            ("sm_count", NOT_PRINTED),
        ]),
        ..GpuFacts::default()
    };
    assert_eq!(report.gpus, vec![expected]);
}

#[test]
fn the_h100_590_dump_with_its_nvlink_status_parses_to_exactly_its_facts() {
    let report = probe_files(&[H100_TXT, H100_NVLINK]);
    assert_eq!(report.source, ProbeSource::NvidiaSmiText);
    assert_eq!(
        report.driver,
        DriverFacts {
            driver_version: Some("590.48.01".into()),
            nvml_version: None,
            cuda_driver_version: Some("13.1".into())
        }
    );
    let links: Vec<NvLink> = (0..18)
        .map(|index| NvLink { index, active: true, version: None, speed_gbs: Some(26.562), remote_bus_id: None })
        .collect();
    let expected = GpuFacts {
        // The capture tool masked UUID and serial to zeros, but not the PDI.
        uuid: Some(GpuUuid::parse("GPU-00000000-0000-0000-0000-000000000000").unwrap()),
        serial: Some("0000000000000".into()),
        pdi: Some("0xd52bae2e458244e2".into()),
        name: Some("NVIDIA H100 80GB HBM3".into()),
        brand: Some("NVIDIA".into()),
        pci_device_id: Some(0x2330),
        pci_subsystem_id: Some(0x16C1_10DE),
        pci_bus_id: Some("00000000:00:09.0".into()),
        board_part_number: Some("692-2G520-0200-000".into()),
        gpu_part_number: Some("2330-885-A1".into()),
        vbios_version: Some("96.00.A5.00.01".into()),
        inforom_image_version: Some("G520.0200.00.05".into()),
        inforom_oem_version: Some("2.1".into()),
        inforom_ecc_version: Some("7.16".into()),
        architecture: Some("Hopper".into()),
        memory_total_bytes: Some(81559 * MIB),
        max_sm_clock_mhz: Some(1980),
        max_memory_clock_mhz: Some(2619),
        power_limit_max_mw: Some(700_000),
        power_limit_min_mw: Some(200_000),
        max_pcie_link_gen: Some(5),
        max_pcie_link_width: Some(16),
        module_id: Some(7), // under Platform Info in this layout
        nvlinks: Some(links),
        mig_mode_enabled: Some(false),
        ueid: None,
        observations: Observations {
            temperature_c: Some(41.0),
            utilization_percent: Some(0.0),
            power_draw_watts: Some(69.62),
            sm_clock_mhz: Some(345),
            memory_used_bytes: Some(0),
            ecc_enabled: Some(true),
            ecc_aggregate_uncorrectable: Some(0),
            retired_or_remapped_rows: Some(0),
        },
        absent: absent(&[
            ("chassis_serial", "N/A (nvidia-smi)"),
            ("compute_capability", NOT_PRINTED),
            ("cuda_cores", NOT_PRINTED),
            ("inforom_power_version", "N/A (nvidia-smi)"),
            ("memory_bus_width_bits", NOT_PRINTED),
            ("slot_number", "N/A (nvidia-smi)"),
            ("sm_count", NOT_PRINTED),
        ]),
        ..GpuFacts::default()
    };
    assert_eq!(report.gpus, vec![expected]);
}

#[test]
fn every_shared_dump_identifies_its_sku_without_a_danger_anomaly() {
    let catalog = Catalog::embedded().unwrap();
    for (files, sku) in [
        (vec![H800_TXT], "H800-SXM5-80GB"),
        (vec![A100_XML], "A100-SXM4-80GB"),
        (vec![H100_TXT, H100_NVLINK], "H100-SXM5-80GB"),
    ] {
        let report = probe_files(&files);
        let id = identify(catalog, &report.gpus[0]);
        assert_eq!(id.sku.as_deref(), Some(sku), "{files:?}: {id:?}");
        assert!(
            id.worst() < Some(chipledger_domain::identify::Severity::Warning),
            "{files:?} should identify cleanly: {:?}",
            id.anomalies
        );
    }
}

/// Identity edits: (what, from, to) replaced once in the dump text.
const H800_IDENTITY_EDITS: &[(&str, &str, &str)] = &[
    ("serial", "1651323018291", "1651323018292"),
    ("uuid", "GPU-34bf77d1-c686-6821-79a8-32d326c5039c", "GPU-34bf77d1-c686-6821-79a8-32d326c5039d"),
    ("vbios", "96.00.51.00.0E", "96.00.74.00.0F"),
    ("board part number", "692-2G520-0205-000", "692-2G520-0200-000"),
    ("gpu part number", "2324-865-A1", "2330-885-A1"),
    ("device id", "0x232410DE", "0x233010DE"),
    ("subsystem", "0x17A610DE", "0x16C110DE"),
    ("inforom image", "G520.0205.00.02", "G520.0200.00.05"),
    ("inforom ecc object", "7.16", "7.17"),
    ("memory", "Total                             : 81559 MiB", "Total                             : 95830 MiB"),
    ("max power", "Max Power Limit                   : 700.00 W", "Max Power Limit                   : 400.00 W"),
    ("module id", "Module ID                             : 5", "Module ID                             : 6"),
];

#[test]
fn fingerprint_digests_are_stable_across_reparses_and_change_with_any_identity_field() {
    let text = read(H800_TXT);
    let digest = |t: &str| parse(&[("h800.txt", t)]).gpus[0].fingerprint().digest();
    let base = digest(&text);
    assert_eq!(base, digest(&text), "two parses of one dump");
    for (what, from, to) in H800_IDENTITY_EDITS {
        assert!(text.contains(from), "{what}: {from:?} not in the dump");
        let edited = text.replacen(from, to, 1);
        assert_ne!(digest(&edited), base, "changing the {what} must change the fingerprint");
    }
    // Volatile readings are observations, not identity.
    for (from, to) in [
        ("GPU Current Temp                  : 35 C", "GPU Current Temp                  : 71 C"),
        ("Power Draw                        : 74.71 W", "Power Draw                        : 512.30 W"),
        ("Gpu                               : 0 %", "Gpu                               : 97 %"),
        (
            "Timestamp                                 : Fri Jun 30 17:20:02 2023",
            "Timestamp                                 : Sat Jul  1 09:00:00 2023",
        ),
    ] {
        assert!(text.contains(from), "{from:?} not in the dump");
        assert_eq!(digest(&text.replacen(from, to, 1)), base, "{from:?} is volatile");
    }
    // The XML and the 590 text dumps too.
    for files in [vec![A100_XML], vec![H100_TXT, H100_NVLINK]] {
        let a = probe_files(&files).identity_set();
        let b = probe_files(&files).identity_set();
        assert_eq!(a, b, "{files:?}");
    }
    let xml = read(A100_XML);
    let xdigest = |t: &str| parse(&[("a100.xml", t)]).gpus[0].fingerprint().digest();
    let xbase = xdigest(&xml);
    for (from, to) in [
        ("<serial>1650522003820</serial>", "<serial>1650522003821</serial>"),
        ("<vbios_version>92.00.36.00.02</vbios_version>", "<vbios_version>92.00.36.00.03</vbios_version>"),
        ("<pci_device_id>20B210DE</pci_device_id>", "<pci_device_id>20F310DE</pci_device_id>"),
    ] {
        assert_ne!(xdigest(&xml.replacen(from, to, 1)), xbase, "{from}");
    }
    assert_eq!(xdigest(&xml.replacen("<gpu_temp>27 C</gpu_temp>", "<gpu_temp>80 C</gpu_temp>", 1)), xbase);
}

#[test]
fn a_dump_of_eight_gpus_gives_eight_gpus_in_order() {
    let report = parse(&[("hgx.txt", &eight_gpu_text(8))]);
    assert_eq!(report.gpus.len(), 8);
    for (i, g) in report.gpus.iter().enumerate() {
        assert_eq!(g.uuid.as_ref(), Some(&uuid(i as u32)));
        assert_eq!(g.module_id, Some(i as u32 + 1));
        assert_eq!(g.pci_bus_id.as_deref(), Some(format!("00000000:{:02X}:00.0", 0x18 + 0x10 * i).as_str()));
    }
    let digests: std::collections::BTreeSet<_> = report.gpus.iter().map(|g| g.fingerprint().digest()).collect();
    assert_eq!(digests.len(), 8);
}

#[test]
fn older_and_newer_xml_layouts_read_the_same_identity() {
    let xml = read(A100_XML);
    let base = parse(&[("a100.xml", &xml)]).gpus.remove(0);
    // An older DTD: power limits under <power_readings>, no GPU part number, no module id.
    let old = xml
        .replace("<gpu_power_readings>", "<power_readings>")
        .replace("</gpu_power_readings>", "</power_readings>")
        .replace("<gpu_part_number>20B2-895-A1</gpu_part_number>", "")
        .replace("<gpu_module_id>4</gpu_module_id>", "");
    let old = parse(&[("old.xml", &old)]).gpus.remove(0);
    assert_eq!(old.power_limit_max_mw, base.power_limit_max_mw);
    assert_eq!(old.gpu_part_number, None);
    assert_eq!(old.absent["gpu_part_number"], "not in this dump's layout");
    assert_eq!(old.module_id, None);
    // A 590-series DTD: GPU PDI and a <platform_info> block with the module id.
    let new = xml.replace(
        "<gpu_module_id>4</gpu_module_id>",
        "<gpu_pdi>0xD52BAE2E458244E2</gpu_pdi><platform_info><chassis_serial_number>N/A</chassis_serial_number>\
         <slot_number>3</slot_number><module_id>4</module_id></platform_info>",
    );
    let new = parse(&[("new.xml", &new)]).gpus.remove(0);
    assert_eq!(new.pdi.as_deref(), Some("0xd52bae2e458244e2"));
    assert_eq!(new.module_id, Some(4));
    assert_eq!(new.slot_number, Some(3));
    assert_eq!(new.chassis_serial, None);
    assert_eq!(new.absent["chassis_serial"], "N/A (nvidia-smi)");
}

#[test]
fn bracketed_and_unsupported_values_are_absent_with_their_reason() {
    let text = read(H800_TXT)
        .replacen(
            "Serial Number                         : 1651323018291",
            "Serial Number                         : [N/A]",
            1,
        )
        .replacen(
            "VBIOS Version                         : 96.00.51.00.0E",
            "VBIOS Version                         : Not Supported",
            1,
        )
        .replacen(
            "Board Part Number                     : 692-2G520-0205-000",
            "Board Part Number                     : [Insufficient Permissions]",
            1,
        );
    let g = parse(&[("h800.txt", &text)]).gpus.remove(0);
    assert_eq!((g.serial.as_deref(), g.vbios_version.as_deref(), g.board_part_number.as_deref()), (None, None, None));
    assert_eq!(g.absent["serial"], "[N/A] (nvidia-smi)");
    assert_eq!(g.absent["vbios_version"], "Not Supported (nvidia-smi)");
    assert_eq!(g.absent["board_part_number"], "[Insufficient Permissions] (nvidia-smi)");
}

#[test]
fn mig_device_sections_and_unknown_sections_are_tolerated() {
    let text = read(H100_TXT).replacen(
        "    Accounting Mode                                    : Disabled\n",
        "    MIG Devices\n        MIG 1g.10gb     Device              0\n            MIG Dev ID              : 0\n\
         \x20           FB Memory Usage\n                Total               : 9856 MiB\n    Some Future Section\n\
         \x20       Total                                          : 12 widgets\n    Accounting Mode                                    : Disabled\n",
        1,
    );
    let edited = parse(&[("h100.txt", &text)]).gpus.remove(0);
    let base = probe_files(&[H100_TXT]).gpus.remove(0);
    assert_eq!(edited, base, "MIG devices and unknown sections change no fact of the GPU");
}

#[track_caller]
fn refused(files: &[(&str, &str)], needle: &str) -> Error {
    let err = parse_dumps(files).unwrap_err();
    assert!(err.to_string().contains(needle), "expected {needle:?} in: {err}");
    err
}

#[test]
fn bad_dumps_are_refused_with_the_file_line_and_reason() {
    let text = read(H800_TXT);
    let err = refused(&[("h800.txt", &text.replacen("0x232410DE", "0xZZ", 1))], "pci_device_id");
    let line = text.lines().position(|l| l.contains("0x232410DE")).unwrap() as u64 + 1;
    assert!(matches!(err, Error::Dump { line: l, .. } if l == line), "{err:?}");
    refused(&[("h800.txt", &text.replacen("GPU-34bf77d1-c686-6821-79a8-32d326c5039c", "GPU-nope", 1))], "GPU UUID");
    refused(&[("h800.txt", &text.replacen("81559 MiB", "lots", 1))], "memory_total_bytes");
    let xml = read(A100_XML);
    refused(&[("a100.xml", &xml[..xml.len() / 2])], "a100.xml");
    refused(&[("q.csv", &read(H100_CSV))], "--query-gpu");
    refused(&[("empty.txt", "")], "not nvidia-smi output");
    refused(&[("a100.xml", &xml), ("h800.txt", &text)], "mixes XML and text");
    let other = read(H100_NVLINK)
        .replace("GPU-00000000-0000-0000-0000-000000000000", "GPU-11111111-0000-0000-0000-000000000000");
    refused(&[("h800.txt", &text), ("links.txt", &other)], "matches no GPU");
    refused(&[("links.txt", &read(H100_NVLINK))], "only NVLink status");
    refused(
        &[("l.txt", &read(H100_NVLINK).replacen("26.562 GB/s", "fast", 1)), ("h100.txt", &read(H100_TXT))],
        "neither a speed",
    );
    let missing = chipledger_agent::FileProbe::new(vec![data("no-such-dump.txt")]).probe().unwrap_err();
    assert!(missing.to_string().contains("no-such-dump.txt"), "{missing}");
}

#[test]
fn inactive_links_in_the_status_output_are_counted_as_inactive() {
    let links = read(H100_NVLINK).replace("Link 17: 26.562 GB/s", "Link 17: <inactive>");
    let g = parse(&[("h100.txt", &read(H100_TXT)), ("l.txt", &links)]).gpus.remove(0);
    assert_eq!(g.active_nvlinks(), Some(17));
    assert!(!g.nvlinks.unwrap()[17].active);
}

#[test]
fn an_xml_dump_of_eight_gpus_gives_eight_gpus() {
    let report = parse(&[("hgx.xml", &synth::hgx_xml(&read(A100_XML), 8))]);
    assert_eq!(report.gpus.len(), 8);
    let serials: Vec<String> = report.gpus.iter().map(|g| g.serial.clone().unwrap()).collect();
    assert_eq!(serials[7], "1650522003807");
}

#[test]
fn xml_errors_point_at_the_line_of_the_bad_element() {
    let xml = read(A100_XML);
    let line = xml.lines().position(|l| l.contains("<pci_device_id>")).unwrap() as u64 + 1;
    let err = parse_dumps(&[("a100.xml", &xml.replacen("20B210DE", "nope", 1))]).unwrap_err();
    assert!(matches!(err, Error::Dump { line: l, .. } if l == line), "{err:?}, expected line {line}");
}

/// A dump nested deeper than any nvidia-smi output is refused with a reason, not a stack
/// overflow while it is built or dropped.
#[test]
fn dumps_nested_absurdly_deep_are_refused_not_a_stack_overflow() {
    let depth = 200_000;
    let xml = format!("<nvidia_smi_log>{}{}</nvidia_smi_log>", "<a>".repeat(depth), "</a>".repeat(depth));
    refused(&[("deep.xml", &xml)], "nest deeper than 32");
    // One more space per line: 3,000 sections deep in 4.5 MB.
    let deep: String = (0..3_000).map(|i| format!("{}key {i} :\n", " ".repeat(i))).collect();
    let text = format!("{}{deep}", read(H800_TXT));
    refused(&[("deep.txt", &text)], "nest deeper than 32");
    // A real dump stays well inside the bound.
    parse_dumps(&[("h800.txt", &read(H800_TXT))]).unwrap();
}

/// One host's dumps describe at most `MAX_GPUS` GPUs (and NVLink status for as many): more is
/// refused with the reason, and matching NVLink status to GPUs costs one pass, not one scan of
/// every GPU per status (a 16 MiB dump could otherwise hold hundreds of thousands of each).
#[test]
fn dumps_describing_more_gpus_than_a_host_holds_are_refused() {
    use chipledger_agent::smi::MAX_GPUS;
    let xml = read(A100_XML);
    let (start, end) = (xml.find("<gpu id=").unwrap(), xml.rfind("</gpu>").unwrap() + "</gpu>".len());
    let one = &xml[start..end];
    let many = |n: usize| format!("{}{}{}", &xml[..start], one.repeat(n), &xml[end..]);
    let at_bound = many(MAX_GPUS);
    assert_eq!(parse_dumps(&[("a.xml", &at_bound)]).unwrap().gpus.len(), MAX_GPUS);
    let over = many(MAX_GPUS + 1);
    match parse_dumps(&[("a.xml", &over)]) {
        Err(Error::UnknownDump { reason, .. }) => assert!(reason.contains("more than the 1024"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // NVLink status for more GPUs than a host holds, beside a real dump.
    let status = read(H100_NVLINK);
    let first = status.split("GPU 1:").next().unwrap();
    let statuses: String =
        (0..=MAX_GPUS).map(|i| first.replacen("GPU 0:", &format!("GPU {i}:"), 1)).collect::<Vec<_>>().concat();
    match parse_dumps(&[("q.xml", &at_bound), ("nvlink.txt", &statuses)]) {
        Err(Error::UnknownDump { reason, .. }) => assert!(reason.contains("NVLink status for 1025 GPUs"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}
