//! Diversion reports (`report verify` reads them from anyone): the bounded parse, the bundle's
//! replay (checkpoint, inclusion, signatures, authorisation) and the events recomputed from the
//! bundle's records and compared with the listed ones, over whatever the bytes hold.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = chipledger_ledger::diversion::verify_diversion_report(data, None);
});
