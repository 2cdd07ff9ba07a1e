//! What a witness and a reader of cosignatures parse from anyone: add-checkpoint bodies (decided
//! against a fixed log and head), witness verifier keys, cosigned notes under a quorum policy,
//! tile paths, and a log's published key rotations (`GET /log-keys`) as a reader pinning a key
//! follows them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use chipledger_domain::cosignature::{WitnessKey, WitnessPolicy};
    use chipledger_domain::keys::{SigningKey, VerifierKey};
    use chipledger_domain::witness::{decide, AddCheckpoint, FollowedLog};
    let log = SigningKey::from_seed(&[1; 32]);
    let logs = [FollowedLog {
        origin: "example.com/log".into(),
        keys: vec![VerifierKey::new("example.com/log", log.public_key()).expect("a valid name")],
    }];
    if let Ok(req) = AddCheckpoint::parse(data) {
        let _ = decide(&req, &logs, None);
        let _ = decide(&req, &logs, Some((3, chipledger_domain::merkle::leaf_hash(b"x"))));
        let _ = AddCheckpoint::parse(&req.to_bytes());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = WitnessKey::parse(text);
        let _ = chipledger_domain::tiles::parse_tile_index_path(text);
    }
    // /log-keys: announcements (split on 0xff: envelope, then the checkpoint last).
    {
        use chipledger_domain::rotation::{follow_log, Announcement};
        let parts: Vec<&[u8]> = data.split(|b| *b == 0xff).collect();
        if let Some((checkpoint, envelopes)) = parts.split_last() {
            let proof = [chipledger_domain::merkle::leaf_hash(b"p")];
            let a: Vec<Announcement<'_>> = envelopes
                .iter()
                .enumerate()
                .map(|(i, e)| Announcement { index: i as u64 * 3, envelope: e, inclusion_proof: &proof })
                .collect();
            let pinned = VerifierKey::new("example.com/log", log.public_key()).expect("a valid name");
            let _ = follow_log(pinned, &a, checkpoint);
        }
    }
    if let Ok(note) = chipledger_domain::note::Note::parse(data) {
        let w = WitnessKey::new("w.example", SigningKey::from_seed(&[2; 32]).public_key()).expect("a valid name");
        let policy = WitnessPolicy::new(vec![w], 1).expect("a valid policy");
        let _ = policy.check(&note);
    }
});
