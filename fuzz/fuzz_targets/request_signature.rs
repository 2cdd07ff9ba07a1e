//! The `x-chipledger-signature` header and people's tokens, as the server reads them from any
//! caller before knowing who it is.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(sig) = chipledger_domain::auth::RequestSignature::parse(text) {
        let key = chipledger_domain::keys::SigningKey::from_seed(&[7; 32]).public_key();
        let _ = sig.verify(&key, "GET", "/api/v1/inventory", b"", 1_800_000_000);
        let _ = sig.replay_id();
    }
    let _ = chipledger_domain::auth::Token::parse(text);
});
