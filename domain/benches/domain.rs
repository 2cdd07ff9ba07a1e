//! Benchmarks for the figures issue #2 names: DSSE verify, the Merkle root over 1 M leaves,
//! inclusion/consistency proof generation and verification. Run: `cargo bench -p chipledger-domain`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the point

use std::hint::black_box;

use chipledger_domain::dsse::{Envelope, PAYLOAD_TYPE_IN_TOTO};
use chipledger_domain::keys::{first_bad_signature, PreparedKeys, SigningKey};
use chipledger_domain::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion, Hash, MemoryTree,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const MILLION: u64 = 1 << 20;

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect()
}

/// A payload the size of a one-GPU attestation statement (~3 KiB of JSON).
fn attestation_sized_payload() -> Vec<u8> {
    let mut p = br#"{"_type":"https://in-toto.io/Statement/v1","predicate":{"gpus":["#.to_vec();
    p.extend(std::iter::repeat_n(b'x', 3000));
    p.extend_from_slice(b"\"]}}");
    p
}

fn dsse(c: &mut Criterion) {
    let key = SigningKey::from_seed(&[42u8; 32]);
    let public = key.public_key();
    let payload = attestation_sized_payload();
    let env = Envelope::sign(PAYLOAD_TYPE_IN_TOTO, &payload, &key);
    let json = env.to_json();
    let mut g = c.benchmark_group("dsse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_strict (parse + verify, 3 KiB payload)", |b| {
        b.iter(|| {
            let e = Envelope::from_json(black_box(&json)).unwrap();
            e.verify(&public).unwrap()
        })
    });
    g.bench_function("sign (3 KiB payload)", |b| {
        b.iter(|| Envelope::sign(PAYLOAD_TYPE_IN_TOTO, black_box(&payload), &key))
    });
    g.finish();

    // Signatures as the ledger checks them: 1,024 envelopes of ~900 bytes (an annotation-sized
    // statement), signed by one key or spread over 64 keys; `first_bad_signature` (strict verdict,
    // keys prepared once) against `verify_strict` one by one.
    let mut g = c.benchmark_group("strict");
    g.sample_size(20);
    g.throughput(Throughput::Elements(1024));
    let keys: Vec<SigningKey> = (0..64u8).map(|i| SigningKey::from_seed(&[i; 32])).collect();
    for spread in [1usize, 64] {
        let signed: Vec<(Vec<u8>, Vec<u8>, _)> = (0..1024u32)
            .map(|i| {
                let key = &keys[i as usize % spread];
                let mut p = payload[..900].to_vec();
                p[..4].copy_from_slice(&i.to_le_bytes());
                let (m, s) = Envelope::sign(PAYLOAD_TYPE_IN_TOTO, &p, key).signed_message(&key.key_id()).unwrap();
                (m, s, key.public_key())
            })
            .collect();
        let items: Vec<(&[u8], &[u8], _)> = signed.iter().map(|(m, s, k)| (m.as_slice(), s.as_slice(), *k)).collect();
        g.bench_function(format!("1024 envelopes, {spread} key(s), first_bad_signature"), |b| {
            let held = PreparedKeys::new(64);
            b.iter(|| assert_eq!(first_bad_signature(black_box(&items), &held), None))
        });
        g.bench_function(format!("1024 envelopes, {spread} key(s), verify_strict each"), |b| {
            b.iter(|| assert!(black_box(&items).iter().all(|(m, s, k)| k.verify(m, s).is_ok())))
        });
    }
    g.finish();
}

fn merkle(c: &mut Criterion) {
    let l = leaves(MILLION);
    let tree = MemoryTree::from_leaves(l.clone());
    let size = MILLION - 3; // not a power of two: exercises the right edge
    let r = tree.root_at(size).unwrap();
    let old = 700_001;
    let r_old = tree.root_at(old).unwrap();

    let mut g = c.benchmark_group("merkle");
    g.sample_size(10);
    g.throughput(Throughput::Elements(MILLION));
    g.bench_function("root over 2^20 leaf hashes", |b| b.iter(|| root(black_box(&l))));
    g.finish();

    let mut g = c.benchmark_group("proofs (tree of 2^20 - 3)");
    let mut i = 0u64;
    g.bench_function("inclusion proof generation", |b| {
        b.iter(|| {
            i = (i + 7919) % size;
            inclusion_proof(&tree, black_box(i), size).unwrap()
        })
    });
    let proof = inclusion_proof(&tree, 123_456, size).unwrap();
    g.bench_function("inclusion proof verification", |b| {
        b.iter(|| verify_inclusion(123_456, size, &l[123_456], black_box(&proof), &r).unwrap())
    });
    g.bench_function("consistency proof generation", |b| {
        b.iter_batched(|| (), |_| consistency_proof(&tree, black_box(old), size).unwrap(), BatchSize::SmallInput)
    });
    let cproof = consistency_proof(&tree, old, size).unwrap();
    g.bench_function("consistency proof verification", |b| {
        b.iter(|| verify_consistency(old, size, &r_old, &r, black_box(&cproof)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, dsse, merkle);
criterion_main!(benches);
