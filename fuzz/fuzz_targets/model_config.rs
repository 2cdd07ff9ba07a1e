//! A model directory's `config.json`, as the node sizes a model from it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        chipledger_inference::fuzzing::config_json(text);
    }
});
