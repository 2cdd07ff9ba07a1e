use std::path::Path;

use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::merkle::{inclusion_proof, leaf_hash, MemoryTree};
use chipledger_domain::note::{Checkpoint, TlogProof};

use crate::{fails, ok};

const GO_VKEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";

fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name).display().to_string()
}

#[test]
fn keys_generate_writes_a_private_pem_with_mode_0600_and_prints_the_vkey() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("log.pem");
    let out_s = out.to_str().unwrap();
    let r = ok(&["keys", "generate", "--name", "example.com/log", "--out", out_s]);
    let vkey = VerifierKey::parse(r.stdout.trim()).unwrap();
    assert_eq!(vkey.name(), "example.com/log");
    let pem = std::fs::read_to_string(&out).unwrap();
    let key = SigningKey::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(key.public_key(), *vkey.public_key());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(!r.stderr.contains(pem.lines().nth(1).unwrap()), "the secret never reaches the terminal");
    fails(&["keys", "generate", "--name", "example.com/log", "--out", out_s], "already exists");
    fails(
        &["keys", "generate", "--name", "bad name", "--out", dir.path().join("x.pem").to_str().unwrap()],
        "contains whitespace",
    );
}

#[test]
fn note_verify_accepts_a_real_go_checkpoint_and_refuses_the_wrong_key() {
    let r = ok(&["note", "verify", "--key", GO_VKEY, &data("go-sumdb-checkpoint.txt")]);
    assert!(r.stdout.contains("valid: signed by sum.golang.org"));
    assert!(r.stdout.contains("size 6476701"));
    let other = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    fails(&["note", "verify", "--key", other, &data("go-sumdb-checkpoint.txt")], "no signature by a known key");
    fails(
        &["note", "verify", "--key", "garbage", &data("go-sumdb-checkpoint.txt")],
        "verifier key \"garbage\" is malformed",
    );
    fails(&["note", "verify", "--key", GO_VKEY, &data("README.md")], "malformed at line");
    fails(&["note", "verify", "--key", GO_VKEY, "/nonexistent/note"], "opening /nonexistent/note");
}

#[test]
fn proof_verify_checks_signature_and_inclusion() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_seed(&[7u8; 32]);
    let vkey = VerifierKey::new("example.com/log", key.public_key()).unwrap().to_string();
    let entries: Vec<Vec<u8>> = (0..21).map(|i| format!("{{\"entry\":{i}}}").into_bytes()).collect();
    let tree = MemoryTree::from_leaves(entries.iter().map(|e| leaf_hash(e)).collect());
    let cp =
        Checkpoint { origin: "example.com/log".into(), size: 21, root: tree.root_at(21).unwrap(), extensions: vec![] };
    let proof = TlogProof {
        extra: None,
        index: 13,
        hashes: inclusion_proof(&tree, 13, 21).unwrap(),
        checkpoint: cp.sign("example.com/log", &key).unwrap().to_bytes(),
    };
    let proof_path = dir.path().join("entry.tlog-proof");
    std::fs::write(&proof_path, proof.to_bytes()).unwrap();
    let entry_path = dir.path().join("entry.json");
    std::fs::write(&entry_path, &entries[13]).unwrap();
    let p = proof_path.to_str().unwrap();

    let r = ok(&[
        "proof",
        "verify",
        "--key",
        &vkey,
        "--origin",
        "example.com/log",
        "--leaf-file",
        entry_path.to_str().unwrap(),
        p,
    ]);
    assert!(r.stdout.contains("is entry 13 of \"example.com/log\" at size 21"), "{}", r.stdout);
    let leaf_hex = leaf_hash(&entries[13]).to_hex();
    ok(&["proof", "verify", "--key", &vkey, "--leaf-hash", &leaf_hex, p]);
    ok(&["proof", "verify", "--key", &vkey, "--leaf-hash", &leaf_hash(&entries[13]).to_base64(), p]);

    fails(&["proof", "verify", "--key", &vkey, "--leaf-hash", &leaf_hash(&entries[12]).to_hex(), p], "does not verify");
    fails(&["proof", "verify", "--key", &vkey, "--origin", "other.example/log", "--leaf-hash", &leaf_hex, p], "origin");
    fails(&["proof", "verify", "--key", GO_VKEY, "--leaf-hash", &leaf_hex, p], "no signature by a known key");
    fails(&["proof", "verify", "--key", &vkey, "--leaf-hash", "zz", p], "neither 64 hex digits nor base64");
    std::fs::write(&proof_path, String::from_utf8(proof.to_bytes()).unwrap().replace("index 13", "index x")).unwrap();
    fails(&["proof", "verify", "--key", &vkey, "--leaf-hash", &leaf_hex, p], "line 2");
}

/// The key files `keys generate` writes are the PKCS#8 v1 form (RFC 8410 §7) other tools read:
/// OpenSSL 3 takes them and derives the same public key; the v2 form (with the public key) that
/// earlier versions wrote is still read.
#[test]
fn key_files_are_read_by_openssl_and_the_old_form_still_by_us() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("agent.pem");
    let r = ok(&["keys", "generate", "--name", "hgx-1", "--out", out.to_str().unwrap()]);
    let vkey = VerifierKey::parse(r.stdout.trim()).unwrap();
    let der = std::process::Command::new("openssl")
        .args(["pkey", "-in", out.to_str().unwrap(), "-pubout", "-outform", "DER"])
        .output()
        .expect("openssl is installed (scripts/test installs it)");
    assert!(der.status.success(), "openssl pkey: {}", String::from_utf8_lossy(&der.stderr));
    // SubjectPublicKeyInfo for Ed25519: a 12-byte header, then the 32 key bytes.
    assert_eq!(der.stdout.len(), 44);
    assert_eq!(&der.stdout[12..], &vkey.public_key().to_bytes()[..]);
    // The v2 form: OneAsymmetricKey with the public key, as ed25519-dalek writes it by default.
    let v2 = {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let k = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        k.to_pkcs8_pem(Default::default()).unwrap().to_string()
    };
    let key = SigningKey::from_pkcs8_pem(&v2).unwrap();
    assert_eq!(key.public_key().to_bytes(), ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes());
}
