//! A stored entry body in each storage form (raw, compact, LZ4-packed against the dictionary),
//! as a reopened or damaged log hands it back.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((form, body)) = data.split_first() else { return };
    chipledger_ledger::fuzzing::stored_body(i64::from(*form % 4), body);
});
