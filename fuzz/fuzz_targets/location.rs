//! Location proofs: coordinates ("lat,lon"), `location-proof/v1` records through the typed
//! statement parser (with the record's own checks and its answers' verification), and the
//! judgement over whatever coordinates and round trips the bytes give.
#![no_main]
use libfuzzer_sys::fuzz_target;

use std::collections::BTreeSet;

use chipledger_domain::keys::SigningKey;
use chipledger_domain::location::{judge, Coord, CountryIndex, JudgeInput, Method, Proof};
use chipledger_domain::records::Record;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Coord::parse(text);
    }
    if let Ok(Record::LocationProof(p)) = Record::from_payload(data) {
        let _ = p.verify_answers(&SigningKey::from_seed(&[1; 32]).public_key());
        let _ = p.bound_km();
    }
    // Eight bytes per proof: latitude, longitude (scaled), round trip.
    let proofs: Vec<Proof> = data
        .chunks_exact(8)
        .take(8)
        .map(|c| Proof {
            landmark: format!("l{}", c[0]),
            landmark_site: Coord {
                lat: f64::from(i16::from_le_bytes([c[0], c[1]])) / 300.0,
                lon: f64::from(i16::from_le_bytes([c[2], c[3]])) / 150.0,
            },
            rtt_ns: u64::from(u32::from_le_bytes([c[4], c[5], c[6], c[7]])),
            floor_ns: 0,
            at: 0,
            method: Method::HostKey,
        })
        .collect();
    if let Ok(index) = CountryIndex::embedded() {
        let declared = proofs.first().map(|p| p.landmark_site);
        let allowed = BTreeSet::new();
        let _ = judge(&JudgeInput { proofs: &proofs, now: 0, max_age_secs: 60, declared, allowed: &allowed, index });
    }
});
