//! NVIDIA reference manifests (RIMs) as a reader meets them in a record: zlib-packed bytes that
//! inflate (bounded) to a SWID tag, then the XML-DSig profile, the digest, the signature and the
//! chain to the shipped RIM root; the comparison with an arbitrary set of measurements.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use chipledger_domain::evidence::Measurement;
    use chipledger_domain::rim::{compare, parse_rim_root, unpack, verify_rim};
    let root = parse_rim_root(None).expect("the shipped RIM root parses");
    // The first byte chooses: the bytes as a packed RIM, or as the XML itself.
    let Some((&mode, rest)) = data.split_first() else { return };
    let xml = if mode & 1 == 0 {
        match unpack(rest) {
            Ok(xml) => xml,
            Err(_) => return,
        }
    } else {
        rest.to_vec()
    };
    // Inside the sample RIMs' signers' validity (2024) and after it.
    for at in [1_720_000_000, 1_800_000_000] {
        if let Ok(rim) = verify_rim(&xml, &root, at) {
            let measurements: Vec<Measurement> = rest
                .chunks(49)
                .map(|c| Measurement { index: c[0], value_type: 1, value: c[1..].to_vec() })
                .collect();
            let _ = compare(&measurements, Some("550.90.07"), None, Some(&rim), None);
        }
    }
});
