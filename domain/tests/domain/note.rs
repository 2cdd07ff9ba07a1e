use chipledger_domain::keys::VerifierKey;
use chipledger_domain::merkle::{leaf_hash, Hash, MemoryTree};
use chipledger_domain::note::{open_checkpoint, Checkpoint, Note, TlogProof};
use chipledger_domain::Error;

use crate::keys::{peter, PETER_VKEY};

const TEXT: &str =
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG: &str =
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const ENOCH_SIG: &str =
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

pub const GO_SUMDB_VKEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
/// Real checkpoints published by sum.golang.org (as quoted in public repositories).
pub const GO_SUMDB_CHECKPOINTS: [&str; 2] = [
    "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n— sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n",
    "go.sum database tree\n65209736\n5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n\n— sum.golang.org Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdlUErfcZz7l/R3cVtYspg3dxXABkGZZKdsQ8=\n",
];

fn keys(v: &[&str]) -> Vec<VerifierKey> {
    v.iter().map(|k| VerifierKey::parse(k).unwrap()).collect()
}

#[track_caller]
fn check_malformed(msg: &str) {
    match Note::open(msg.as_bytes(), &keys(&[PETER_VKEY])) {
        Err(Error::NoteMalformed { .. }) => {}
        other => panic!("{msg:?}: expected NoteMalformed, got {other:?}"),
    }
}

#[test]
fn signing_reproduces_go_signed_note_bytes_exactly() {
    let note = Note::sign(TEXT, "PeterNeumann", &peter()).unwrap();
    assert_eq!(String::from_utf8(note.to_bytes()).unwrap(), format!("{TEXT}\n{PETER_SIG}"));
}

#[test]
fn unknown_signers_are_ignored_and_one_known_key_suffices() {
    let msg = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    let v = Note::open(msg.as_bytes(), &keys(&[PETER_VKEY])).unwrap();
    assert_eq!(v.text, TEXT);
    assert_eq!(v.verified_by, vec!["PeterNeumann"]);
    assert_eq!(v.unknown_signers, vec!["EnochRoot+af0cfe78"]);
    let both = Note::open(msg.as_bytes(), &keys(&[PETER_VKEY, ENOCH_VKEY])).unwrap();
    assert_eq!(both.verified_by, vec!["PeterNeumann", "EnochRoot"]);
}

#[test]
fn a_note_no_known_key_signed_is_refused() {
    let msg = format!("{TEXT}\n{ENOCH_SIG}");
    match Note::open(msg.as_bytes(), &keys(&[PETER_VKEY])) {
        Err(Error::NoteUnverified { signers }) => assert_eq!(signers, "EnochRoot+af0cfe78"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_bad_signature_by_a_known_key_is_refused() {
    let msg = format!("{TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    assert!(matches!(Note::open(msg.as_bytes(), &keys(&[PETER_VKEY])), Err(Error::NoteBadSignature { .. })));
    let altered = format!("{}\n{PETER_SIG}", TEXT.replace("answer", "ANSWER"));
    assert!(matches!(Note::open(altered.as_bytes(), &keys(&[PETER_VKEY])), Err(Error::NoteBadSignature { .. })));
}

#[test]
fn malformed_notes_are_refused_with_a_line_number() {
    check_malformed(TEXT);
    check_malformed(&format!("{TEXT}\n"));
    check_malformed(&format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]));
    check_malformed(&format!("\x01{TEXT}\n{PETER_SIG}"));
    check_malformed(&format!("{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"));
    check_malformed(&format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"));
    check_malformed(&format!("{TEXT}\n{}", PETER_SIG.repeat(101)));
    assert!(matches!(Note::parse(&[0xff, b'\n', b'\n']), Err(Error::NoteMalformed { .. })));
}

#[test]
fn real_go_checksum_database_checkpoints_verify() {
    let k = keys(&[GO_SUMDB_VKEY]);
    for cp in GO_SUMDB_CHECKPOINTS {
        let v = open_checkpoint(cp.as_bytes(), &k, Some("go.sum database tree")).unwrap();
        assert!(v.checkpoint.size > 1_000_000);
        assert_eq!(v.note.verified_by, vec!["sum.golang.org"]);
    }
    let tampered = GO_SUMDB_CHECKPOINTS[0].replace("6476701", "6476702");
    assert!(open_checkpoint(tampered.as_bytes(), &k, None).is_err());
    assert!(matches!(
        open_checkpoint(GO_SUMDB_CHECKPOINTS[0].as_bytes(), &k, Some("example.com/log")),
        Err(Error::OriginMismatch { .. })
    ));
}

#[test]
fn checkpoint_bytes_are_frozen() {
    let cp = Checkpoint {
        origin: "chipledger.example/log".into(),
        size: 3,
        root: Hash::from_hex("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77").unwrap(),
        extensions: vec!["ext one".into()],
    };
    let text = cp.to_text();
    assert_eq!(text, "chipledger.example/log\n3\nrra8/idLcKFPsGel5VeCZNsPqbUa9eC6FZFY8yngbnc=\next one\n");
    assert_eq!(Checkpoint::parse(&text).unwrap(), cp);
    let note = cp.sign("PeterNeumann", &peter()).unwrap();
    let bytes = String::from_utf8(note.to_bytes()).unwrap();
    // Ed25519 is deterministic; cross-checked with Python `cryptography` over the same text.
    assert_eq!(
        bytes,
        format!("{text}\n— PeterNeumann x08go7t/x8OKZxgehHqIBwMcwXAnb7YcBV3C+amz/CT17OuFICBxZLY4cjDreG7ARQNzIDm0eP/s8vwYV0+yR6gQzgY=\n")
    );
    let v = open_checkpoint(bytes.as_bytes(), &keys(&[PETER_VKEY]), Some("chipledger.example/log")).unwrap();
    assert_eq!(v.checkpoint, cp);
    let again = cp.sign("PeterNeumann", &peter()).unwrap();
    assert_eq!(again.to_bytes(), note.to_bytes());
}

#[test]
fn malformed_checkpoints_name_the_line() {
    for (text, line) in [
        ("o\n", 2),
        ("o\n01\nrra8/idLcKFPsGel5VeCZNsPqbUa9eC6FZFY8yngbnc=\n", 2),
        ("o\n-1\nrra8/idLcKFPsGel5VeCZNsPqbUa9eC6FZFY8yngbnc=\n", 2),
        ("o\n3\nnot base64\n", 3),
        ("o\n3\nAAAA\n", 3),
    ] {
        match Checkpoint::parse(text) {
            Err(Error::Checkpoint { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

fn sample_proof(index: u64) -> (TlogProof, Hash) {
    let leaves: Vec<Hash> = (0u8..11).map(|i| leaf_hash(&[i])).collect();
    let t = MemoryTree::from_leaves(leaves.clone());
    let cp = Checkpoint {
        origin: "chipledger.example/log".into(),
        size: 11,
        root: t.root_at(11).unwrap(),
        extensions: vec![],
    };
    let note = cp.sign("PeterNeumann", &peter()).unwrap();
    let hashes = chipledger_domain::merkle::inclusion_proof(&t, index, 11).unwrap();
    (TlogProof { extra: Some(b"hello".to_vec()), index, hashes, checkpoint: note.to_bytes() }, leaves[index as usize])
}

#[test]
fn tlog_proofs_round_trip_and_verify() {
    let (proof, leaf) = sample_proof(7);
    let bytes = proof.to_bytes();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra aGVsbG8=\nindex 7\n"));
    let parsed = TlogProof::parse(&bytes).unwrap();
    assert_eq!(parsed, proof);
    let v = parsed.verify(&keys(&[PETER_VKEY]), Some("chipledger.example/log"), &leaf).unwrap();
    assert_eq!(v.checkpoint.size, 11);
    assert!(matches!(
        parsed.verify(&keys(&[PETER_VKEY]), None, &leaf_hash(b"other")),
        Err(Error::InclusionProof { .. })
    ));
    assert!(matches!(parsed.verify(&keys(&[ENOCH_VKEY]), None, &leaf), Err(Error::NoteUnverified { .. })));
}

#[test]
fn malformed_tlog_proofs_name_the_line() {
    let (proof, _) = sample_proof(3);
    let good = String::from_utf8(proof.to_bytes()).unwrap();
    for (bad, line) in [
        (good.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1), 1),
        (good.replacen("index 3", "index 03", 1), 3),
        (good.replacen("index 3", "idx 3", 1), 3),
        (good.replacen("extra aGVsbG8=", "extra !!", 1), 2),
    ] {
        match TlogProof::parse(bad.as_bytes()) {
            Err(Error::ProofMalformed { line: l, .. }) => assert_eq!(l, line, "{bad:?}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let no_blank = good.replace("\n\n", "\n");
    assert!(matches!(TlogProof::parse(no_blank.as_bytes()), Err(Error::ProofMalformed { .. })));
}
