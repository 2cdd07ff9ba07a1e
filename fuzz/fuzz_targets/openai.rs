//! What the serving node reads from clients and upstream engines, and what a receipt's verifier
//! reads: chat completion requests, server-sent event streams, leaves, serving receipts.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chipledger_gateway::fuzzing::openai(data);
});
