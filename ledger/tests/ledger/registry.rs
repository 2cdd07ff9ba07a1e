//! One registry semantics: what an append accepts, a replay of the log accepts too.
//!
//! A seeded random walk of enrollments, revocations, expiries and annotations — with record
//! times at and around every boundary, whole-second and fractional — appended in random batch
//! sizes, the log reopened (registry from the views) and its views rebuilt along the way. Each
//! call's outcome is compared with a model that replays the rules over exact times: the log must
//! accept exactly the batches the model accepts and refuse the others at the model's position.
//! At the end the audit (the log's own replay) must pass.
//!
//! Bounded in CI; `CHIPLEDGER_REGISTRY_RECORDS=100000` runs it long (and
//! `CHIPLEDGER_REGISTRY_SEED` picks another walk).

use std::sync::{Arc, Mutex};

use chipledger_domain::identify::Severity;
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::Clock;
use chipledger_domain::merkle::Hash;
use chipledger_domain::records::{
    sign_record, Annotation, AnnotationTarget, KeyEnrollment, KeyRevocation, Role, FORMAT_VERSION,
};
use chipledger_ledger::{Error, Ledger, LedgerConfig};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use time::{Duration, OffsetDateTime};

use crate::NOW;

/// A clock the test moves.
#[derive(Debug)]
struct StepClock(Mutex<OffsetDateTime>);

impl Clock for StepClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

/// What the model knows of one enrolled key.
#[derive(Debug, Clone)]
struct ModelKey {
    role: Role,
    valid_from: OffsetDateTime,
    valid_until: Option<OffsetDateTime>,
    revoked: bool,
    last_counter: u64,
}

/// One record the walk wants to append, with what the model needs to judge it.
#[derive(Debug, Clone)]
enum Op {
    Enroll { key_index: usize, model: ModelKey },
    Revoke { target: usize },
    Annotate,
}

#[derive(Debug, Clone)]
struct Planned {
    signer: usize,
    counter: u64,
    made_at: OffsetDateTime,
    op: Op,
    envelope: Vec<u8>,
}

/// The model: the registry a replay of the accepted records builds, by key index in `held`.
#[derive(Debug, Clone, Default)]
struct Model {
    keys: Vec<Option<ModelKey>>,
}

impl Model {
    /// Whether the record is accepted at `now`; applies it when it is.
    fn accept(&mut self, p: &Planned, now: OffsetDateTime, config: &LedgerConfig) -> bool {
        if p.made_at > now + config.skew || p.made_at < now - config.max_delay {
            return false;
        }
        let Some(Some(k)) = self.keys.get(p.signer) else { return false };
        if k.revoked || p.made_at < k.valid_from || k.valid_until.is_some_and(|u| p.made_at >= u) {
            return false;
        }
        if p.counter <= k.last_counter {
            return false;
        }
        let may = match &p.op {
            Op::Enroll { key_index, .. } => {
                k.role == Role::Admin && self.keys.get(*key_index).is_none_or(Option::is_none)
            }
            Op::Revoke { target } => {
                k.role == Role::Admin && matches!(self.keys.get(*target), Some(Some(t)) if !t.revoked)
            }
            Op::Annotate => matches!(k.role, Role::Admin | Role::Auditor),
        };
        if !may {
            return false;
        }
        match &p.op {
            Op::Enroll { key_index, model } => {
                if self.keys.len() <= *key_index {
                    self.keys.resize(*key_index + 1, None);
                }
                self.keys[*key_index] = Some(model.clone());
            }
            Op::Revoke { target } => {
                if let Some(Some(t)) = self.keys.get_mut(*target) {
                    t.revoked = true;
                }
            }
            Op::Annotate => {}
        }
        if let Some(Some(k)) = self.keys.get_mut(p.signer) {
            k.last_counter = k.last_counter.max(p.counter);
        }
        true
    }
}

/// The same instant without its fraction of a second.
fn whole(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap()
}

/// A time at or around one of the boundaries that matter for `k` at `now`.
fn boundary_time(
    rng: &mut ChaCha20Rng,
    k: Option<&ModelKey>,
    now: OffsetDateTime,
    config: &LedgerConfig,
) -> OffsetDateTime {
    let one_ns = Duration::nanoseconds(1);
    if rng.next_u32() % 10 < 8 {
        // Most records: a moment ago, no earlier than the key's start.
        let t = now - Duration::nanoseconds(i64::from(rng.next_u32() % 500_000_000));
        return k.map_or(t, |k| t.max(k.valid_from));
    }
    let mut anchors = vec![now, now + config.skew, now - config.max_delay + Duration::seconds(1)];
    if let Some(k) = k {
        anchors.push(k.valid_from);
        if let Some(u) = k.valid_until {
            anchors.push(u);
        }
    }
    let anchor = anchors[rng.next_u32() as usize % anchors.len()];
    match rng.next_u32() % 7 {
        0 => anchor,
        1 => whole(anchor),
        2 => anchor - one_ns,
        3 => anchor + one_ns,
        4 => whole(anchor) + Duration::seconds(1),
        5 => anchor - Duration::nanoseconds(i64::from(rng.next_u32() % 1_000_000_000)),
        _ => anchor + Duration::nanoseconds(i64::from(rng.next_u32() % 1_000_000_000)),
    }
}

#[test]
fn every_record_the_log_accepts_passes_its_audit_and_every_refusal_matches_a_replay() {
    let records: usize =
        std::env::var("CHIPLEDGER_REGISTRY_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_500);
    let seed: u64 = std::env::var("CHIPLEDGER_REGISTRY_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(21);
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    // Start mid-second, so that the log's own first enrollment has a fraction too.
    let clock = Arc::new(StepClock(Mutex::new(NOW + Duration::nanoseconds(861_754_524))));
    let config = LedgerConfig::default();
    let (ledger, info) = Ledger::init(dir.path(), "test.example/registry", clock.clone(), &mut rng).unwrap();
    let mut ledger = Some(ledger);
    let admin = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&info.admin_key_path).unwrap()).unwrap();
    let mut held = vec![admin];
    let mut model = Model {
        keys: vec![Some(ModelKey {
            role: Role::Admin,
            valid_from: clock.now(),
            valid_until: None,
            revoked: false,
            last_counter: 1,
        })],
    };

    let (mut planned_total, mut accepted, mut refused, mut calls, mut reopens, mut rebuilds) = (0usize, 0, 0, 0, 0, 0);
    while planned_total < records {
        // Time moves on by a random fraction of a few seconds.
        {
            let mut now = clock.0.lock().unwrap();
            *now += Duration::nanoseconds(i64::from(rng.next_u32() % 3_000_000_000));
        }
        let now = clock.now();
        let batch = if rng.next_u32().is_multiple_of(4) {
            1 + (rng.next_u32() % 16) as usize
        } else {
            1 + (rng.next_u32() % 3) as usize
        };
        let mut plan: Vec<Planned> = Vec::with_capacity(batch);
        // The model as the batch goes, so later records can build on earlier ones in it.
        let mut scratch = model.clone();
        for _ in 0..batch {
            let p = plan_one(&mut rng, &mut held, &scratch, now, &config);
            scratch.accept(&p, now, &config);
            plan.push(p);
        }
        planned_total += plan.len();
        // What the model says of the batch: all accepted, or refused at the first bad record.
        let mut trial = model.clone();
        let expected_refusal = plan.iter().position(|p| !trial.accept(p, now, &config));
        let envelopes: Vec<Vec<u8>> = plan.iter().map(|p| p.envelope.clone()).collect();
        let outcome = ledger.as_ref().unwrap().append(&envelopes);
        calls += 1;
        match (expected_refusal, outcome) {
            (None, Ok(receipts)) => {
                assert_eq!(receipts.len(), plan.len());
                model = trial;
                accepted += plan.len();
            }
            (Some(at), Err(Error::Rejected { position, .. })) => {
                assert_eq!(
                    position, at,
                    "call {calls}: the log refused a different record than a replay would: {plan:#?}"
                );
                refused += 1;
            }
            (None, Err(e)) => panic!("call {calls}: the log refused what a replay accepts: {e}\n{plan:#?}"),
            (Some(at), Ok(_)) => panic!("call {calls}: the log accepted what a replay refuses at {at}:\n{plan:#?}"),
            (_, Err(e)) => panic!("call {calls}: {e}"),
        }
        // Reopen (registry from the views) and rebuild the views a few dozen times over the
        // walk, whatever its length: each reads the whole log.
        let period = 40.max(records as u32 / 150);
        match rng.next_u32() % period {
            0 => {
                drop(ledger.take()); // closed before it is opened again
                ledger = Some(Ledger::open(dir.path(), LedgerConfig::default(), clock.clone()).unwrap());
                reopens += 1;
            }
            1 if rng.next_u32().is_multiple_of(2) => {
                ledger.as_ref().unwrap().rebuild_views().unwrap();
                rebuilds += 1;
            }
            _ => {}
        }
    }
    let ledger = ledger.unwrap();
    let report = ledger.audit(&mut |_, _| {}).unwrap();
    assert_eq!(report.problem, None, "the log does not pass its own audit");
    assert_eq!(report.entries as usize, accepted + 1);
    eprintln!(
        "registry walk (seed {seed}): {planned_total} records planned in {calls} calls; {accepted} accepted, \
         {refused} calls refused; {reopens} reopens, {rebuilds} view rebuilds; audit clean over {} entries",
        report.entries
    );
    assert!(accepted > records / 5 && refused > calls / 10, "the walk explores both sides: {accepted} / {refused}");
}

/// One random record, signed, against the model state `m` at `now`.
fn plan_one(
    rng: &mut ChaCha20Rng,
    held: &mut Vec<SigningKey>,
    m: &Model,
    now: OffsetDateTime,
    config: &LedgerConfig,
) -> Planned {
    // Mostly a key the model holds usable now; sometimes any key the walk made (never enrolled,
    // refused, revoked, expired, or of a role that may not sign the record).
    let usable: Vec<usize> = (0..held.len())
        .filter(|i| {
            matches!(m.keys.get(*i), Some(Some(k)) if !k.revoked && k.role != Role::Agent
                && k.valid_from <= now && k.valid_until.is_none_or(|u| now < u))
        })
        .collect();
    let signer = if rng.next_u32() % 10 < 9 && !usable.is_empty() {
        usable[rng.next_u32() as usize % usable.len()]
    } else {
        (rng.next_u32() as usize) % held.len()
    };
    let known = m.keys.get(signer).and_then(Option::as_ref);
    let last = known.map_or(0, |k| k.last_counter);
    // Mostly the next counter; sometimes one already used (refused), sometimes a jump ahead.
    let counter = match rng.next_u32() % 12 {
        0 => last.saturating_sub(u64::from(rng.next_u32() % 2)),
        1 => last + 2 + u64::from(rng.next_u32() % 1000),
        _ => last + 1,
    };
    let made_at = boundary_time(rng, known, now, config);
    let key = &held[signer];
    // Mostly what the signer's role may sign; sometimes not.
    let admin = known.is_some_and(|k| k.role == Role::Admin);
    let pick = if admin || rng.next_u32().is_multiple_of(20) { rng.next_u32() % 10 } else { 9 };
    let (op, envelope) = match pick {
        0..=2 => {
            let new_key = SigningKey::generate(rng);
            let role = [Role::Admin, Role::Auditor, Role::Auditor, Role::Agent][rng.next_u32() as usize % 4];
            let valid_from = match rng.next_u32() % 4 {
                0 => now,
                1 => whole(now),
                2 => made_at,
                _ => now + Duration::nanoseconds(i64::from(rng.next_u32() % 2_000_000_000)),
            };
            let valid_until = match rng.next_u32() % 3 {
                0 => Some(valid_from + Duration::nanoseconds((rng.next_u64() % 8_000_000_000) as i64)),
                1 => Some(whole(valid_from) + Duration::seconds(i64::from(1 + rng.next_u32() % 20))),
                _ => None,
            };
            let e = KeyEnrollment {
                format_version: FORMAT_VERSION,
                counter,
                issued_at: made_at,
                key_id: new_key.key_id(),
                verifier_key: VerifierKey::new("walk", new_key.public_key()).unwrap().to_string(),
                role,
                host: (role == Role::Agent).then(|| "walk-host".to_string()),
                valid_from,
                valid_until,
                site: None,
            };
            let env = sign_record(&e, key).unwrap().to_json();
            held.push(new_key);
            let model = ModelKey { role, valid_from, valid_until, revoked: false, last_counter: 0 };
            (Op::Enroll { key_index: held.len() - 1, model }, env)
        }
        3 => {
            let target = (rng.next_u32() as usize) % held.len();
            let target = if target == 0 { held.len() - 1 } else { target }; // the first admin stays
            let r = KeyRevocation {
                format_version: FORMAT_VERSION,
                counter,
                issued_at: made_at,
                key_id: held[target].key_id(),
                reason: format!("walk {}", rng.next_u64()),
            };
            (Op::Revoke { target }, sign_record(&r, key).unwrap().to_json())
        }
        _ => {
            let a = Annotation {
                format_version: FORMAT_VERSION,
                counter,
                written_at: made_at,
                target: AnnotationTarget::Entry { index: 0, leaf_hash: Hash([0; 32]) },
                severity: Severity::Info,
                text: format!("walk note {}", rng.next_u64()),
                resolves_serial: None,
                settles_history: false,
            };
            (Op::Annotate, sign_record(&a, key).unwrap().to_json())
        }
    };
    Planned { signer, counter, made_at, op, envelope }
}

#[test]
fn a_record_at_the_whole_second_before_its_keys_start_is_refused_after_a_reopen_too() {
    // The steps of the report: a key enrolled mid-second, a record stamped with that second
    // without its fraction, appended after the log was reopened (registry from the views).
    let start = NOW + Duration::nanoseconds(861_754_524);
    let mut f = crate::Fixture::new();
    let auditor = SigningKey::from_seed(&[41; 32]);
    f.admin_counter += 1;
    let e = KeyEnrollment {
        format_version: FORMAT_VERSION,
        counter: f.admin_counter,
        issued_at: NOW,
        key_id: auditor.key_id(),
        verifier_key: VerifierKey::new("auditor", auditor.public_key()).unwrap().to_string(),
        role: Role::Auditor,
        host: None,
        valid_from: start,
        valid_until: None,
        site: None,
    };
    f.ledger.append(&[sign_record(&e, &f.admin).unwrap().to_json()]).unwrap();
    f.reopen_at(start + Duration::seconds(1));
    let note = |counter, written_at| {
        let a = Annotation {
            format_version: FORMAT_VERSION,
            counter,
            written_at,
            target: AnnotationTarget::Entry { index: 0, leaf_hash: Hash([0; 32]) },
            severity: Severity::Info,
            text: "whole seconds".into(),
            resolves_serial: None,
            settles_history: false,
        };
        sign_record(&a, &auditor).unwrap().to_json()
    };
    let err = f.ledger.append(&[note(1, whole(start))]).unwrap_err();
    assert!(err.to_string().contains("not valid at"), "{err}");
    f.ledger.append(&[note(2, start)]).unwrap();
    f.ledger.rebuild_views().unwrap();
    assert!(f.ledger.append(&[note(3, start - Duration::nanoseconds(1))]).is_err());
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None);
    // The server's view of the key agrees to the nanosecond.
    f.reopen_at(start - Duration::nanoseconds(1));
    assert!(f.ledger.active_key(auditor.key_id().as_str()).unwrap().is_none());
    f.reopen_at(start);
    assert!(f.ledger.active_key(auditor.key_id().as_str()).unwrap().is_some());
}
