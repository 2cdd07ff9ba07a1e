//! NVIDIA attestation evidence as a reader meets it in a record: the SPDM report (hex text or
//! raw), a PEM certificate chain, and verification against the shipped root.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use chipledger_domain::evidence::{decode_report, parse_chain, parse_root, verify, Report};
    // The input is split in two at its first 0xff: a report, then a chain.
    let (report, chain) = match data.iter().position(|b| *b == 0xff) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &data[..0]),
    };
    let Ok(bytes) = decode_report(report) else { return };
    let parsed = Report::parse(&bytes);
    let certs = parse_chain(chain);
    if let (Ok(r), Ok(c)) = (parsed, certs) {
        let root = parse_root(None).expect("the shipped root parses");
        let _ = verify(&r, &c, &root, &r.nonce.clone(), 1_800_000_000);
        let _ = (r.vbios_version(), r.text(chipledger_domain::evidence::field::DRIVER_VERSION));
    }
});
