//! The demo's simulated hosts: real nvidia-smi dumps shipped with the project, one of them
//! edited to plant the anomaly the demo shows.

/// The real nvidia-smi dumps shipped with the project (sources: agent/tests/data/nvidia-smi/SOURCES.md).
const A100_XML: &str = include_str!("../../../agent/tests/data/nvidia-smi/a100-sxm4-80gb-influxdata-telegraf.xml");
const H100_TXT: &str =
    include_str!("../../../agent/tests/data/nvidia-smi/h100-sxm5-80gb-utkuozdemir-nvidia_gpu_exporter.txt");
const H100_NVLINK: &str =
    include_str!("../../../agent/tests/data/nvidia-smi/h100-sxm5-80gb-nvlink-s-utkuozdemir-nvidia_gpu_exporter.txt");
const H800_TXT: &str = include_str!("../../../agent/tests/data/nvidia-smi/h800-sxm5-80gb-liguodongiot-llm-action.txt");
pub(super) const DEMO_POLICY: &str = include_str!("../../../inference/policies/demo.toml");

/// A simulated host: its name, the dumps its agent imports, and the site an admin declares
/// for it.
pub(super) struct Host {
    pub name: &'static str,
    pub what: &'static str,
    pub files: Vec<(&'static str, String)>,
    pub site: Option<Place>,
}

/// A declared site, and how far (SIMULATED) the host's answers really travel to each landmark:
/// the relay's one-way delay per landmark, in `location::LANDMARKS` order (`None`: its agent
/// answers no landmark).
pub(super) struct Place {
    pub at: &'static str,
    pub operator: &'static str,
    pub country: &'static str,
    pub one_way_ms: Option<[f64; 2]>,
}

const SHANGHAI_DC: &str = "31.1434,121.8052";

pub(super) fn hosts() -> Vec<Host> {
    // The H100 capture masked UUID and serial to zeros; this simulated host gets its own.
    let h100 = H100_TXT
        .replace("GPU-00000000-0000-0000-0000-000000000000", "GPU-9d2f31c4-5b1e-4c7a-8e60-2b7f0c1d4a11")
        .replace("0000000000000", "1654423001593");
    let h100_links =
        H100_NVLINK.replace("GPU-00000000-0000-0000-0000-000000000000", "GPU-9d2f31c4-5b1e-4c7a-8e60-2b7f0c1d4a11");
    // The planted anomaly: the same H100 dump with its device id edited to the H800's 0x2324.
    let relabelled = H100_TXT
        .replace("0x233010DE", "0x232410DE")
        .replace("GPU-00000000-0000-0000-0000-000000000000", "GPU-6e1a0b77-20c4-4f3e-9a51-7c2d8e9f0b35")
        .replace("0000000000000", "1651323099999");
    let relabelled_links =
        H100_NVLINK.replace("GPU-00000000-0000-0000-0000-000000000000", "GPU-6e1a0b77-20c4-4f3e-9a51-7c2d8e9f0b35");
    vec![
        Host {
            name: "dgx-a100-01",
            what: "A100 host (real nvidia-smi -q -x dump)",
            files: vec![("a100.xml", A100_XML.to_string())],
            // In Shanghai: 0.25 ms each way to the Shanghai landmark, 15 ms to Singapore's.
            site: Some(Place {
                at: SHANGHAI_DC,
                operator: "Example AI Lab (simulated)",
                country: "CN",
                one_way_ms: Some([15.0, 0.25]),
            }),
        },
        Host {
            name: "hgx-h100-01",
            what: "H100 host (real nvidia-smi -q + nvlink -s dumps)",
            files: vec![("h100.txt", h100), ("h100-nvlink.txt", h100_links)],
            // In Abu Dhabi, with no landmark near: its agent answers none, and it stays unproven.
            site: Some(Place {
                at: "24.4539,54.3773",
                operator: "Example AI Lab (simulated)",
                country: "AE",
                one_way_ms: None,
            }),
        },
        Host {
            name: "hgx-h800-01",
            what: "H800 host (real nvidia-smi -q dump)",
            files: vec![("h800.txt", H800_TXT.to_string())],
            site: Some(Place {
                at: SHANGHAI_DC,
                operator: "Example AI Lab (simulated)",
                country: "CN",
                one_way_ms: Some([15.0, 0.25]),
            }),
        },
        Host {
            name: "hgx-h800-02",
            what: "an \"H800\" with H100 NVLink (PLANTED anomaly: the H100 dump with its device id edited)",
            files: vec![("h800-suspect.txt", relabelled), ("h800-suspect-nvlink.txt", relabelled_links)],
            // PLANTED: declared in Singapore, but it answers Shanghai in 3 ms and Singapore in 70.
            site: Some(Place {
                at: "1.3521,103.8198",
                operator: "Example DC Singapore",
                country: "SG",
                one_way_ms: Some([35.0, 1.5]),
            }),
        },
    ]
}
