//! A node's placement policy file (`--policy F`, TOML).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        chipledger_inference::fuzzing::policy(text);
    }
});
