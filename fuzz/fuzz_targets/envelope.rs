//! DSSE envelopes and in-toto statements as the log reads them at append and in the audit
//! (the two parses must agree), then the domain's own typed reading.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chipledger_ledger::fuzzing::envelope(data);
    if let Ok(env) = chipledger_domain::dsse::Envelope::from_json(data) {
        if let Ok(payload) = env.payload_bytes() {
            let _ = chipledger_domain::records::Record::from_payload(&payload);
        }
    }
    let _ = chipledger_domain::records::Record::from_payload(data);
});
