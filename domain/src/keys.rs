//! Ed25519 keys: generation from a caller's RNG, PKCS#8 PEM, C2SP verifier keys, key ids.
//!
//! A C2SP verifier key is `name+hex(keyhash)+base64(0x01 ‖ pubkey)` where
//! `keyhash = SHA-256(name ‖ 0x0A ‖ 0x01 ‖ pubkey)[0..4]` (big-endian u32), as in
//! `golang.org/x/mod/sumdb/note`. A [`KeyId`] — what DSSE signatures and the key registry use —
//! is the hex SHA-256 of `0x01 ‖ pubkey`, independent of any name.

use std::fmt;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::encoding::{b64_decode, b64_encode};
use crate::Error;

/// The algorithm byte C2SP signed notes use for Ed25519.
pub const ALG_ED25519: u8 = 0x01;

/// A private signing key. Its `Debug` never shows secret bytes; the secret leaves this type only
/// as a PKCS#8 PEM held in a zeroizing buffer.
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
}

impl SigningKey {
    /// A fresh key from the caller's cryptographic RNG.
    pub fn generate(rng: &mut impl CryptoRngCore) -> SigningKey {
        SigningKey { inner: ed25519_dalek::SigningKey::generate(rng) }
    }

    /// A key from a 32-byte Ed25519 seed (known-answer tests, imports).
    pub fn from_seed(seed: &[u8; 32]) -> SigningKey {
        SigningKey { inner: ed25519_dalek::SigningKey::from_bytes(seed) }
    }

    /// Reads a PKCS#8 (`-----BEGIN PRIVATE KEY-----`) Ed25519 key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<SigningKey, Error> {
        let inner = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| Error::PrivateKeyPem { reason: pkcs8_reason(&e.to_string()) })?;
        Ok(SigningKey { inner })
    }

    /// [`SigningKey::from_pkcs8_pem`] on a PEM the caller read and hands over: the text is
    /// wiped once parsed (a key file's contents do not linger in freed memory).
    pub fn from_pkcs8_pem_owned(pem: String) -> Result<SigningKey, Error> {
        let pem = Zeroizing::new(pem);
        SigningKey::from_pkcs8_pem(&pem)
    }

    /// The key as PKCS#8 PEM, in a buffer wiped on drop: the v1 form of RFC 8410 §7 (the
    /// private key alone), which OpenSSL, Python's `cryptography` and Go all read. The v2 form
    /// with the public key beside it is still read.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, Error> {
        let bytes = ed25519_dalek::pkcs8::KeypairBytes { secret_key: self.inner.to_bytes(), public_key: None };
        let pem = bytes
            .to_pkcs8_pem(Default::default())
            .map_err(|e| Error::PrivateKeyPem { reason: format!("cannot encode: {e}") })?;
        Ok(Zeroizing::new(pem.to_string()))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey { inner: self.inner.verifying_key() }
    }

    pub fn key_id(&self) -> KeyId {
        self.public_key().key_id()
    }

    /// Signs `msg` (Ed25519 is deterministic: same key and message, same signature).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.inner.sign(msg).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey {{ secret: <redacted>, key_id: {} }}", self.key_id())
    }
}

fn pkcs8_reason(raw: &str) -> String {
    // The underlying errors describe structure ("PEM error", "ASN.1 DER message is malformed"),
    // never key bytes; keep them short and stable.
    if raw.to_ascii_lowercase().contains("pem") {
        "not a PEM block labelled PRIVATE KEY".to_string()
    } else {
        format!("bad PKCS#8 structure ({raw})")
    }
}

/// An Ed25519 public key that is a valid, non-weak point.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    inner: VerifyingKey,
}

impl PublicKey {
    /// Accepts 32 bytes only if they decode to a point that is not of small order.
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, Error> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| Error::InvalidPublicKey)?;
        let inner = VerifyingKey::from_bytes(&arr).map_err(|_| Error::InvalidPublicKey)?;
        if inner.is_weak() {
            return Err(Error::WeakPublicKey);
        }
        Ok(PublicKey { inner })
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.inner.to_bytes()
    }

    /// `hex(SHA-256(0x01 ‖ pubkey))`.
    pub fn key_id(&self) -> KeyId {
        let mut h = Sha256::new();
        h.update([ALG_ED25519]);
        h.update(self.inner.as_bytes());
        KeyId(hex::encode(h.finalize()))
    }

    /// `verify_strict`: rejects non-canonical signatures and small-order components.
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> Result<(), Error> {
        let bad = || Error::BadSignature { key_id: self.key_id().to_string() };
        let sig = Signature::from_slice(signature).map_err(|_| bad())?;
        self.inner.verify_strict(msg, &sig).map_err(|_| bad())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.inner.as_bytes()))
    }
}

/// A public key made ready to check many signatures: a fixed-base comb table of `−A` (signed
/// radix-2⁸ digits: 33 windows of 128 multiples, ~680 KiB, built in about the time of 50
/// checks), so that `[h](−A)` costs at most 33 point additions; `[s]B` uses the same table of the
/// base point, built once per process. Tables and lookups are variable-time: they touch
/// only public data (keys, signatures, messages). Gives exactly [`PublicKey::verify`]'s verdict
/// (`verify_strict`): the same group element is computed, only in fewer steps
/// (`cargo bench -p chipledger-domain -- strict`).
pub struct PreparedKey {
    public: PublicKey,
    minus_a: CombTable,
}

impl PreparedKey {
    pub fn new(public: PublicKey) -> PreparedKey {
        PreparedKey { public, minus_a: CombTable::new(-public.inner.to_edwards(), 8) }
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Exactly [`PublicKey::verify`]: the strict verdict.
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> Result<(), Error> {
        static BASE: std::sync::OnceLock<CombTable> = std::sync::OnceLock::new();
        let base = BASE.get_or_init(|| CombTable::new(curve25519_dalek::constants::ED25519_BASEPOINT_POINT, 8));
        strict_equation(&self.public, msg, signature, |s, h| base.mul(s) + self.minus_a.mul(h))
    }
}

/// `P`'s multiples for a fixed-base, variable-time scalar multiplication: window `i` holds
/// `j·2^(w·i)·P` for `j = 1..=2^(w−1)`, and a scalar is written in signed radix-2^w digits
/// (`|digit| ≤ 2^(w−1)`), so `[k]P` is one addition (or subtraction) per non-zero digit.
struct CombTable {
    width: u32,
    windows: Vec<Vec<curve25519_dalek::edwards::EdwardsPoint>>,
}

impl CombTable {
    fn new(p: curve25519_dalek::edwards::EdwardsPoint, width: u32) -> CombTable {
        let count = Self::digits_needed(width);
        let half = 1usize << (width - 1);
        let mut windows = Vec::with_capacity(count);
        let mut base = p;
        for _ in 0..count {
            let mut row = Vec::with_capacity(half);
            let mut m = base;
            for _ in 0..half {
                row.push(m);
                m += base;
            }
            // 2^w·base = 2·(2^(w−1)·base), the row's last multiple doubled.
            let last = row[half - 1];
            base = last + last;
            windows.push(row);
        }
        CombTable { width, windows }
    }

    /// Windows for a scalar below 2^255 (every reduced scalar), plus one for the last carry.
    fn digits_needed(width: u32) -> usize {
        (255 / width as usize) + 2
    }

    fn mul(&self, k: &curve25519_dalek::Scalar) -> curve25519_dalek::edwards::EdwardsPoint {
        use curve25519_dalek::traits::Identity;
        let mut acc = curve25519_dalek::edwards::EdwardsPoint::identity();
        for (i, d) in signed_digits(&k.to_bytes(), self.width, self.windows.len()).into_iter().enumerate() {
            match d.cmp(&0) {
                std::cmp::Ordering::Greater => acc += self.windows[i][d as usize - 1],
                std::cmp::Ordering::Less => acc -= self.windows[i][(-d) as usize - 1],
                std::cmp::Ordering::Equal => {}
            }
        }
        acc
    }
}

/// The little-endian 256-bit number `bytes` in `count` signed radix-2^w digits, each in
/// `[−2^(w−1), 2^(w−1)]`: `Σ dᵢ·2^(w·i)` equals it exactly (the caller sizes `count` so the last
/// carry has a digit).
fn signed_digits(bytes: &[u8; 32], width: u32, count: usize) -> Vec<i32> {
    let bit = |n: usize| -> u32 {
        if n < 256 {
            u32::from(bytes[n / 8] >> (n % 8)) & 1
        } else {
            0
        }
    };
    let radix = 1i32 << width;
    let mut digits = Vec::with_capacity(count);
    let mut carry = 0i32;
    for i in 0..count {
        let mut v = carry;
        for b in 0..width as usize {
            v += (bit(i * width as usize + b) as i32) << b;
        }
        if v > radix / 2 {
            digits.push(v - radix);
            carry = 1;
        } else {
            digits.push(v);
            carry = 0;
        }
    }
    digits
}

impl fmt::Debug for PreparedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PreparedKey({:?})", self.public)
    }
}

/// Prepared keys kept between checks: a log checks the signatures of the same few keys all day,
/// and a key's table costs about 50 checks' worth of work to build. Holds at most `capacity`
/// keys (~680 KiB each); when full, it starts over. Shared by threads.
pub struct PreparedKeys {
    capacity: usize,
    keys: std::sync::Mutex<std::collections::HashMap<[u8; 32], std::sync::Arc<PreparedKey>>>,
}

impl PreparedKeys {
    pub fn new(capacity: usize) -> PreparedKeys {
        PreparedKeys { capacity: capacity.max(1), keys: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }

    fn cached(&self, key: &[u8; 32]) -> Option<std::sync::Arc<PreparedKey>> {
        self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(key).cloned()
    }

    /// The prepared key, built outside the lock if it is not held yet.
    pub fn prepare(&self, key: &PublicKey) -> std::sync::Arc<PreparedKey> {
        if let Some(p) = self.cached(&key.to_bytes()) {
            return p;
        }
        let prepared = std::sync::Arc::new(PreparedKey::new(*key));
        let mut keys = self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if keys.len() >= self.capacity {
            keys.clear();
        }
        keys.entry(key.to_bytes()).or_insert(prepared).clone()
    }
}

impl fmt::Debug for PreparedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = self.keys.lock().map_or(0, |k| k.len());
        write!(f, "PreparedKeys {{ held: {held}, capacity: {} }}", self.capacity)
    }
}

/// The position of the first item whose signature [`PublicKey::verify`] refuses, checking many
/// (message, signature, key) items with exactly that verdict on each — no batch equation, whose
/// random weights accept a signature with a torsion component in `R` about half the time.
/// A key that `prepared` holds, or that signs several of the items, is checked through its
/// [`PreparedKey`] (and kept there).
pub fn first_bad_signature(items: &[(&[u8], &[u8], PublicKey)], prepared: &PreparedKeys) -> Option<usize> {
    /// How many signatures by one key in one call make its table worth building when it is not
    /// held yet (it costs about 50 checks' worth of work and saves more than half of each).
    const PREPARE_FROM: usize = 64;
    let mut counts: std::collections::HashMap<[u8; 32], usize> = std::collections::HashMap::new();
    for (_, _, key) in items {
        *counts.entry(key.to_bytes()).or_default() += 1;
    }
    let mut tables: std::collections::HashMap<[u8; 32], std::sync::Arc<PreparedKey>> = std::collections::HashMap::new();
    for (_, _, key) in items {
        let bytes = key.to_bytes();
        if tables.contains_key(&bytes) {
            continue;
        }
        let table = match prepared.cached(&bytes) {
            Some(t) => Some(t),
            None if counts.get(&bytes).is_some_and(|n| *n >= PREPARE_FROM) => Some(prepared.prepare(key)),
            None => None,
        };
        if let Some(t) = table {
            tables.insert(bytes, t);
        }
    }
    items.iter().position(|(msg, sig, key)| {
        let verdict = match tables.get(&key.to_bytes()) {
            Some(p) => p.verify(msg, sig),
            None => key.verify_unprepared(msg, sig),
        };
        verdict.is_err()
    })
}

impl PublicKey {
    /// [`PublicKey::verify`]'s verdict, computed as [`PreparedKey::verify`] does but with
    /// `R` compared as bytes instead of decompressed first (what [`first_bad_signature`] uses
    /// for a key that signs one item).
    fn verify_unprepared(&self, msg: &[u8], signature: &[u8]) -> Result<(), Error> {
        let minus_a = -self.inner.to_edwards();
        strict_equation(self, msg, signature, |s, h| {
            curve25519_dalek::edwards::EdwardsPoint::vartime_double_scalar_mul_basepoint(h, &minus_a, s)
        })
    }

    /// Whether the key has no small-order component (`[ℓ]A` is the identity). Keys that do —
    /// mixed-order keys — are refused at enrollment: they have several valid signatures per
    /// message under some verifiers and none of their holders need one.
    pub fn is_torsion_free(&self) -> bool {
        self.inner.to_edwards().is_torsion_free()
    }
}

/// `verify_strict`'s rule, with the point `[s]B − [h]A` computed by `r_of(s, h)`: `s` is a
/// canonical scalar, `R` is not of small order, and `R` is exactly the encoding of
/// `[s]B − [h]A` where `h = SHA-512(R ‖ A ‖ M)`. Comparing encodings also refuses a
/// non-canonical or undecodable `R` (`compress` never produces one), which `verify_strict`
/// refuses by decompressing first; the public key is never of small order (see
/// [`PublicKey::from_bytes`]), which `verify_strict` checks on every call.
fn strict_equation(
    public: &PublicKey,
    msg: &[u8],
    signature: &[u8],
    r_of: impl FnOnce(&curve25519_dalek::Scalar, &curve25519_dalek::Scalar) -> curve25519_dalek::edwards::EdwardsPoint,
) -> Result<(), Error> {
    use curve25519_dalek::Scalar;
    use sha2::Sha512;
    let bad = || Error::BadSignature { key_id: public.key_id().to_string() };
    let signature: &[u8; 64] = signature.try_into().map_err(|_| bad())?;
    let (r_bytes, s_bytes) = signature.split_at(32);
    let r_bytes: &[u8; 32] = r_bytes.try_into().map_err(|_| bad())?;
    let s_bytes: [u8; 32] = s_bytes.try_into().map_err(|_| bad())?;
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)).ok_or_else(bad)?;
    if is_small_order_encoding(r_bytes) {
        return Err(bad());
    }
    let h =
        Scalar::from_hash(Sha512::new().chain_update(r_bytes).chain_update(public.inner.as_bytes()).chain_update(msg));
    if r_of(&s, &h).compress().as_bytes() == r_bytes {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Whether a point encoding's y coordinate is below p = 2^255 − 19 (the sign bit aside), as in
/// every encoding `compress` produces; `verify_strict` refuses the others.
fn is_canonical_y(encoding: &[u8; 32]) -> bool {
    !(encoding[31] & 0x7f == 0x7f && encoding[1..31].iter().all(|b| *b == 0xff) && encoding[0] >= 0xed)
}

/// Whether 32 bytes encode a point of small order, without decompressing: the point's y
/// coordinate (mod p) is one of the y coordinates of the eight torsion points. Both signs of x
/// are torsion points too, so the sign bit does not matter.
pub fn is_small_order_encoding(encoding: &[u8; 32]) -> bool {
    static TORSION_Y: std::sync::OnceLock<Vec<[u8; 32]>> = std::sync::OnceLock::new();
    let ys = TORSION_Y.get_or_init(|| {
        curve25519_dalek::constants::EIGHT_TORSION
            .iter()
            .map(|p| {
                let mut y = p.compress().to_bytes();
                y[31] &= 0x7f;
                y
            })
            .collect()
    });
    let mut y = *encoding;
    y[31] &= 0x7f;
    // Reduce the 19 non-canonical encodings y in [p, 2^255) to y - p.
    if !is_canonical_y(encoding) {
        y = [0u8; 32];
        y[0] = encoding[0] - 0xed;
    }
    ys.contains(&y)
}

/// The identity of a public key in records and the registry: 64 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub String);

impl KeyId {
    pub fn parse(s: &str) -> Result<KeyId, Error> {
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Error::Hex { what: "key id", reason: "expected 64 lowercase hex digits".into() });
        }
        Ok(KeyId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A C2SP verifier key: a name, its 32-bit key hash and an Ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_hash: u32,
    public: PublicKey,
}

impl VerifierKey {
    pub fn new(name: &str, public: PublicKey) -> Result<VerifierKey, Error> {
        check_key_name(name)?;
        Ok(VerifierKey { name: name.to_string(), key_hash: note_key_hash(name, &public), public })
    }

    /// Parses `name+hash+base64(0x01 ‖ pubkey)`, checking the hash against name and key.
    pub fn parse(vkey: &str) -> Result<VerifierKey, Error> {
        let (name, key_hash, public) =
            parse_vkey(vkey, ALG_ED25519, "unknown key algorithm (only Ed25519, 0x01, is supported)", note_key_hash)?;
        Ok(VerifierKey { name, key_hash, public })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_hash(&self) -> u32 {
        self.key_hash
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(&self.public.to_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.key_hash, b64_encode(&raw))
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

/// A C2SP verifier key `name+hash+base64(alg ‖ Ed25519 key)` of signature type `alg`, taken
/// apart and checked: the name, the key hash — which must be what `key_hash` computes from the
/// name and key (the hash differs by type) — and the key. `other_type` says why another type is
/// refused.
pub fn parse_vkey(
    vkey: &str,
    alg: u8,
    other_type: &'static str,
    key_hash: fn(&str, &PublicKey) -> u32,
) -> Result<(String, u32, PublicKey), Error> {
    let bad = |reason: &'static str| Error::VerifierKey { key: vkey.to_string(), reason };
    let (name, rest) = vkey.split_once('+').ok_or_else(|| bad("expected name+hash+key"))?;
    let (hash_hex, key_b64) = rest.split_once('+').ok_or_else(|| bad("expected name+hash+key"))?;
    check_key_name(name).map_err(|_| bad("the name is empty or has spaces or '+'"))?;
    if hash_hex.len() != 8 || !hash_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("the key hash must be 8 hex digits"));
    }
    let hash = u32::from_str_radix(hash_hex, 16).map_err(|_| bad("the key hash must be 8 hex digits"))?;
    let raw = b64_decode(key_b64, "verifier key").map_err(|_| bad("the key is not standard base64"))?;
    match raw.first() {
        Some(&t) if t == alg => {}
        Some(_) => return Err(bad(other_type)),
        None => return Err(bad("the key is empty")),
    }
    if raw.len() != 33 {
        return Err(bad("an Ed25519 key is 32 bytes after the algorithm byte"));
    }
    let public = PublicKey::from_bytes(&raw[1..]).map_err(|e| match e {
        Error::WeakPublicKey => bad("the public key is weak (small order)"),
        _ => bad("the public key is not a valid Ed25519 point"),
    })?;
    if key_hash(name, &public) != hash {
        return Err(bad("the key hash does not match the name and key"));
    }
    Ok((name.to_string(), hash, public))
}

/// `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ pubkey)[0..4]`, big-endian.
pub fn note_key_hash(name: &str, public: &PublicKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public.to_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Signed-note key names: non-empty, no Unicode whitespace, no `+`.
pub fn check_key_name(name: &str) -> Result<(), Error> {
    let bad = |reason: &'static str| Error::KeyName { name: name.to_string(), reason };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.chars().any(char::is_whitespace) {
        return Err(bad("it contains whitespace"));
    }
    if name.contains('+') {
        return Err(bad("it contains '+'"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: failing loudly is right
mod tests {
    use super::*;
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
    use curve25519_dalek::Scalar;
    use sha2::Sha512;

    #[test]
    fn comb_multiplication_is_scalar_multiplication() {
        let p = ED25519_BASEPOINT_POINT * Scalar::from(7u64);
        let minus_one = Scalar::ZERO - Scalar::ONE;
        let mut edges = vec![Scalar::ZERO, Scalar::ONE, minus_one, Scalar::from(2u64).invert(), Scalar::from(32u64)];
        edges.extend((0u32..200).map(|i| Scalar::from_hash(Sha512::new().chain_update(i.to_le_bytes()))));
        for width in [4, 6, 8] {
            let table = CombTable::new(p, width);
            for k in &edges {
                assert_eq!(table.mul(k).compress(), (p * k).compress(), "width {width}, k {k:?}");
            }
        }
    }

    #[test]
    fn signed_digits_add_up_to_the_number() {
        for bytes in [[0u8; 32], [0xff; 32], [0x7f; 32], [0x10; 32]] {
            for width in [4u32, 6, 8] {
                let count = CombTable::digits_needed(width) + 1;
                let digits = signed_digits(&bytes, width, count);
                assert!(digits.iter().all(|d| d.abs() <= 1 << (width - 1)));
                // Σ dᵢ·2^(w·i) as a little-endian two's-complement sum over 300 bits.
                let mut acc = vec![0i64; 300];
                for (i, d) in digits.iter().enumerate() {
                    acc[i * width as usize] += i64::from(*d);
                }
                let mut out = [0u8; 38];
                let mut carry = 0i64;
                for (n, a) in acc.iter().enumerate().take(304.min(acc.len())) {
                    let v = a + carry;
                    let b = v.rem_euclid(2);
                    carry = (v - b) / 2;
                    out[n / 8] |= (b as u8) << (n % 8);
                }
                assert_eq!(&out[..32], &bytes[..], "width {width}");
            }
        }
    }
}
