use chipledger_domain::keys::{PublicKey, SigningKey, VerifierKey};
use chipledger_domain::Error;

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

/// The secret scalar of a key made from `seed` (to forge the odd signatures below).
fn secret_scalar(seed: &[u8; 32]) -> curve25519_dalek::Scalar {
    ed25519_dalek::SigningKey::from_bytes(seed).to_scalar()
}

/// A signature by the key of `seed` over `msg` whose `R` is `[r]B + torsion` and whose `s`
/// satisfies the equation for `[r]B`: what a key holder can make and cofactored or randomly
/// weighted batch equations accept (for an order-2 point: whenever the weight is even).
fn signature_with_torsion(seed: &[u8; 32], msg: &[u8], r: u64, torsion: usize) -> Vec<u8> {
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
    use sha2::{Digest, Sha512};
    let a = secret_scalar(seed);
    let public = SigningKey::from_seed(seed).public_key().to_bytes();
    let r = curve25519_dalek::Scalar::from(r) + curve25519_dalek::Scalar::from_hash(Sha512::new().chain_update(msg));
    let big_r = (ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[torsion]).compress();
    let h = curve25519_dalek::Scalar::from_hash(
        Sha512::new().chain_update(big_r.as_bytes()).chain_update(public).chain_update(msg),
    );
    let mut sig = big_r.as_bytes().to_vec();
    sig.extend_from_slice((r + h * a).as_bytes());
    sig
}

/// The verdicts of every path that checks a signature: ed25519-dalek's own `verify_strict`,
/// `PublicKey::verify`, `PreparedKey::verify`, and `first_bad_signature` with the item alone
/// (unprepared) and among others by the same key (prepared and held).
#[track_caller]
fn verdicts(msg: &[u8], sig: &[u8], key: PublicKey, company: &[(Vec<u8>, Vec<u8>)]) -> [bool; 5] {
    use chipledger_domain::keys::{first_bad_signature, PreparedKey, PreparedKeys};
    let dalek = ed25519_dalek::Signature::from_slice(sig).is_ok_and(|s| {
        ed25519_dalek::VerifyingKey::from_bytes(&key.to_bytes()).unwrap().verify_strict(msg, &s).is_ok()
    });
    let mut many: Vec<(&[u8], &[u8], PublicKey)> = company.iter().map(|(m, s)| (&m[..], &s[..], key)).collect();
    many.insert(company.len() / 2, (msg, sig, key));
    let held = PreparedKeys::new(4);
    held.prepare(&key);
    [
        dalek,
        key.verify(msg, sig).is_ok(),
        PreparedKey::new(key).verify(msg, sig).is_ok(),
        first_bad_signature(&[(msg, sig, key)], &PreparedKeys::new(4)).is_none(),
        first_bad_signature(&many, &held).is_none(),
    ]
}

/// Every path accepts exactly what `verify_strict` accepts, on a table of every kind of bad
/// signature — the torsion constructions among them, which the batch equation this replaced
/// accepted about half the time.
#[test]
fn every_signature_check_agrees_with_verify_strict_on_every_kind_of_bad_signature() {
    use sha2::{Digest, Sha512};
    let seed = [3u8; 32];
    let key = SigningKey::from_seed(&seed);
    let pk = key.public_key();
    let company: Vec<(Vec<u8>, Vec<u8>)> = (0..40u32)
        .map(|i| {
            let m = format!("statement {i}").into_bytes();
            let s = key.sign(&m).to_vec();
            (m, s)
        })
        .collect();
    let msg = b"statement 3".as_slice();
    let good = key.sign(msg).to_vec();
    // s + L: the same scalar, a non-canonical encoding.
    let mut s_plus_l = good.clone();
    let l = hex::decode("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010").unwrap();
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s_plus_l[32 + i]) + u16::from(l[i]) + carry;
        s_plus_l[32 + i] = v as u8;
        carry = v >> 8;
    }
    // R with y >= p: never produced by `compress`.
    let mut r_noncanonical = good.clone();
    r_noncanonical[..32].copy_from_slice(&[0xff; 32]);
    r_noncanonical[0] = 0xf0;
    r_noncanonical[31] = 0x7f;
    let mut flipped_s = good.clone();
    flipped_s[40] ^= 1;
    let mut flipped_r = good.clone();
    flipped_r[5] ^= 1;
    let mut sign_bit = good.clone();
    sign_bit[31] ^= 0x80;
    // R = identity, s = h·a: the plain cofactorless equation holds; strict refuses small-order R.
    let mut identity_r = [0u8; 32];
    identity_r[0] = 1;
    let h = curve25519_dalek::Scalar::from_hash(
        Sha512::new().chain_update(identity_r).chain_update(pk.to_bytes()).chain_update(msg),
    );
    let mut small_r = identity_r.to_vec();
    small_r.extend_from_slice((h * secret_scalar(&seed)).as_bytes());
    let other = SigningKey::from_seed(&[4; 32]).public_key();

    let cases: Vec<(&str, &[u8], Vec<u8>, PublicKey)> = vec![
        ("a good signature", msg, good.clone(), pk),
        ("another message", b"statement 99", good.clone(), pk),
        ("another key", msg, good.clone(), other),
        ("a flipped bit in s", msg, flipped_s, pk),
        ("a flipped bit in R", msg, flipped_r, pk),
        ("R's sign bit flipped", msg, sign_bit, pk),
        ("s + L", msg, s_plus_l, pk),
        ("R not canonical", msg, r_noncanonical, pk),
        ("R the identity, s = h·a", msg, small_r, pk),
        ("too short", msg, good[..63].to_vec(), pk),
        ("too long", msg, [good.as_slice(), &[0]].concat(), pk),
        ("empty", msg, Vec::new(), pk),
        ("all zero", msg, vec![0; 64], pk),
    ];
    let mut table: Vec<(String, Vec<u8>)> = cases.iter().map(|(w, _, s, _)| (w.to_string(), s.clone())).collect();
    for torsion in 1..8 {
        let sig = signature_with_torsion(&seed, msg, 11, torsion);
        let v = verdicts(msg, &sig, pk, &company);
        assert_eq!(v, [false; 5], "R with a torsion component of index {torsion}");
        table.push((format!("torsion {torsion}"), sig));
    }
    let v = verdicts(msg, &signature_with_torsion(&seed, msg, 11, 0), pk, &company);
    assert_eq!(v, [true; 5], "the construction with no torsion is an ordinary signature");
    for (what, m, sig, k) in &cases {
        let v = verdicts(m, sig, *k, &company);
        let expected = *what == "a good signature";
        assert_eq!(v, [expected; 5], "{what}: [dalek strict, verify, prepared, alone, among others]");
    }
    assert!(table.len() > 15);
}

/// Random signatures, random changes to good ones: every path agrees with `verify_strict`.
#[test]
fn every_signature_check_agrees_with_verify_strict_on_random_changes() {
    use proptest::prelude::*;
    let seed = [5u8; 32];
    let key = SigningKey::from_seed(&seed);
    let pk = key.public_key();
    let company: Vec<(Vec<u8>, Vec<u8>)> =
        (0..4u32).map(|i| (vec![i as u8; 40], key.sign(&[i as u8; 40]).to_vec())).collect();
    let mut runner =
        proptest::test_runner::TestRunner::new(proptest::test_runner::Config { cases: 300, ..Default::default() });
    runner
        .run(
            &(any::<Vec<u8>>(), 0usize..64, any::<u8>(), any::<[u8; 32]>(), 0u8..4),
            |(msg, at, xor, random_r, how)| {
                let mut sig = key.sign(&msg).to_vec();
                match how {
                    0 => sig[at] ^= xor,
                    1 => sig[..32].copy_from_slice(&random_r),
                    2 => sig[32..].copy_from_slice(&random_r),
                    _ => sig = signature_with_torsion(&seed, &msg, u64::from(xor), at % 8),
                }
                let v = verdicts(&msg, &sig, pk, &company);
                prop_assert!(v.iter().all(|x| *x == v[0]), "disagreement {v:?} on {}", hex::encode(&sig));
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn mixed_order_keys_are_recognised() {
    let pk = SigningKey::from_seed(&[9; 32]).public_key();
    assert!(pk.is_torsion_free());
    for t in 1..8 {
        let mixed = (ed25519_dalek::VerifyingKey::from_bytes(&pk.to_bytes()).unwrap().to_edwards()
            + curve25519_dalek::constants::EIGHT_TORSION[t])
            .compress();
        let mixed = PublicKey::from_bytes(mixed.as_bytes()).expect("a mixed-order key is a valid point");
        assert!(!mixed.is_torsion_free(), "torsion {t}");
    }
}
