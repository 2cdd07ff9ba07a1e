//! Parsing and checking one envelope: what append validation and the audit share.

use std::collections::HashMap;

use chipledger_domain::dsse::{pae, Envelope, PAYLOAD_TYPE_IN_TOTO};
use chipledger_domain::encoding::b64_decode;
use chipledger_domain::keys::{self, KeyId, PublicKey, VerifierKey};
use chipledger_domain::merkle::{leaf_hash, Hash};
use chipledger_domain::records::{Record, RecordKind, Role};
use time::OffsetDateTime;

use crate::Rejection;

/// An envelope taken apart: enough to authorise it, verify it and index it.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub leaf_hash: Hash,
    pub kind: RecordKind,
    pub key_id: String,
    pub counter: u64,
    pub made_at: OffsetDateTime,
    /// The typed record; `None` when parsed lightly (the audit's annotations).
    pub record: Option<Record>,
    /// The GPU an annotation is about (read even by a light parse: the views index it).
    pub gpu_target: Option<String>,
    /// Whether an annotation resolves a shared serial (only admins may sign one).
    pub resolves_serial: bool,
    /// Whether an annotation settles its GPU's history (only admins may sign one).
    pub settles_history: bool,
    /// `PAE(payloadType, payload)`, the signed message.
    pub message: Vec<u8>,
    /// Where the payload starts inside `message`.
    pub payload_start: usize,
    pub signature: Vec<u8>,
    /// How to store the envelope when it is in canonical form: `(form, body)` (see [`compact`]);
    /// worked out for an append once the signature is known good, never for unauthenticated bytes.
    pub compact: Option<(i64, Vec<u8>)>,
    /// The key the signature was already checked under, before the writer's lock (a key id
    /// names one public key for good, so the verdict stands); `None`: not yet checked.
    pub verified: Option<PublicKey>,
}

/// What the registry knows about one enrolled key.
#[derive(Debug, Clone)]
pub(crate) struct KeyState {
    pub enrolled_at: u64,
    pub key_id: String,
    pub verifier_key: String,
    pub public: PublicKey,
    pub role: Role,
    pub host: Option<String>,
    /// A landmark's surveyed site, or an agent host's declared one.
    pub site: Option<chipledger_domain::records::Site>,
    pub valid_from: OffsetDateTime,
    pub valid_until: Option<OffsetDateTime>,
    pub revoked_at: Option<u64>,
    pub last_counter: u64,
}

pub(crate) type Registry = HashMap<String, KeyState>;

#[derive(serde::Deserialize)]
struct LightStatement {
    #[serde(rename = "_type")]
    type_: String,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    predicate: LightPredicate,
}

#[derive(serde::Deserialize)]
struct LightPredicate {
    format_version: u32,
    counter: u64,
    #[serde(
        alias = "observed_at",
        alias = "recorded_at",
        alias = "issued_at",
        alias = "written_at",
        alias = "finished_at",
        alias = "closed_at",
        alias = "measured_at",
        with = "time::serde::rfc3339"
    )]
    made_at: OffsetDateTime,
    #[serde(default)]
    target: Option<LightTarget>,
    #[serde(default)]
    resolves_serial: Option<String>,
    #[serde(default)]
    settles_history: bool,
}

/// An annotation's target, as far as the views need it.
#[derive(serde::Deserialize)]
struct LightTarget {
    #[serde(default)]
    gpu: Option<LightGpu>,
}

#[derive(serde::Deserialize)]
struct LightGpu {
    /// Parsed (and so normalised) as the full parser does: the views index its canonical form.
    uuid: chipledger_domain::fingerprint::GpuUuid,
}

/// Parses an envelope. `full` also parses the typed record (append always; audit for key records).
pub(crate) fn parse(bytes: &[u8], limit: usize, full: bool) -> Result<Parsed, Rejection> {
    if bytes.len() > limit {
        return Err(Rejection::TooLarge { size: bytes.len(), limit });
    }
    let env: Envelope = serde_json::from_slice(bytes).map_err(|e| Rejection::MalformedEnvelope(e.to_string()))?;
    if env.payload_type != PAYLOAD_TYPE_IN_TOTO {
        return Err(Rejection::WrongPayloadType(env.payload_type));
    }
    if env.signatures.len() != 1 {
        return Err(Rejection::SignatureCount(env.signatures.len()));
    }
    let payload = env.payload_bytes().map_err(|e| Rejection::MalformedEnvelope(e.to_string()))?;
    let sig = &env.signatures[0];
    let signature = b64_decode(&sig.sig, "signature").map_err(|e| Rejection::MalformedEnvelope(e.to_string()))?;
    if signature.len() != 64 {
        return Err(Rejection::MalformedEnvelope(format!(
            "the signature is {} bytes, Ed25519 needs 64",
            signature.len()
        )));
    }
    let light: LightStatement =
        serde_json::from_slice(&payload).map_err(|e| Rejection::MalformedStatement(e.to_string()))?;
    if light.type_ != chipledger_domain::records::STATEMENT_TYPE {
        return Err(Rejection::MalformedStatement(format!("_type is {:?}", light.type_)));
    }
    let kind = RecordKind::from_predicate_type(&light.predicate_type)
        .ok_or_else(|| Rejection::MalformedStatement(format!("unknown predicateType {:?}", light.predicate_type)))?;
    if light.predicate.format_version != chipledger_domain::records::FORMAT_VERSION {
        return Err(Rejection::MalformedStatement(format!(
            "format_version {} is not one this log accepts",
            light.predicate.format_version
        )));
    }
    // Records whose content authorisation reads (key records; an attestation's host), whose
    // facts must agree with what they state (an attestation's digests), or that the views index
    // by content (acquisitions, runs) are always read whole; an annotation's GPU target is read
    // lightly above.
    let needs_record = full || kind != RecordKind::Annotation;
    let record = if needs_record {
        Some(Record::from_payload(&payload).map_err(|e| Rejection::MalformedStatement(e.to_string()))?)
    } else {
        None
    };
    let message = pae(&env.payload_type, &payload);
    Ok(Parsed {
        leaf_hash: leaf_hash(bytes),
        kind,
        key_id: sig.keyid.clone(),
        counter: light.predicate.counter,
        made_at: light.predicate.made_at,
        record,
        gpu_target: light.predicate.target.and_then(|t| t.gpu).map(|g| g.uuid.as_str().to_string()),
        resolves_serial: light.predicate.resolves_serial.is_some(),
        settles_history: light.predicate.settles_history,
        payload_start: message.len() - payload.len(),
        message,
        signature,
        compact: None,
        verified: None,
    })
}

/// [`parse`] in full, and how the envelope would be stored.
pub(crate) fn parse_to_append(bytes: &[u8], limit: usize) -> Result<Parsed, Rejection> {
    let mut parsed = parse(bytes, limit, true)?;
    parsed.compact = compact(bytes, &parsed);
    Ok(parsed)
}

/// How `entries.body` holds an envelope.
pub(crate) const FORM_RAW: i64 = 0;
/// `signature ‖ payload`, for an envelope in canonical form (rebuilt with the signer's key id).
pub(crate) const FORM_COMPACT: i64 = 1;
/// `signature ‖ u32 LE payload length ‖ LZ4 block of the payload` against [`PACK_DICTIONARY`],
/// for an envelope in canonical form. A statement is mostly the same field names and URIs as
/// every other of its kind; against a dictionary of one statement per kind, a 445-byte
/// annotation packs into ~130 bytes.
pub(crate) const FORM_PACKED: i64 = 2;

/// The LZ4 dictionary of [`FORM_PACKED`]: one statement of every kind (and of every probe
/// source) — from the demo's simulated fleet, and one annotation written for it. Part of the
/// storage format: stored rows need these exact bytes to be read, so it never changes (a test
/// pins its hash); a better dictionary would be a new form.
pub(crate) static PACK_DICTIONARY: &[u8] = include_bytes!("pack-v1.jsonl");

/// The most a packed payload may claim to expand to: bounds what a corrupt row can allocate.
const MAX_PACKED_PAYLOAD: usize = 16 << 20;

/// How to store `bytes` when it is exactly the canonical envelope for its signature and payload
/// (as `Envelope::to_json` writes it, signed by `key_id`): packed when that is smaller, else
/// compact. `None` otherwise: stored as received.
pub(crate) fn compact(bytes: &[u8], p: &Parsed) -> Option<(i64, Vec<u8>)> {
    let payload = p.message.get(p.payload_start..)?;
    let mut body = Vec::with_capacity(64 + payload.len());
    body.extend_from_slice(&p.signature);
    body.extend_from_slice(payload);
    if expand(&body, FORM_COMPACT, &p.key_id).ok()? != bytes {
        return None;
    }
    Some(match pack(&p.signature, payload) {
        Some(packed) => (FORM_PACKED, packed),
        None => (FORM_COMPACT, body),
    })
}

/// The packed body, when it is smaller than the compact one and unpacks to exactly `payload`.
fn pack(signature: &[u8], payload: &[u8]) -> Option<Vec<u8>> {
    if payload.len() > MAX_PACKED_PAYLOAD {
        return None;
    }
    let lz = lz4_flex::block::compress_with_dict(payload, PACK_DICTIONARY);
    let mut body = Vec::with_capacity(64 + 4 + lz.len());
    body.extend_from_slice(signature);
    body.extend_from_slice(&u32::try_from(payload.len()).ok()?.to_le_bytes());
    body.extend_from_slice(&lz);
    (body.len() < 64 + payload.len() && unpack(&body[64..]).ok().as_deref() == Some(payload)).then_some(body)
}

/// The payload of a packed body (the part after the signature).
fn unpack(packed: &[u8]) -> Result<Vec<u8>, String> {
    let (len, lz) = packed.split_first_chunk::<4>().ok_or("a packed payload shorter than its length")?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > MAX_PACKED_PAYLOAD {
        return Err(format!("a packed payload claims {len} bytes, more than any envelope this log stores"));
    }
    let payload = lz4_flex::block::decompress_with_dict(lz, len, PACK_DICTIONARY)
        .map_err(|e| format!("a packed payload does not unpack: {e}"))?;
    if payload.len() != len {
        return Err(format!("a packed payload unpacks to {} bytes, not the {len} it claims", payload.len()));
    }
    Ok(payload)
}

/// The signature and payload of a compact or packed body.
pub(crate) fn signature_and_payload(body: &[u8], form: i64) -> Result<(&[u8], std::borrow::Cow<'_, [u8]>), String> {
    let short = || format!("a stored body of {} bytes is shorter than a signature", body.len());
    match form {
        FORM_COMPACT => {
            let (sig, payload) = body.split_at_checked(64).ok_or_else(short)?;
            Ok((sig, std::borrow::Cow::Borrowed(payload)))
        }
        FORM_PACKED => {
            let (sig, packed) = body.split_at_checked(64).ok_or_else(short)?;
            Ok((sig, std::borrow::Cow::Owned(unpack(packed)?)))
        }
        other => Err(format!("storage form {other} holds no separate payload")),
    }
}

/// The exact envelope bytes for a stored body.
pub(crate) fn expand(body: &[u8], form: i64, key_id: &str) -> Result<Vec<u8>, String> {
    match form {
        FORM_RAW => Ok(body.to_vec()),
        FORM_COMPACT | FORM_PACKED => {
            let (sig, payload) = signature_and_payload(body, form)?;
            let env = Envelope {
                payload: chipledger_domain::encoding::b64_encode(&payload),
                payload_type: PAYLOAD_TYPE_IN_TOTO.to_string(),
                signatures: vec![chipledger_domain::dsse::EnvelopeSignature {
                    keyid: key_id.to_string(),
                    sig: chipledger_domain::encoding::b64_encode(sig),
                }],
            };
            Ok(env.to_json())
        }
        other => Err(format!("unknown storage form {other} ({} bytes)", body.len())),
    }
}

/// Reads every stored entry in log order and hands `f` its index and the parse of its envelope
/// (in full when `full`; else as [`parse`] lightly does), or why it does not read back. Compactly
/// stored envelopes are rebuilt with their signer's key id, learnt from the enrollments as they
/// stream past (a signer's enrollment always comes before the entries it signs).
pub(crate) fn replay(
    conn: &rusqlite::Connection,
    full: bool,
    mut f: impl FnMut(u64, Result<Parsed, String>) -> Result<(), crate::Error>,
) -> Result<(), crate::Error> {
    let mut key_ids: HashMap<u64, String> = HashMap::new();
    let mut st = conn.prepare("SELECT idx, body, form, signer FROM entries ORDER BY idx")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let idx = r.get::<_, i64>(0)? as u64;
        let signer = r.get::<_, i64>(3)? as u64;
        let key_id = key_ids.get(&signer).map_or("", String::as_str);
        let parsed = expand(&r.get::<_, Vec<u8>>(1)?, r.get(2)?, key_id)
            .and_then(|env| parse(&env, usize::MAX, full).map_err(|e| e.to_string()));
        if let Ok(Parsed { record: Some(Record::KeyEnrollment(e)), .. }) = &parsed {
            key_ids.insert(idx, e.key_id.0.clone());
        }
        f(idx, parsed)?;
    }
    Ok(())
}

/// How many threads are worth running for parallel work: `available_parallelism`, asked once
/// (it reads cgroup files on every call, which cost more than a small append itself).
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).max(1))
}

/// Runs `f` on every item, on every core (in chunks; below 16 items, on this thread).
pub(crate) fn par_map<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync, failed: impl Fn() -> U) -> Vec<U> {
    let threads = cores();
    if items.len() < 16 || threads == 1 {
        return items.iter().map(f).collect();
    }
    let per = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        // A thread the system will not start is work done on this one, not a panic.
        let handles: Vec<_> = items
            .chunks(per)
            .map(|part| {
                (part, std::thread::Builder::new().spawn_scoped(s, move || part.iter().map(f).collect::<Vec<_>>()))
            })
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for (part, h) in handles {
            match h.map(|h| h.join()) {
                Ok(Ok(v)) => out.extend(v),
                // A worker cannot panic on input (nothing panics on input); if one did, its
                // items get `failed` rather than a guess.
                Ok(Err(_)) => out.extend(part.iter().map(|_| failed())),
                Err(_) => out.extend(part.iter().map(f)),
            }
        }
        out
    })
}

/// Parses many envelopes on every core, in order: lightly (the audit) or in full (an append).
pub(crate) fn parse_many<T: AsRef<[u8]> + Sync>(
    envelopes: &[T],
    limit: usize,
    full: bool,
) -> Vec<Result<Parsed, Rejection>> {
    par_map(envelopes, |e| parse(e.as_ref(), limit, full), || Err(Rejection::MalformedEnvelope("parser failed".into())))
}

/// Checks that the signer may append this record at `index`, given the registry before it.
/// Returns the signer's public key (for the signature check) and enrollment index.
pub(crate) fn authorize(p: &Parsed, registry: &Registry, index: u64) -> Result<(PublicKey, u64), Rejection> {
    if registry.is_empty() {
        // The log's first entry: an admin key enrolling itself.
        let Some(Record::KeyEnrollment(e)) = &p.record else { return Err(Rejection::NeedsSelfEnrollment) };
        if e.role != Role::Admin || e.key_id.as_str() != p.key_id {
            return Err(Rejection::NeedsSelfEnrollment);
        }
        let vkey = enrollable_key(e)?;
        return Ok((*vkey.public_key(), index));
    }
    let key = registry.get(&p.key_id).ok_or_else(|| Rejection::UnknownKey { key_id: p.key_id.clone() })?;
    if let Some(revoked_at) = key.revoked_at {
        if revoked_at < index {
            return Err(Rejection::RevokedKey { key_id: p.key_id.clone(), revoked_at });
        }
    }
    if p.made_at < key.valid_from || key.valid_until.is_some_and(|u| p.made_at >= u) {
        return Err(Rejection::KeyNotValid { key_id: p.key_id.clone(), at: rfc3339(p.made_at) });
    }
    if !key.role.may_sign(p.kind) {
        return Err(Rejection::WrongRole { key_id: p.key_id.clone(), role: key.role, kind: p.kind });
    }
    // Which GPU holds a serial, and that a GPU's history is reviewed, are an admin's calls.
    if (p.resolves_serial || p.settles_history) && key.role != Role::Admin {
        return Err(Rejection::ResolutionNeedsAdmin { key_id: p.key_id.clone(), role: key.role });
    }
    // An agent key speaks only for the host it was enrolled for.
    let claimed_host = match &p.record {
        Some(Record::GpuAttestation(a)) => Some(a.host.hostname.as_str()),
        Some(Record::SchedulerJob(j)) => Some(j.host.as_str()),
        Some(Record::ServingBatch(b)) => Some(b.node_host.as_str()),
        // A landmark speaks under the name it was enrolled with.
        Some(Record::LocationProof(l)) => Some(l.landmark.as_str()),
        _ => None,
    };
    if let Some(claimed) = claimed_host {
        if key.host.as_deref() != Some(claimed) {
            return Err(Rejection::WrongHost {
                key_id: p.key_id.clone(),
                enrolled_for: key.host.clone().unwrap_or_default(),
                claimed: claimed.to_string(),
            });
        }
    }
    if let Some(Record::LocationProof(l)) = &p.record {
        check_location_proof(l, key, registry, index)?;
    }
    // A rotation statement is bound to its index: it cannot be replayed elsewhere in the log.
    if let Some(Record::LogKeyRotation(r)) = &p.record {
        if r.at_index != index {
            return Err(Rejection::RotationOutOfPlace { claimed: r.at_index, index });
        }
    }
    if p.counter <= key.last_counter {
        return Err(Rejection::CounterNotIncreasing {
            key_id: p.key_id.clone(),
            counter: p.counter,
            last: key.last_counter,
        });
    }
    match &p.record {
        Some(Record::KeyEnrollment(e)) => {
            enrollable_key(e)?;
            if registry.contains_key(e.key_id.as_str()) {
                return Err(Rejection::BadEnrollment(format!("key {} is already enrolled", e.key_id)));
            }
        }
        Some(Record::KeyRevocation(r)) => match registry.get(r.key_id.as_str()) {
            None => return Err(Rejection::BadRevocation(format!("key {} is not enrolled", r.key_id))),
            Some(k) if k.revoked_at.is_some() => {
                return Err(Rejection::BadRevocation(format!("key {} is already revoked", r.key_id)))
            }
            Some(_) => {}
        },
        _ => {}
    }
    Ok((key.public, key.enrolled_at))
}

/// A landmark's proof: measured from the site it was enrolled at, of a host through that
/// host's live agent key, every answer that key's signature over the landmark's nonce.
fn check_location_proof(
    l: &chipledger_domain::location_proof::LocationProof,
    landmark: &KeyState,
    registry: &Registry,
    index: u64,
) -> Result<(), Rejection> {
    let bad = |why: String| Err(Rejection::BadLocationProof(why));
    match &landmark.site {
        Some(site)
            if (site.at.lat - l.landmark_at.lat).abs() < 1e-6 && (site.at.lon - l.landmark_at.lon).abs() < 1e-6 => {}
        Some(site) => {
            return bad(format!("the landmark states coordinates {}, its enrollment {}", l.landmark_at, site.at))
        }
        None => return bad("the landmark's key was enrolled without a site".into()),
    }
    // Only a floor an admin approved at enrollment is subtracted.
    let approved = landmark.site.as_ref().map_or(0, |s| s.floor_ns);
    if l.floor_ns > approved {
        return bad(format!(
            "the proof subtracts a floor of {} ns; the landmark's enrollment approves {approved} ns",
            l.floor_ns
        ));
    }
    let Some(agent) = registry.get(l.subject.key_id.as_str()) else {
        return bad(format!("the answering key {} is not enrolled", l.subject.key_id));
    };
    if agent.role != Role::Agent || agent.host.as_deref() != Some(l.subject.host.as_str()) {
        return bad(format!("the answering key {} is not an agent key of host {}", l.subject.key_id, l.subject.host));
    }
    if agent.revoked_at.is_some_and(|r| r < index) {
        return bad(format!("the answering key {} is revoked", l.subject.key_id));
    }
    if l.measured_at < agent.valid_from || agent.valid_until.is_some_and(|u| l.measured_at >= u) {
        return bad(format!("the answering key {} is not valid at the measurement's time", l.subject.key_id));
    }
    l.verify_answers(&agent.public).map_err(|e| Rejection::BadLocationProof(e.to_string()))
}

/// The registry after the record at `index` (signed by `p.key_id`) is in the log.
pub(crate) fn apply(p: &Parsed, registry: &mut Registry, index: u64) {
    match &p.record {
        Some(Record::KeyEnrollment(e)) => {
            if let Ok(state) = key_state(e, index) {
                registry.insert(state.key_id.clone(), state);
            }
        }
        Some(Record::KeyRevocation(r)) => {
            if let Some(k) = registry.get_mut(r.key_id.as_str()) {
                k.revoked_at = Some(index);
            }
        }
        _ => {}
    }
    if let Some(k) = registry.get_mut(&p.key_id) {
        k.last_counter = k.last_counter.max(p.counter);
    }
}

/// What the registry holds for a key enrolled at `index`, before any revocation or record of
/// its own: every value exactly as the enrollment states it (times to the nanosecond). The one
/// way a [`KeyState`] is made, whether the registry is replayed or loaded from the views.
pub(crate) fn key_state(e: &chipledger_domain::records::KeyEnrollment, index: u64) -> Result<KeyState, Rejection> {
    let vkey = enrolled_key(e)?;
    Ok(KeyState {
        enrolled_at: index,
        key_id: e.key_id.0.clone(),
        verifier_key: e.verifier_key.clone(),
        public: *vkey.public_key(),
        role: e.role,
        host: e.host.clone(),
        site: e.site.clone(),
        valid_from: e.valid_from,
        valid_until: e.valid_until,
        revoked_at: None,
        last_counter: 0,
    })
}

/// [`enrolled_key`], for a new enrollment: also refuses a key with a small-order component (a
/// small-order key is never a `PublicKey`; a mixed-order one is, and is refused here), and an
/// agent key that names no host.
fn enrollable_key(e: &chipledger_domain::records::KeyEnrollment) -> Result<VerifierKey, Rejection> {
    let vkey = enrolled_key(e)?;
    if e.role == Role::Agent && e.host.as_deref().is_none_or(|h| h.trim().is_empty()) {
        return Err(Rejection::BadEnrollment(
            "an agent key must name the host it speaks for (enroll it with --host HOSTNAME)".into(),
        ));
    }
    if !vkey.public_key().is_torsion_free() {
        return Err(Rejection::BadEnrollment(
            "the public key has a small-order component (mixed order); enroll a key made by a standard Ed25519 key generator".into(),
        ));
    }
    Ok(vkey)
}

fn enrolled_key(e: &chipledger_domain::records::KeyEnrollment) -> Result<VerifierKey, Rejection> {
    let vkey = VerifierKey::parse(&e.verifier_key).map_err(|err| Rejection::BadEnrollment(err.to_string()))?;
    if vkey.public_key().key_id() != KeyId(e.key_id.0.clone()) {
        return Err(Rejection::BadEnrollment("key_id is not the id of verifier_key".into()));
    }
    Ok(vkey)
}

/// The position of the first signature `verify_strict` refuses, checked on every core with
/// exactly that verdict ([`keys::first_bad_signature`], with keys prepared once per process). Append, audit and bundle verification all check through here or
/// through `PublicKey::verify`; no path accepts on a batch equation.
pub(crate) fn first_bad_signature(items: &[(&[u8], &[u8], PublicKey)]) -> Option<usize> {
    // Below this many per thread, a thread costs more than it saves.
    const MIN_PER_THREAD: usize = 16;
    // The keys of this process's logs, prepared once (a key's table is pure arithmetic on its
    // public bytes: sharing it between logs changes no verdict). 64 keys ≈ 43 MiB.
    static PREPARED: std::sync::OnceLock<keys::PreparedKeys> = std::sync::OnceLock::new();
    let prepared = PREPARED.get_or_init(|| keys::PreparedKeys::new(64));
    let threads = cores().min(items.len() / MIN_PER_THREAD).max(1);
    if threads == 1 {
        return keys::first_bad_signature(items, prepared);
    }
    let per = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(per)
            .enumerate()
            .map(|(t, part)| {
                let check = move || keys::first_bad_signature(part, prepared).map(|b| t * per + b);
                (t, part, std::thread::Builder::new().spawn_scoped(s, check))
            })
            .collect();
        // A checker thread cannot panic on input; if one did, its part is not called valid. A
        // thread the system will not start is checked on this one.
        handles
            .into_iter()
            .filter_map(|(t, part, h)| match h {
                Ok(h) => h.join().unwrap_or(Some(t * per)),
                Err(_) => keys::first_bad_signature(part, prepared).map(|b| t * per + b),
            })
            .min()
    })
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests: failing loudly is right
mod tests {
    use super::*;

    #[test]
    fn the_pack_dictionary_never_changes() {
        use chipledger_domain::merkle::leaf_hash;
        // Stored rows of form 2 need these exact bytes. Pinned through the crate's own hash
        // (RFC 6962 leaf hash = SHA-256(0x00 ‖ bytes)).
        assert_eq!(PACK_DICTIONARY.len(), 12340);
        assert_eq!(
            leaf_hash(PACK_DICTIONARY).to_string(),
            "c19ae2be5ffb501318ade74924a266d069da28a78148f94ccf826214608ba6f8",
            "pack-v1.jsonl changed: rows packed against the old bytes would no longer read"
        );
    }

    #[test]
    fn payloads_pack_and_unpack_exactly() {
        let sig = [7u8; 64];
        let annotation = br#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"gpu:GPU-0b9c3a51-64e2-4d17-8f0e-5a6b7c8d9e0f","digest":{"sha256":"11aa"}}],"predicateType":"https://chipledger.dev/predicates/annotation/v1","predicate":{"counter":12,"format_version":1,"severity":"info","target":{"gpu":{"uuid":"GPU-0b9c3a51-64e2-4d17-8f0e-5a6b7c8d9e0f"}},"text":"fan replaced","written_at":"2026-11-01T08:00:00Z"}}"#;
        let body = pack(&sig, annotation).expect("an annotation packs smaller");
        assert!(body.len() < 64 + annotation.len() / 2, "{} bytes", body.len());
        let (s, p) = signature_and_payload(&body, FORM_PACKED).unwrap();
        assert_eq!((s, &p[..]), (&sig[..], &annotation[..]));
        // Something the dictionary does not help with is left compact.
        let noise: Vec<u8> =
            (0..10u32).flat_map(|i| chipledger_domain::merkle::leaf_hash(&i.to_le_bytes()).0).collect();
        assert_eq!(pack(&sig, &noise), None);
        assert_eq!(pack(&sig, b""), None);
    }

    #[test]
    fn corrupt_packed_bodies_are_errors_not_panics() {
        let sig = [1u8; 64];
        let payload = br#"{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"https://chipledger.dev/predicates/key-revocation/v1","predicate":{"counter":3}}"#;
        let body = pack(&sig, payload).unwrap();
        assert!(signature_and_payload(&body[..60], FORM_PACKED).is_err());
        assert!(signature_and_payload(&body[..66], FORM_PACKED).is_err());
        let mut huge = body.clone();
        huge[64..68].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = signature_and_payload(&huge, FORM_PACKED).unwrap_err();
        assert!(err.contains("claims"), "{err}");
        let mut short = body.clone();
        short[64..68].copy_from_slice(&3u32.to_le_bytes());
        assert!(signature_and_payload(&short, FORM_PACKED).is_err());
        // Every single-byte change and truncation: an error or some payload, never a panic. (A
        // change can also decode to the same payload — a match pointing at an equal stretch of
        // the dictionary — which changes nothing the log says: the audit checks the envelope.)
        let mut changed = 0;
        for i in 64..body.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = body.clone();
                b[i] ^= flip;
                match signature_and_payload(&b, FORM_PACKED) {
                    Ok((_, p)) if p[..] == payload[..] => {}
                    _ => changed += 1,
                }
            }
            assert!(signature_and_payload(&body[..i], FORM_PACKED).map_or(true, |(_, p)| p[..] != payload[..]));
        }
        assert!(changed > 2 * (body.len() - 64), "most changes change the payload: {changed}");
        assert!(expand(&body, 9, "k").is_err());
    }

    /// The light parse (the audit's, for annotations) and the full parse (append's) read an
    /// annotation's GPU target and serial resolution alike, on any change to a real statement;
    /// neither panics.
    #[test]
    fn light_and_full_parses_agree_on_what_authorisation_and_the_views_read() {
        use chipledger_domain::keys::SigningKey;
        use proptest::prelude::*;
        let key = SigningKey::from_seed(&[3; 32]);
        let note = chipledger_domain::records::Annotation {
            format_version: chipledger_domain::records::FORMAT_VERSION,
            counter: 12,
            written_at: time::macros::datetime!(2026-11-01 08:00 UTC),
            target: chipledger_domain::records::AnnotationTarget::Gpu {
                uuid: chipledger_domain::fingerprint::GpuUuid::parse("GPU-0b9c3a51-64e2-4d17-8f0e-5a6b7c8d9e0f")
                    .unwrap(),
            },
            severity: chipledger_domain::identify::Severity::Info,
            text: "fan replaced".into(),
            resolves_serial: Some("1651323018291".into()),
            settles_history: true,
        };
        let statement = serde_json::to_vec(&chipledger_domain::records::statement(&note).unwrap()).unwrap();
        let unchanged =
            chipledger_domain::dsse::Envelope::sign(chipledger_domain::dsse::PAYLOAD_TYPE_IN_TOTO, &statement, &key)
                .to_json();
        let p = parse(&unchanged, usize::MAX, true).unwrap();
        assert!(
            p.resolves_serial && p.settles_history && p.gpu_target.is_some() && p.record.is_some(),
            "the unchanged statement parses whole"
        );
        let full_parses = std::cell::Cell::new(0u32);
        let mut runner =
            proptest::test_runner::TestRunner::new(proptest::test_runner::Config { cases: 2000, ..Default::default() });
        runner
            .run(&(0usize..statement.len(), any::<u8>(), 0usize..4), |(at, byte, how)| {
                let mut p = statement.to_vec();
                match how {
                    0 => p[at] = byte,
                    1 => p[at] = p[at].to_ascii_uppercase(),
                    2 => {
                        p.remove(at);
                    }
                    _ => p.insert(at, byte),
                }
                let env =
                    chipledger_domain::dsse::Envelope::sign(chipledger_domain::dsse::PAYLOAD_TYPE_IN_TOTO, &p, &key)
                        .to_json();
                let light = parse(&env, usize::MAX, false);
                let full = parse(&env, usize::MAX, true);
                if let Ok(full) = &full {
                    full_parses.set(full_parses.get() + 1);
                    let light = light.as_ref().map_err(|e| TestCaseError::fail(format!("light refused: {e}")))?;
                    prop_assert_eq!(&light.gpu_target, &full.gpu_target);
                    prop_assert_eq!(light.resolves_serial, full.resolves_serial);
                    prop_assert_eq!(light.settles_history, full.settles_history);
                    if let Some(Record::Annotation(a)) = &full.record {
                        prop_assert_eq!(a.resolves_serial.is_some(), full.resolves_serial);
                        prop_assert_eq!(a.settles_history, full.settles_history);
                        let target = match &a.target {
                            chipledger_domain::records::AnnotationTarget::Gpu { uuid } => {
                                Some(uuid.as_str().to_string())
                            }
                            _ => None,
                        };
                        prop_assert_eq!(&target, &full.gpu_target);
                    }
                }
                Ok(())
            })
            .unwrap();
        assert!(full_parses.get() > 100, "changes that still parse: {}", full_parses.get());
    }
}
