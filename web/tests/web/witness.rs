//! The C2SP tlog-witness: it cosigns a growing log, answers a stale old size with 409 and the
//! size it holds, and refuses a fork of the log (a second database with the same key) — 409 at
//! the size it cosigned, 422 past it — and each spec refusal changes nothing.

use std::sync::Arc;

use axum::http::StatusCode;
use chipledger_domain::cosignature::WitnessKey;
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::FixedClock;
use chipledger_domain::note::Note;
use chipledger_domain::witness::{AddCheckpoint, FollowedLog};
use chipledger_ledger::witness::WitnessState;
use chipledger_ledger::{Ledger, LedgerConfig};
use chipledger_web::{witness_router, ServerConfig, Witness};

use crate::{note, send_to, world, As, NOW};

fn witness(log: &Ledger, dir: &std::path::Path) -> Arc<Witness> {
    Arc::new(Witness {
        name: "witness.example/w1".into(),
        key: SigningKey::from_seed(&[42; 32]),
        logs: vec![FollowedLog { origin: log.origin().into(), keys: vec![log.verifier_key().clone()] }],
        state: WitnessState::open(&dir.join("witness.db")).unwrap(),
    })
}

fn submit(app: &axum::Router, log: &Ledger, old: u64) -> crate::Answer {
    let (size, checkpoint) = log.checkpoint().unwrap();
    let proof = if old == 0 || old > size { vec![] } else { log.consistency_proof(old, size).unwrap() };
    let body = AddCheckpoint { old, proof, checkpoint: checkpoint.into_bytes() }.to_bytes();
    send_to(app.clone(), As::Nobody, "POST", "/add-checkpoint", "text/plain", body)
}

#[test]
fn a_witness_cosigns_a_growing_log_and_refuses_a_fork() {
    let w = world();
    let state_dir = tempfile::tempdir().unwrap();
    let wit = witness(&w.ledger, state_dir.path());
    let vkey: WitnessKey = wit.vkey().unwrap();
    let app = witness_router(wit.clone(), &ServerConfig::default());
    // A fork: the same log copied now, to grow apart from here on.
    let fork_dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(w.dir.path()).unwrap() {
        let f = f.unwrap();
        if f.file_type().unwrap().is_file() {
            std::fs::copy(f.path(), fork_dir.path().join(f.file_name())).unwrap();
        }
    }
    // First contact: old size 0, no proof.
    let a = submit(&app, &w.ledger, 0);
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let (size, cp) = w.ledger.checkpoint().unwrap();
    let mut cosigned = Note::parse(cp.as_bytes()).unwrap();
    cosigned.signatures.extend(Note::parse(format!("x\n\n{}", a.text()).as_bytes()).unwrap().signatures);
    assert!(vkey.cosignature_time(&cosigned).unwrap().unwrap() > 1_700_000_000);
    cosigned.verify(std::slice::from_ref(w.ledger.verifier_key())).unwrap();
    let mut last = size;
    // The log grows; each checkpoint is cosigned from the last.
    for round in 0..3 {
        let notes: Vec<Vec<u8>> = (0..5).map(|i| note(&w.auditor_key, 100 + round * 10 + i)).collect();
        w.ledger.append(&notes).unwrap();
        let a = submit(&app, &w.ledger, last);
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        last = w.ledger.size();
        assert_eq!(wit.state.head(w.ledger.origin()).unwrap().unwrap().0, last);
    }
    // A stale old size: 409 and the size it holds, in the spec's content type.
    let a = submit(&app, &w.ledger, size);
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(a.headers.get("content-type").unwrap(), "text/x.tlog.size");
    assert_eq!(a.text(), format!("{last}\n"));
    // The fork grows to the same size with other entries: 409 at that size, 422 past it.
    let fork = Ledger::open(fork_dir.path(), LedgerConfig::default(), Arc::new(FixedClock(NOW))).unwrap();
    let other: Vec<Vec<u8>> = (0..15).map(|i| note(&w.auditor_key, 500 + i)).collect();
    fork.append(&other).unwrap();
    assert_eq!(fork.size(), last);
    let a = submit(&app, &fork, last);
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text());
    fork.append(&[note(&w.auditor_key, 600)]).unwrap();
    let a = submit(&app, &fork, last);
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text());
    assert_eq!(wit.state.head(w.ledger.origin()).unwrap().unwrap().0, last, "a refusal changes nothing");
    // The real log goes on.
    w.ledger.append(&[note(&w.auditor_key, 700)]).unwrap();
    assert_eq!(submit(&app, &w.ledger, last).status, StatusCode::OK);
}

#[test]
fn unknown_logs_foreign_signatures_and_bad_bodies_get_the_spec_statuses() {
    let w = world();
    let state_dir = tempfile::tempdir().unwrap();
    let app = witness_router(witness(&w.ledger, state_dir.path()), &ServerConfig::default());
    // Another log (another origin): 404.
    let other_dir = tempfile::tempdir().unwrap();
    let (other, _) =
        Ledger::init(other_dir.path(), "other.example/log", Arc::new(FixedClock(NOW)), &mut rand_core::OsRng).unwrap();
    assert_eq!(submit(&app, &other, 0).status, StatusCode::NOT_FOUND);
    // The right origin signed by another key: 403.
    let impostor_dir = tempfile::tempdir().unwrap();
    let (impostor, _) =
        Ledger::init(impostor_dir.path(), w.ledger.origin(), Arc::new(FixedClock(NOW)), &mut rand_core::OsRng).unwrap();
    assert_ne!(impostor.verifier_key(), w.ledger.verifier_key());
    assert_eq!(submit(&app, &impostor, 0).status, StatusCode::FORBIDDEN);
    let _ = VerifierKey::parse(&w.ledger.verifier_key().to_string()).unwrap();
    // Old size past the checkpoint: 400; garbage: 400.
    let size = w.ledger.size();
    assert_eq!(submit(&app, &w.ledger, size + 1).status, StatusCode::BAD_REQUEST);
    let a = send_to(app.clone(), As::Nobody, "POST", "/add-checkpoint", "text/plain", b"old 0\n".to_vec());
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // None of it moved the witness: first contact still works.
    assert_eq!(submit(&app, &w.ledger, 0).status, StatusCode::OK);
}

/// Anyone may submit the log's public checkpoint to its witness first; the log still gets, and
/// serves, the witness's cosignature of it (a witness that already holds the size is asked again
/// from that size).
#[test]
fn a_checkpoint_someone_else_submitted_first_is_still_cosigned_for_the_log() {
    let w = world();
    let state_dir = tempfile::tempdir().unwrap();
    let wit = witness(&w.ledger, state_dir.path());
    let vkey = wit.vkey().unwrap();
    // Someone else, first.
    let app = witness_router(wit.clone(), &ServerConfig::default());
    assert_eq!(submit(&app, &w.ledger, 0).status, StatusCode::OK);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        chipledger_web::serve_witness(wit, "127.0.0.1:0", ServerConfig::default(), |a| tx.send(a).unwrap())
    });
    let witness_addr = rx.recv_timeout(std::time::Duration::from_secs(20)).unwrap();
    let config = ServerConfig {
        witnesses: vec![chipledger_web::WitnessTarget { key: vkey.clone(), url: format!("http://{witness_addr}") }],
        witness_every: std::time::Duration::from_millis(50),
        ..ServerConfig::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let ledger = w.ledger.clone();
    std::thread::spawn(move || chipledger_web::serve(ledger, "127.0.0.1:0", config, |a| tx.send(a).unwrap()));
    rx.recv_timeout(std::time::Duration::from_secs(20)).unwrap();
    for _ in 0..200 {
        let (_, note) = w.ledger.cosigned_checkpoint().unwrap();
        let note = Note::parse(note.as_bytes()).unwrap();
        if let Some(t) = vkey.cosignature_time(&note) {
            t.unwrap();
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the log never kept the witness's cosignature");
}
