use chipledger_domain::keys::{PublicKey, SigningKey, VerifierKey};
use chipledger_domain::Error;
use rand_core::OsRng;

/// An RNG that always fails, as the OS's can.
struct FailingRng;

impl rand_core::RngCore for FailingRng {
    fn next_u32(&mut self) -> u32 {
        0
    }
    fn next_u64(&mut self) -> u64 {
        0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(0)
    }
    fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), rand_core::Error> {
        Err(std::num::NonZeroU32::new(rand_core::Error::CUSTOM_START).unwrap().into())
    }
}

impl rand_core::CryptoRng for FailingRng {}

// golang.org/x/mod/sumdb/note test data: PeterNeumann's signer and verifier keys.
pub const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
pub const PETER_SEED_B64: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";

pub fn peter() -> SigningKey {
    let raw = chipledger_domain::encoding::b64_decode(PETER_SEED_B64, "seed").unwrap();
    SigningKey::from_seed(&raw[1..].try_into().unwrap())
}

#[track_caller]
fn check_bad_vkey(vkey: &str, reason_part: &str) {
    match VerifierKey::parse(vkey) {
        Err(Error::VerifierKey { reason, .. }) => assert!(reason.contains(reason_part), "{vkey}: {reason}"),
        other => panic!("{vkey}: expected a VerifierKey error, got {other:?}"),
    }
}

#[test]
fn go_verifier_keys_parse_and_round_trip() {
    for vkey in [PETER_VKEY, "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"] {
        let k = VerifierKey::parse(vkey).unwrap();
        assert_eq!(k.to_string(), vkey);
    }
}

#[test]
fn a_seed_gives_the_same_verifier_key_as_go() {
    let vkey = VerifierKey::new("PeterNeumann", peter().public_key()).unwrap();
    assert_eq!(vkey.to_string(), PETER_VKEY);
}

#[test]
fn every_truncation_or_one_character_change_of_a_vkey_is_refused() {
    let b = PETER_VKEY.as_bytes();
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if i == 0 && j == b.len() {
                continue;
            }
            if let Ok(s) = std::str::from_utf8(&b[i..j]) {
                assert!(VerifierKey::parse(s).is_err(), "{s} parsed");
            }
        }
    }
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] = m[i].wrapping_add(1);
        if let Ok(s) = std::str::from_utf8(&m) {
            assert!(VerifierKey::parse(s).is_err(), "{s} parsed");
        }
    }
}

#[test]
fn malformed_vkeys_name_what_is_wrong() {
    check_bad_vkey("PeterNeumann", "expected name+hash+key");
    check_bad_vkey("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW===", "base64");
    check_bad_vkey("PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hex");
    check_bad_vkey("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==", "base64");
    check_bad_vkey("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "algorithm");
    check_bad_vkey("Peter+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match");
}

#[test]
fn small_order_public_keys_are_refused() {
    // The identity point and a point of order 8 encode as these 32 bytes.
    let identity = {
        let mut b = [0u8; 32];
        b[0] = 1;
        b
    };
    assert_eq!(PublicKey::from_bytes(&identity), Err(Error::WeakPublicKey));
    let order8 = hex::decode("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a").unwrap();
    assert_eq!(PublicKey::from_bytes(&order8), Err(Error::WeakPublicKey));
    let mut raw = vec![1u8];
    raw.extend_from_slice(&identity);
    let vkey = format!("weak+00000000+{}", chipledger_domain::encoding::b64_encode(&raw));
    check_bad_vkey(&vkey, "weak");
}

#[test]
fn pem_round_trips_and_debug_never_shows_the_secret() {
    let k = peter();
    let pem = k.to_pkcs8_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let back = SigningKey::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(back.public_key(), k.public_key());
    let debug = format!("{k:?}");
    assert!(debug.contains("redacted"));
    let seed_hex = hex::encode(&chipledger_domain::encoding::b64_decode(PETER_SEED_B64, "s").unwrap()[1..]);
    assert!(!debug.contains(&seed_hex));
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!debug.contains(&body));
}

#[test]
fn malformed_pem_is_a_specific_error() {
    for bad in ["", "not a pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n"] {
        match SigningKey::from_pkcs8_pem(bad) {
            Err(Error::PrivateKeyPem { reason }) => assert!(!reason.is_empty()),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn key_ids_are_the_sha256_of_the_algorithm_byte_and_key() {
    let k = peter();
    let mut raw = vec![1u8];
    raw.extend_from_slice(&k.public_key().to_bytes());
    assert_eq!(k.key_id().as_str(), chipledger_domain::merkle::Hash::sha256(&raw).to_hex());
}

/// A signature with `R` = identity and `s = H(R‖A‖M)·a`: valid under plain cofactorless Ed25519,
/// refused by `verify_strict`. Batch verification must refuse it too, so an audit's fast path
/// reaches the strict verdict.
#[test]
fn batch_verification_refuses_what_strict_refuses() {
    use sha2::{Digest, Sha512};
    let key = peter();
    let a = ed25519_dalek::SigningKey::from_bytes(&{
        let raw = chipledger_domain::encoding::b64_decode(PETER_SEED_B64, "seed").unwrap();
        raw[1..].try_into().unwrap()
    })
    .to_scalar();
    let msg = b"counter=7";
    let mut r = [0u8; 32];
    r[0] = 1; // the identity point
    let k = curve25519_dalek::Scalar::from_hash(
        Sha512::new().chain_update(r).chain_update(key.public_key().to_bytes()).chain_update(msg),
    );
    let mut sig = r.to_vec();
    sig.extend_from_slice((k * a).as_bytes());

    let pk = key.public_key();
    assert!(pk.verify(msg, &sig).is_err(), "strict refuses a small-order R");
    let dalek_sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
    let dalek_pk = ed25519_dalek::VerifyingKey::from_bytes(&pk.to_bytes()).unwrap();
    assert!(
        ed25519_dalek::verify_batch(&[&msg[..]], &[dalek_sig], &[dalek_pk]).is_ok(),
        "the raw batch equation alone would accept it: the pre-check is what makes the verdicts agree"
    );
    let good = key.sign(b"counter=8");
    assert!(chipledger_domain::keys::verify_batch(&[(b"counter=8", &good, pk)], &mut OsRng));
    assert!(!chipledger_domain::keys::verify_batch(&[(b"counter=8", &good, pk), (msg, &sig, pk)], &mut OsRng));
}

#[test]
fn small_order_encodings_are_recognised_without_decompressing() {
    use chipledger_domain::keys::is_small_order_encoding;
    use curve25519_dalek::edwards::CompressedEdwardsY;
    for p in curve25519_dalek::constants::EIGHT_TORSION {
        let mut enc = p.compress().to_bytes();
        assert!(is_small_order_encoding(&enc));
        enc[31] ^= 0x80;
        assert!(is_small_order_encoding(&enc), "either sign of x");
    }
    // y = p + 1 is a non-canonical encoding of the identity.
    let mut noncanonical = [0xffu8; 32];
    noncanonical[0] = 0xee;
    noncanonical[31] = 0x7f;
    assert!(is_small_order_encoding(&noncanonical));
    // Agreement with decompress-and-check on many encodings, valid points or not.
    let mut x = [7u8; 32];
    for i in 0..2000u32 {
        x[..4].copy_from_slice(&i.to_le_bytes());
        let slow = CompressedEdwardsY(x).decompress().is_some_and(|p| p.is_small_order());
        assert_eq!(is_small_order_encoding(&x), slow, "{}", hex::encode(x));
    }
    let real = peter().sign(b"m");
    assert!(!is_small_order_encoding(real[..32].try_into().unwrap()));
}

/// The grouped batch verifier against strict verification and against ed25519-dalek's own batch:
/// many keys, many signatures per key, and each way a signature can be wrong.
#[test]
fn batch_verification_agrees_with_strict_on_every_kind_of_bad_signature() {
    use chipledger_domain::keys::verify_batch;
    let keys: Vec<SigningKey> = (0..5u8).map(|i| SigningKey::from_seed(&[i + 1; 32])).collect();
    let msgs: Vec<Vec<u8>> = (0..40u32).map(|i| format!("statement {i}").into_bytes()).collect();
    let sigs: Vec<Vec<u8>> = msgs.iter().enumerate().map(|(i, m)| keys[i % 5].sign(m).to_vec()).collect();
    let good: Vec<(&[u8], &[u8], PublicKey)> =
        msgs.iter().zip(&sigs).enumerate().map(|(i, (m, s))| (&m[..], &s[..], keys[i % 5].public_key())).collect();
    assert!(verify_batch(&good, &mut OsRng), "40 good signatures by 5 keys");
    assert!(verify_batch(&good[..1], &mut OsRng) && verify_batch(&[], &mut OsRng));
    assert!(!verify_batch(&good, &mut FailingRng), "no randomness, no batch verdict: callers check each");
    let dalek: Vec<ed25519_dalek::Signature> =
        sigs.iter().map(|s| ed25519_dalek::Signature::from_slice(s).unwrap()).collect();
    let dalek_keys: Vec<ed25519_dalek::VerifyingKey> =
        good.iter().map(|(_, _, k)| ed25519_dalek::VerifyingKey::from_bytes(&k.to_bytes()).unwrap()).collect();
    let dalek_msgs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
    assert!(ed25519_dalek::verify_batch(&dalek_msgs, &dalek, &dalek_keys).is_ok());

    // s + L: the same scalar, a non-canonical encoding that strict refuses.
    let mut s_plus_l = sigs[3].clone();
    // L = 2^252 + 27742317777372353535851937790883648493, little-endian.
    let l = hex::decode("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010").unwrap();
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s_plus_l[32 + i]) + u16::from(l[i]) + carry;
        s_plus_l[32 + i] = v as u8;
        carry = v >> 8;
    }
    // R with y >= p: never produced by `compress`.
    let mut r_noncanonical = sigs[3].clone();
    r_noncanonical[..32].copy_from_slice(&[0xff; 32]);
    r_noncanonical[0] = 0xf0;
    r_noncanonical[31] = 0x7f;
    let mut flipped = sigs[3].clone();
    flipped[40] ^= 1;
    let other_key = keys[4].public_key();
    let cases: Vec<(&str, &[u8], Vec<u8>, PublicKey)> = vec![
        ("another message", b"statement 99", sigs[3].clone(), keys[3].public_key()),
        ("another key", &msgs[3], sigs[3].clone(), other_key),
        ("a flipped bit in s", &msgs[3], flipped, keys[3].public_key()),
        ("s + L", &msgs[3], s_plus_l, keys[3].public_key()),
        ("R not canonical", &msgs[3], r_noncanonical, keys[3].public_key()),
        ("too short", &msgs[3], sigs[3][..63].to_vec(), keys[3].public_key()),
    ];
    for (what, msg, sig, key) in &cases {
        assert!(key.verify(msg, sig).is_err(), "strict refuses {what}");
        let mut batch = good.clone();
        batch[3] = (msg, &sig[..], *key);
        assert!(!verify_batch(&batch, &mut OsRng), "batch refuses {what}");
    }
}
