//! C2SP formats against an implementation nobody here wrote: Mullvad's `sigsum` crate
//! (crates.io, MIT) verifies a tree head signed by chipledger's note code and cosigned by
//! chipledger's `cosignature/v1` witness code, and an inclusion proof from chipledger's Merkle
//! code, with its own parser, message layout and quorum rule. Sigsum's tree heads are C2SP
//! checkpoints whose origin is `sigsum.org/v1/tree/<hex SHA-256 of the log key>`, and its witness
//! cosignatures are C2SP `cosignature/v1` over that checkpoint; so the log here takes that
//! origin. (The log's own tiles and signature are also read by Go's `sumdb/note` and
//! `sumdb/tlog`: tests/cli/tlog_interop.rs.)

use chipledger_domain::cosignature::Cosigner;
use chipledger_domain::keys::SigningKey;
use chipledger_domain::merkle::{self, Hash, MemoryTree};
use chipledger_domain::note::Checkpoint;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A sigsum "proof" (its ascii signature format) for leaf `index` of a `size`-leaf tree whose
/// other leaves are arbitrary, signed and cosigned by chipledger's code. Returns the text and
/// the leaf signer's public key.
fn sigsum_proof(
    log: &SigningKey,
    witnesses: &[(&str, &SigningKey, u64)],
    message: &[u8; 32],
    index: u64,
    size: u64,
) -> (String, [u8; 32]) {
    let signer = SigningKey::from_seed(&[9; 32]);
    // The sigsum leaf: checksum ‖ signature over "sigsum.org/v1/tree-leaf\0" ‖ checksum ‖ key
    // hash, where the checksum is SHA-256 of the message (itself SHA-256 of the data).
    let checksum = Hash::sha256(&Hash::sha256(message).0);
    let leaf_sig = signer.sign(&[b"sigsum.org/v1/tree-leaf\x00".as_slice(), &checksum.0].concat());
    let leaf_keyhash = Hash::sha256(&signer.public_key().to_bytes());
    let leaf = [checksum.0.as_slice(), &leaf_sig, &leaf_keyhash.0].concat();
    let leaves: Vec<Hash> = (0..size)
        .map(|i| if i == index { merkle::leaf_hash(&leaf) } else { merkle::leaf_hash(format!("other {i}").as_bytes()) })
        .collect();
    let tree = MemoryTree::from_leaves(leaves);
    let root = tree.root_at(size).unwrap();
    let proof = merkle::inclusion_proof(&tree, index, size).unwrap();

    let log_hash = Hash::sha256(&log.public_key().to_bytes());
    let origin = format!("sigsum.org/v1/tree/{}", log_hash.to_hex());
    let cp = Checkpoint { origin: origin.clone(), size, root, extensions: vec![] };
    let mut note = cp.sign(&origin, log).unwrap();
    let text = note.text.clone();
    let mut cosignatures = String::new();
    for (name, key, time) in witnesses {
        let line = Cosigner { name, key }.cosign(&text, *time).unwrap();
        // cosignature/v1: 8-byte big-endian time, then the signature.
        let (t, sig) = line.signature.split_at(8);
        assert_eq!(u64::from_be_bytes(t.try_into().unwrap()), *time);
        cosignatures.push_str(&format!(
            "cosignature={} {time} {}\n",
            Hash::sha256(&key.public_key().to_bytes()).to_hex(),
            hex(sig)
        ));
        note.signatures.push(line);
    }
    let log_sig = &note.signatures[0].signature;
    let mut out = format!(
        "version=2\nlog={}\nleaf={} {}\n\nsize={size}\nroot_hash={}\nsignature={}\n{cosignatures}\nleaf_index={index}\n",
        log_hash.to_hex(),
        leaf_keyhash.to_hex(),
        hex(&leaf_sig),
        root.to_hex(),
        hex(log_sig)
    );
    for h in proof {
        out.push_str(&format!("node_hash={}\n", h.to_hex()));
    }
    (out, signer.public_key().to_bytes())
}

fn policy(log: &SigningKey, witnesses: &[(&str, &SigningKey)], quorum: &str) -> sigsum::Policy {
    let mut text = format!("log {}\n", hex(&log.public_key().to_bytes()));
    for (name, key) in witnesses {
        text.push_str(&format!("witness {name} {}\n", hex(&key.public_key().to_bytes())));
    }
    text.push_str(&format!("quorum {quorum}\n"));
    sigsum::Policy::parse(&text).unwrap()
}

#[test]
fn sigsum_verifies_chipledgers_checkpoint_cosignatures_and_inclusion_proof() {
    let log = SigningKey::from_seed(&[1; 32]);
    let (w1, w2, w3) =
        (SigningKey::from_seed(&[2; 32]), SigningKey::from_seed(&[3; 32]), SigningKey::from_seed(&[4; 32]));
    let message = [7u8; 32];
    // Two of three witnesses cosigned; the policy asks for any two.
    let two_of_three = {
        let mut text = format!("log {}\n", hex(&log.public_key().to_bytes()));
        for (n, k) in [("w1", &w1), ("w2", &w2), ("w3", &w3)] {
            text.push_str(&format!("witness {n} {}\n", hex(&k.public_key().to_bytes())));
        }
        text.push_str("group g 2 w1 w2 w3\nquorum g\n");
        sigsum::Policy::parse(&text).unwrap()
    };
    for (index, size) in [(0, 1), (3, 5), (12, 13), (700, 1000)] {
        let (text, signer) =
            sigsum_proof(&log, &[("w1", &w1, 1_770_000_000), ("w3", &w3, 1_770_000_001)], &message, index, size);
        let sig = sigsum::SigsumSignature::from_ascii(&text).unwrap();
        sigsum::verify(&sigsum::Hash::new(message), &sig, &[signer.into()], &two_of_three)
            .unwrap_or_else(|e| panic!("leaf {index} of {size}: {e}\n{text}"));
    }

    // Controls: the same verifier refuses a quorum of one, a flipped cosignature, a flipped
    // log signature and a proof for another leaf.
    let (one, signer) = sigsum_proof(&log, &[("w1", &w1, 1_770_000_000)], &message, 3, 5);
    let sig = sigsum::SigsumSignature::from_ascii(&one).unwrap();
    let e = sigsum::verify(&sigsum::Hash::new(message), &sig, &[signer.into()], &two_of_three).unwrap_err();
    assert!(e.to_string().contains("not enough valid cosignatures"), "{e}");
    sigsum::verify(&sigsum::Hash::new(message), &sig, &[signer.into()], &policy(&log, &[("w1", &w1)], "w1")).unwrap();

    let (good, signer) = sigsum_proof(&log, &[("w1", &w1, 5), ("w2", &w2, 6)], &message, 3, 5);
    let flip = |text: &str, key: &str| -> String {
        text.lines()
            .map(|l| match l.strip_prefix(key) {
                Some(rest) => {
                    let mut bytes = rest.to_string().into_bytes();
                    let last = bytes.len() - 1;
                    bytes[last] = if bytes[last] == b'0' { b'1' } else { b'0' };
                    format!("{key}{}", String::from_utf8(bytes).unwrap())
                }
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    };
    for (key, expected) in [("cosignature=", "bad witness cosignature"), ("signature=", "bad log signature")] {
        let bad = sigsum::SigsumSignature::from_ascii(&flip(&good, key)).unwrap();
        let e = sigsum::verify(&sigsum::Hash::new(message), &bad, &[signer.into()], &two_of_three).unwrap_err();
        assert!(e.to_string().contains(expected), "{key}: {e}");
    }
    let other = sigsum::SigsumSignature::from_ascii(&good.replace("leaf_index=3", "leaf_index=2")).unwrap();
    assert!(sigsum::verify(&sigsum::Hash::new(message), &other, &[signer.into()], &two_of_three).is_err());
}
