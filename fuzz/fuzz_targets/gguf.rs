//! A GGUF file's header, metadata and tokenizer, as `--model x.gguf` reads them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chipledger_inference::fuzzing::gguf(data);
});
