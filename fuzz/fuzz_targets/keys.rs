//! C2SP verifier keys and PKCS#8 PEM private keys, as `keys enroll`, `note verify` and every
//! key file read take them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(k) = chipledger_domain::keys::VerifierKey::parse(text) {
        assert_eq!(chipledger_domain::keys::VerifierKey::parse(&k.to_string()).ok().as_ref(), Some(&k));
    }
    let _ = chipledger_domain::keys::SigningKey::from_pkcs8_pem(text);
});
