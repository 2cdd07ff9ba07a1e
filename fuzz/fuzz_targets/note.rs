//! C2SP signed notes, checkpoints and tlog-proofs: parsed, and opened against a fixed key.
#![no_main]
use libfuzzer_sys::fuzz_target;

use chipledger_domain::note::{open_checkpoint, Checkpoint, Note, TlogProof};

fuzz_target!(|data: &[u8]| {
    let _ = Note::parse(data);
    let _ = TlogProof::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Checkpoint::parse(text);
    }
    let key = chipledger_domain::keys::VerifierKey::parse(
        "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8",
    )
    .expect("a fixed, valid key");
    let _ = open_checkpoint(data, std::slice::from_ref(&key), None);
});
