//! Encodings: standard padded base64 (the only base64 chipledger reads or writes: DSSE, notes,
//! proofs), and finding the key a configuration parse error is about.

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

/// The key a TOML (or similar) parse error is about, for messages that name the setting: the
/// first back-quoted name in the message (`unknown field `x``), else the key on the line the
/// error's byte span points at.
pub fn config_error_key(text: &str, message: &str, span: Option<std::ops::Range<usize>>) -> Option<String> {
    if let Some(k) = message.split('`').nth(1) {
        return Some(k.to_string());
    }
    let span = span?;
    let start = text.get(..span.start.min(text.len()))?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next()?;
    let key = line.split('=').next()?.trim().trim_matches('"');
    (!key.is_empty() && line.contains('=')).then(|| key.to_string())
}

/// Serializes bytes as lower-case hex (for serde's `serialize_with`).
pub fn serialize_hex<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

/// Serializes a list of byte strings as a list of lower-case hex strings.
pub fn serialize_hex_list<S: serde::Serializer>(list: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(list.iter().map(hex::encode))
}
