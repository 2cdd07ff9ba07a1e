//! Standard padded base64, the only base64 chipledger reads or writes (DSSE, notes, proofs).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::Error;

pub fn b64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard, padded base64; anything else (URL-safe alphabet, missing padding,
/// whitespace) is refused, so one value has exactly one encoding.
pub fn b64_decode(s: &str, what: &'static str) -> Result<Vec<u8>, Error> {
    STANDARD.decode(s).map_err(|_| Error::Base64 { what })
}
