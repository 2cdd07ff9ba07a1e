//! How callers prove who they are to a `chipledger serve`.
//!
//! People hold **tokens**: `clt_<id>_<secret>`, where `id` (12 hex digits) names the token in
//! lists and logs and `secret` (64 hex digits, 256 random bits) is the credential. A server stores
//! only SHA-256 of the secret; a high-entropy secret needs no slow hash.
//!
//! Agents and nodes hold enrolled Ed25519 keys and **sign their requests**: the signature is the
//! credential. The signed message binds the method, the path with its query, the time and the
//! SHA-256 of the body, so a captured request cannot be turned into another one; a server accepts
//! it only within [`MAX_SKEW_SECS`] of its own clock.

use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};

use crate::keys::{KeyId, PublicKey, SigningKey};
use crate::Error;

const TOKEN_PREFIX: &str = "clt_";
const ID_HEX: usize = 12;
const SECRET_HEX: usize = 64;

/// A person's token as typed: its public id and the secret. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    id: String,
    secret: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Token {
    pub fn generate(rng: &mut impl CryptoRngCore) -> Token {
        let mut id = [0u8; ID_HEX / 2];
        let mut secret = [0u8; SECRET_HEX / 2];
        rng.fill_bytes(&mut id);
        rng.fill_bytes(&mut secret);
        Token { id: hex::encode(id), secret: hex::encode(secret) }
    }

    /// Reads `clt_<id>_<secret>`. The error never repeats the input (it may be a real secret).
    pub fn parse(s: &str) -> Result<Token, Error> {
        let bad = |reason: &'static str| Error::Token { reason };
        let rest = s.trim().strip_prefix(TOKEN_PREFIX).ok_or(bad("it does not start with clt_"))?;
        let (id, secret) = rest.split_once('_').ok_or(bad("it is not clt_<id>_<secret>"))?;
        let is_hex =
            |v: &str, n: usize| v.len() == n && v.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !is_hex(id, ID_HEX) {
            return Err(bad("its id is not 12 lowercase hex digits"));
        }
        if !is_hex(secret, SECRET_HEX) {
            return Err(bad("its secret is not 64 lowercase hex digits"));
        }
        Ok(Token { id: id.to_string(), secret: secret.to_string() })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// What a server stores and compares: SHA-256 of the secret.
    pub fn secret_hash(&self) -> [u8; 32] {
        Sha256::digest(self.secret.as_bytes()).into()
    }

    /// The whole token, to show its owner once.
    pub fn reveal(&self) -> String {
        format!("{TOKEN_PREFIX}{}_{}", self.id, self.secret)
    }
}

/// Compares two hashes in time independent of where they differ.
pub fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    constant_time_eq(a, b)
}

/// Compares two byte strings in time independent of where they differ (lengths are not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The header that carries a signed request.
pub const SIGNATURE_HEADER: &str = "x-chipledger-signature";

/// How far a signed request's time may be from the server's clock.
pub const MAX_SKEW_SECS: i64 = 300;

/// A parsed request signature: `<key id> <unix seconds> <nonce> <base64 signature>` (v2, the
/// nonce 32 lowercase hex digits, fresh per request, so that no two requests — a retry of the
/// same one included — carry the same signature and a server can refuse a replayed one), or
/// `<key id> <unix seconds> <base64 signature>` (v1, from earlier clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSignature {
    pub key_id: KeyId,
    pub time: i64,
    pub nonce: Option<String>,
    pub signature: Vec<u8>,
}

/// Hex digits in a request nonce (128 bits).
const NONCE_HEX: usize = 32;

fn request_message(method: &str, path_and_query: &str, time: i64, nonce: Option<&str>, body: &[u8]) -> Vec<u8> {
    let body_hash = hex::encode(Sha256::digest(body));
    let method = method.to_ascii_uppercase();
    match nonce {
        Some(n) => format!("chipledger-request/v2\n{method}\n{path_and_query}\n{time}\n{n}\n{body_hash}\n"),
        None => format!("chipledger-request/v1\n{method}\n{path_and_query}\n{time}\n{body_hash}\n"),
    }
    .into_bytes()
}

/// The header value that signs this request with `key` at `time` (unix seconds), with a nonce
/// the caller draws fresh for every request (this crate does no IO, randomness included).
pub fn sign_request(
    key: &SigningKey,
    method: &str,
    path_and_query: &str,
    time: i64,
    nonce: [u8; 16],
    body: &[u8],
) -> String {
    let nonce = hex::encode(nonce);
    let sig = key.sign(&request_message(method, path_and_query, time, Some(&nonce), body));
    format!("{} {time} {nonce} {}", key.key_id().as_str(), crate::encoding::b64_encode(&sig))
}

/// A v1 header (no nonce), as clients before v2 signed: two identical requests in one second
/// carry the same signature, and a server that refuses replays refuses the second.
pub fn sign_request_v1(key: &SigningKey, method: &str, path_and_query: &str, time: i64, body: &[u8]) -> String {
    let sig = key.sign(&request_message(method, path_and_query, time, None, body));
    format!("{} {time} {}", key.key_id().as_str(), crate::encoding::b64_encode(&sig))
}

impl RequestSignature {
    pub fn parse(header: &str) -> Result<RequestSignature, Error> {
        let bad = |reason: &'static str| Error::RequestSignature { reason };
        let parts: Vec<&str> = header.splitn(5, ' ').collect();
        let (key_id, time, nonce, sig) = match parts.as_slice() {
            [k, t, n, s] => (*k, *t, Some(*n), *s),
            [k, t, s] => (*k, *t, None, *s),
            _ => return Err(bad("it is not `<key id> <unix seconds> <nonce> <base64 signature>`")),
        };
        let key_id = KeyId::parse(key_id).map_err(|_| bad("its key id is malformed"))?;
        let time = time.parse::<i64>().map_err(|_| bad("its time is not unix seconds"))?;
        if nonce.is_some_and(|n| {
            n.len() != NONCE_HEX || !n.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }) {
            return Err(bad("its nonce is not 32 lowercase hex digits"));
        }
        let signature = crate::encoding::b64_decode(sig, "request signature")?;
        Ok(RequestSignature { key_id, time, nonce: nonce.map(str::to_string), signature })
    }

    /// What identifies this signature among others over the same window: its first 16 bytes
    /// (of Ed25519's R, which the signed message determines), for a server's replay cache.
    pub fn replay_id(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        for (d, s) in id.iter_mut().zip(&self.signature) {
            *d = *s;
        }
        id
    }

    /// Checks the signature by `key` over this request, and its time against `now`.
    pub fn verify(
        &self,
        key: &PublicKey,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), Error> {
        // `abs_diff`: a time at either end of i64 is far off, not an overflow.
        if now.abs_diff(self.time) > MAX_SKEW_SECS.unsigned_abs() {
            return Err(Error::RequestSignature {
                reason: "its time is more than 5 minutes from the server's clock (check the host's clock)",
            });
        }
        key.verify(&request_message(method, path_and_query, self.time, self.nonce.as_deref(), body), &self.signature)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failure is the point
mod tests {
    use super::*;

    fn rng() -> impl CryptoRngCore {
        struct Counter(u8);
        impl rand_core::RngCore for Counter {
            fn next_u32(&mut self) -> u32 {
                rand_core::impls::next_u32_via_fill(self)
            }
            fn next_u64(&mut self) -> u64 {
                rand_core::impls::next_u64_via_fill(self)
            }
            fn fill_bytes(&mut self, dest: &mut [u8]) {
                for b in dest {
                    self.0 = self.0.wrapping_add(7);
                    *b = self.0;
                }
            }
            fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
                self.fill_bytes(dest);
                Ok(())
            }
        }
        impl rand_core::CryptoRng for Counter {}
        Counter(0)
    }

    #[test]
    fn tokens_round_trip_and_hide_their_secret() {
        let t = Token::generate(&mut rng());
        let shown = t.reveal();
        assert!(shown.starts_with("clt_"));
        assert_eq!(Token::parse(&shown).unwrap(), t);
        assert!(!format!("{t:?}").contains(&shown[17..]));
        assert!(hashes_equal(&t.secret_hash(), &Token::parse(&shown).unwrap().secret_hash()));
    }

    #[test]
    fn malformed_tokens_are_refused_without_echo() {
        let t = Token::generate(&mut rng()).reveal();
        for bad in ["", "clt_", "xyz_0011", &t[..t.len() - 1], &t.to_uppercase(), &format!("{t}0")] {
            let e = Token::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("token is malformed"), "{e}");
            assert!(bad.len() < 20 || !e.contains(&bad[10..]), "{e}");
        }
    }

    #[test]
    fn request_signatures_bind_every_part() {
        let key = SigningKey::from_seed(&[9; 32]);
        let h = sign_request(&key, "get", "/api/v1/inventory?serial=1", 1_000, [3; 16], b"");
        let sig = RequestSignature::parse(&h).unwrap();
        let pk = key.public_key();
        sig.verify(&pk, "GET", "/api/v1/inventory?serial=1", b"", 1_100).unwrap();
        assert!(sig.verify(&pk, "POST", "/api/v1/inventory?serial=1", b"", 1_100).is_err());
        assert!(sig.verify(&pk, "GET", "/api/v1/inventory?serial=2", b"", 1_100).is_err());
        assert!(sig.verify(&pk, "GET", "/api/v1/inventory?serial=1", b"x", 1_100).is_err());
        assert!(sig.verify(&pk, "GET", "/api/v1/inventory?serial=1", b"", 1_000 + 301).is_err());
        let other = SigningKey::from_seed(&[8; 32]).public_key();
        assert!(sig.verify(&other, "GET", "/api/v1/inventory?serial=1", b"", 1_100).is_err());
        for bad in ["", "a b", "a 1 c d e", &h.replace(' ', "  ")] {
            assert!(RequestSignature::parse(bad).is_err(), "{bad}");
        }
        // The nonce is signed: another one does not verify.
        let (head, tail) = h.split_at(h.find(&hex::encode([3u8; 16])).unwrap());
        let moved = format!("{head}{}{}", hex::encode([4u8; 16]), &tail[32..]);
        let moved = RequestSignature::parse(&moved).unwrap();
        assert!(moved.verify(&pk, "GET", "/api/v1/inventory?serial=1", b"", 1_100).is_err());
        for nonce in ["0", &"A".repeat(32), &"g".repeat(32), &"0".repeat(33)] {
            let bad = h.replacen(&hex::encode([3u8; 16]), nonce, 1);
            assert!(RequestSignature::parse(&bad).is_err(), "{bad}");
        }
        // Two requests alike but for their nonce carry different signatures; a v1 header (no
        // nonce) still verifies, and repeats itself exactly.
        let again = RequestSignature::parse(&sign_request(&key, "GET", "/", 1_000, [5; 16], b"")).unwrap();
        let other = RequestSignature::parse(&sign_request(&key, "GET", "/", 1_000, [6; 16], b"")).unwrap();
        assert_ne!(again.replay_id(), other.replay_id());
        let v1 = sign_request_v1(&key, "GET", "/", 1_000, b"");
        assert_eq!(v1, sign_request_v1(&key, "GET", "/", 1_000, b""));
        RequestSignature::parse(&v1).unwrap().verify(&pk, "GET", "/", b"", 1_000).unwrap();
    }

    /// A request time at either end of i64 is too far from the clock, not an overflow.
    #[test]
    fn request_times_at_the_ends_of_the_range_are_refused_without_overflow() {
        let key = SigningKey::from_seed(&[9; 32]);
        for time in [i64::MIN, i64::MIN + 1, i64::MAX] {
            let sig = RequestSignature::parse(&sign_request(&key, "GET", "/", time, [0; 16], b"")).unwrap();
            for now in [0, i64::MAX, i64::MIN] {
                let e = sig.verify(&key.public_key(), "GET", "/", b"", now);
                assert!(now.abs_diff(time) <= 300 || e.is_err(), "{time} at {now}");
            }
        }
    }
}
