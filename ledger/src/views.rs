//! Derived views: the key registry, latest GPU state, per-GPU record index, acquisitions, runs.
//! Updated in the append transaction; rebuildable from the entries alone.

use std::collections::HashMap;

use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::log::{AsOf, EntrySummary, InventoryGpu};
use chipledger_domain::merkle::Hash;
use chipledger_domain::records::{AnnotationTarget, GpuAttestation, ProbeSource, Record, Role};
use chipledger_domain::trail::{followed, HostSpan, Trail};
use rusqlite::{params, Connection, OptionalExtension};
use time::OffsetDateTime;

use crate::record::{self, KeyState, Parsed, Registry};
use crate::store::{kind_from_code, unix, Ledger};
use crate::Error;

/// The key registry appends are authorised against, exactly as a replay of the log builds it.
///
/// The `keys` view says which keys there are, where each was enrolled and revoked (log indexes)
/// and its last counter: integers it holds exactly. Everything else a decision reads — the
/// validity window to the nanosecond, role, host, key — comes from the enrollment entry itself,
/// through [`record::key_state`], as in a replay: the view's whole-second times serve queries only.
pub(crate) fn load_registry(conn: &Connection) -> Result<Registry, Error> {
    let sql = format!("{EXACT_KEYS} ORDER BY k.enrolled_at");
    let mut st = conn.prepare(&sql)?;
    let mut rows = st.query([])?;
    let mut reg = Registry::new();
    while let Some(r) = rows.next()? {
        let state = exact_key(r)?;
        reg.insert(state.key_id.clone(), state);
    }
    Ok(reg)
}

/// The `keys` rows with their enrollment entries and the key id of each enrollment's signer
/// (to rebuild a compactly stored envelope), as [`exact_key`] reads them.
const EXACT_KEYS: &str = "SELECT k.enrolled_at, k.key_id, k.revoked_at, k.last_counter,
        e.leaf_hash, e.body, e.form, s.key_id
     FROM keys k LEFT JOIN entries e ON e.idx = k.enrolled_at LEFT JOIN keys s ON s.enrolled_at = e.signer";

/// One key's registry state from a row of [`EXACT_KEYS`].
fn exact_key(r: &rusqlite::Row<'_>) -> Result<KeyState, Error> {
    let enrolled_at = r.get::<_, i64>(0)? as u64;
    let key_id: String = r.get(1)?;
    let corrupt = |why: String| Error::Corrupt(format!("the enrollment of key {key_id} (entry {enrolled_at}): {why}"));
    let (Some(leaf), Some(body), Some(form)) =
        (r.get::<_, Option<Vec<u8>>>(4)?, r.get::<_, Option<Vec<u8>>>(5)?, r.get::<_, Option<i64>>(6)?)
    else {
        return Err(corrupt("the entry is not stored".into()));
    };
    let signer_id: Option<String> = r.get(7)?;
    let envelope = record::expand(&body, form, signer_id.as_deref().unwrap_or_default()).map_err(corrupt)?;
    let parsed = record::parse(&envelope, usize::MAX, true).map_err(|e| corrupt(e.to_string()))?;
    if parsed.leaf_hash.0[..] != leaf[..] {
        return Err(corrupt("the stored envelope does not hash to its leaf hash".into()));
    }
    let Some(Record::KeyEnrollment(e)) = &parsed.record else {
        return Err(corrupt("the entry is not a key enrollment".into()));
    };
    let mut state = record::key_state(e, enrolled_at).map_err(|e| corrupt(e.to_string()))?;
    if state.key_id != key_id {
        return Err(corrupt(format!("the entry enrolls key {}", state.key_id)));
    }
    state.revoked_at = r.get::<_, Option<i64>>(2)?.map(|v| v as u64);
    state.last_counter = r.get::<_, i64>(3)? as u64;
    Ok(state)
}

fn from_unix(t: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The SKU a GPU's PCI ids give under the embedded catalog: what the views hold, never the
/// agent's claim (`identification.sku`).
pub(crate) fn recomputed_sku(g: &chipledger_domain::records::AttestedGpu) -> Option<String> {
    let catalog = chipledger_domain::catalog::Catalog::embedded().ok()?;
    chipledger_domain::identify::identify(catalog, &g.facts).sku
}

/// Updates the views for the record at `index`; `registry` is the state after it.
pub(crate) fn apply(conn: &Connection, index: u64, rec: &Record, registry: &Registry) -> Result<(), Error> {
    let idx = index as i64;
    match rec {
        Record::KeyEnrollment(e) => {
            let k = registry.get(e.key_id.as_str()).ok_or_else(|| Error::Corrupt("enrolled key missing".into()))?;
            conn.prepare_cached(
                "INSERT INTO keys (enrolled_at, key_id, verifier_key, role, host, valid_from, valid_until, revoked_at, last_counter)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, 0)",
            )?
            .execute(params![
                idx,
                k.key_id,
                k.verifier_key,
                k.role.as_str(),
                k.host,
                unix(k.valid_from),
                k.valid_until.map(unix)
            ])?;
        }
        Record::KeyRevocation(r) => {
            conn.prepare_cached("UPDATE keys SET revoked_at = ?1 WHERE key_id = ?2")?
                .execute(params![idx, r.key_id.0])?;
        }
        Record::GpuAttestation(a) => apply_attestation(conn, idx, a)?,
        Record::Acquisition(a) => {
            let mut st = conn.prepare_cached("INSERT OR IGNORE INTO acquisitions (serial, idx) VALUES (?1, ?2)")?;
            for s in &a.serials {
                st.execute(params![s, idx])?;
            }
        }
        Record::RunProvenance(r) => {
            conn.prepare_cached("INSERT OR REPLACE INTO runs (run_id, idx) VALUES (?1, ?2)")?
                .execute(params![r.run_id, idx])?;
            let mut st = conn.prepare_cached("INSERT OR IGNORE INTO gpu_records (uuid, idx) VALUES (?1, ?2)")?;
            for g in &r.gpus {
                st.execute(params![g.uuid.as_str(), idx])?;
            }
        }
        // Rotations are read from the entries by kind (`Ledger::log_keys`); no view. A serving
        // node's batches (one a second per node) are not each GPU's history: read by kind.
        Record::LogKeyRotation(_) | Record::ServingBatch(_) => {}
        // A location proof locates the holder of a host's key, not a GPU: the GPUs its agent
        // named are the agent's word, so no GPU's history lists it.
        // Indexed by the host it locates, for that host's readers.
        Record::LocationProof(p) => {
            conn.prepare_cached("INSERT OR IGNORE INTO located (host, idx) VALUES (?1, ?2)")?
                .execute(params![p.subject.host, idx])?;
        }
        Record::SchedulerJob(j) => {
            let mut st = conn.prepare_cached("INSERT OR IGNORE INTO gpu_records (uuid, idx) VALUES (?1, ?2)")?;
            for g in &j.gpus {
                st.execute(params![g.uuid.as_str(), idx])?;
            }
        }
        Record::Annotation(a) => {
            if let AnnotationTarget::Gpu { uuid } = &a.target {
                conn.prepare_cached("INSERT OR IGNORE INTO gpu_records (uuid, idx) VALUES (?1, ?2)")?
                    .execute(params![uuid.as_str(), idx])?;
                if a.settles_history {
                    apply_settlement(conn, uuid.as_str(), idx)?;
                }
            }
        }
    }
    Ok(())
}

/// The attestation at `idx` in the GPU views: each GPU's record (with its host, signer time and
/// digest), its latest state, and its trail (`domain::trail::Trail::fold`, kept as `gpu_hosts`,
/// `gpus.known` and `gpus.changes`, and `gpu_facts` for the values each record set).
fn apply_attestation(conn: &Connection, idx: i64, a: &GpuAttestation) -> Result<(), Error> {
    let mut rec_st = conn.prepare_cached(
        "INSERT OR IGNORE INTO gpu_records (uuid, idx, host, observed_ns, digest) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut facts_st = conn.prepare_cached("SELECT known, changes FROM gpus WHERE uuid = ?1")?;
    // A GPU's latest state is its attestation at the highest log index: the signer's clock
    // (`observed_at`) never orders the view.
    let mut gpu_st = conn.prepare_cached(
        "INSERT INTO gpus (uuid, idx, host, serial, sku, fingerprint_digest, observed_at, source, known, changes, ueid)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (uuid) DO UPDATE SET idx = excluded.idx, host = excluded.host, serial = excluded.serial,
           ueid = excluded.ueid,
           sku = excluded.sku, fingerprint_digest = excluded.fingerprint_digest,
           observed_at = excluded.observed_at, source = excluded.source,
           known = excluded.known, changes = excluded.changes
         WHERE excluded.idx >= gpus.idx",
    )?;
    let mut host_st = conn.prepare_cached(
        "INSERT INTO gpu_hosts (uuid, host, first_idx, last_idx, first_ns, last_ns) VALUES (?1, ?2, ?3, ?3, ?4, ?4)
         ON CONFLICT (uuid, host) DO UPDATE SET last_idx = excluded.last_idx, last_ns = excluded.last_ns,
           prev_idx = CASE WHEN excluded.last_idx > gpu_hosts.last_idx THEN gpu_hosts.last_idx ELSE gpu_hosts.prev_idx END
         WHERE excluded.last_idx >= gpu_hosts.last_idx",
    )?;
    let mut set_st = conn.prepare_cached("INSERT INTO gpu_facts (uuid, idx, field, value) VALUES (?1, ?2, ?3, ?4)")?;
    let source = a.source.as_str();
    let at_ns = unix_ns(a.observed_at);
    for g in &a.gpus {
        let uuid = g.uuid.as_str();
        let digest = &g.fingerprint_digest.0[..];
        rec_st.execute(params![uuid, idx, a.host.hostname, at_ns, digest])?;
        // The facts part of the trail: what the GPU's facts were known as, and their changes.
        let (known, changes): (Option<String>, Option<String>) =
            facts_st.query_row([uuid], |r| Ok((r.get(0)?, r.get(1)?))).optional()?.unwrap_or((None, None));
        let mut trail = Trail {
            known: json_or_default(known.as_deref(), "gpus.known")?,
            changes: json_or_default(changes.as_deref(), "gpus.changes")?,
            ..Trail::default()
        };
        let set =
            trail.fold(idx as u64, &a.host.hostname, a.observed_at, g.fingerprint_digest, &followed(&g.fingerprint));
        for (field, value) in &set {
            set_st.execute(params![uuid, idx, field, value])?;
        }
        gpu_st.execute(params![
            uuid,
            idx,
            a.host.hostname,
            g.facts.serial,
            recomputed_sku(g),
            digest,
            unix(a.observed_at),
            source,
            to_json(&trail.known)?,
            to_json(&trail.changes)?,
            g.facts.ueid,
        ])?;
        host_st.execute(params![uuid, a.host.hostname, idx, at_ns])?;
    }
    Ok(())
}

/// An admin's settlement of GPU `uuid`'s history at `idx` (`domain::trail::Trail::settle`): only
/// the span of the host that attested it last stays, and its fact changes go.
fn apply_settlement(conn: &Connection, uuid: &str, idx: i64) -> Result<(), Error> {
    conn.prepare_cached("INSERT OR IGNORE INTO gpu_settled (uuid, idx) VALUES (?1, ?2)")?
        .execute(params![uuid, idx])?;
    conn.prepare_cached(
        "DELETE FROM gpu_hosts WHERE uuid = ?1 AND last_idx < (SELECT MAX(last_idx) FROM gpu_hosts WHERE uuid = ?1)",
    )?
    .execute([uuid])?;
    conn.prepare_cached("UPDATE gpus SET changes = NULL WHERE uuid = ?1")?.execute([uuid])?;
    Ok(())
}

/// A JSON column, or the default when NULL.
fn json_or_default<T: serde::de::DeserializeOwned + Default>(text: Option<&str>, what: &str) -> Result<T, Error> {
    match text {
        None => Ok(T::default()),
        Some(t) => serde_json::from_str(t).map_err(|e| Error::Corrupt(format!("{what}: {e}"))),
    }
}

/// A map as a JSON column: NULL when empty.
fn to_json<K: serde::Serialize, V: serde::Serialize>(
    map: &std::collections::BTreeMap<K, V>,
) -> Result<Option<String>, Error> {
    if map.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(map).map(Some).map_err(|e| Error::Corrupt(format!("a trail column: {e}")))
}

/// Schema 8: each location proof by the host it locates.
pub(crate) fn backfill_located(tx: &Connection) -> Result<(), Error> {
    let mut n = 0u64;
    crate::record::replay(tx, false, |idx, parsed| {
        if let Ok(Parsed { record: Some(Record::LocationProof(p)), .. }) = parsed {
            tx.execute(
                "INSERT OR IGNORE INTO located (host, idx) VALUES (?1, ?2)",
                params![p.subject.host, idx as i64],
            )?;
            n += 1;
        }
        Ok(())
    })?;
    tracing::info!(proofs = n, "indexed the location proofs by host");
    Ok(())
}

/// Fills the trail of a log written before it was kept (schema 4) from its entries, as appends
/// would have. An entry that does not read back is left out: `ledger verify` then names the
/// difference.
pub(crate) fn backfill_trails(tx: &Connection) -> Result<(), Error> {
    tx.execute_batch("DELETE FROM gpus; DELETE FROM gpu_hosts; DELETE FROM gpu_facts; DELETE FROM gpu_settled;")?;
    let mut unreadable = 0u64;
    let mut n = 0u64;
    crate::record::replay(tx, true, |idx, parsed| {
        match parsed {
            Ok(Parsed { record: Some(Record::GpuAttestation(a)), .. }) => {
                tx.execute("DELETE FROM gpu_records WHERE idx = ?1", [idx as i64])?;
                apply_attestation(tx, idx as i64, &a)?;
                n += 1;
            }
            Ok(Parsed { record: Some(Record::Annotation(a)), .. }) if a.settles_history => {
                if let AnnotationTarget::Gpu { uuid } = &a.target {
                    apply_settlement(tx, uuid.as_str(), idx as i64)?;
                }
            }
            Ok(_) => {}
            Err(_) => unreadable += 1,
        }
        Ok(())
    })?;
    if unreadable > 0 {
        tracing::warn!(
            unreadable,
            "entries that do not read back are left out of the GPU trails; `ledger verify` names them"
        );
    }
    tracing::info!(attestations = n, "filled in the GPU trails");
    Ok(())
}

/// Nanoseconds since the Unix epoch, as SQLite stores them (an i64 holds them until 2262; a time
/// beyond is clamped, and `observed_at` is refused far earlier than that at append).
pub(crate) fn unix_ns(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(if t.year() > 0 { i64::MAX } else { i64::MIN })
}

fn from_unix_ns(ns: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Writes the per-key counters that changed.
pub(crate) fn store_counters(conn: &Connection, before: &Registry, after: &Registry) -> Result<(), Error> {
    let mut st = conn.prepare_cached("UPDATE keys SET last_counter = ?1 WHERE key_id = ?2")?;
    for (id, k) in after {
        if before.get(id).map(|b| b.last_counter) != Some(k.last_counter) {
            st.execute(params![k.last_counter as i64, id])?;
        }
    }
    Ok(())
}

/// A filter for listing entries.
#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    pub kind: Option<chipledger_domain::records::RecordKind>,
    pub gpu: Option<GpuUuid>,
    /// Only acquisition records naming this serial.
    pub serial: Option<String>,
    /// Only location proofs of this host.
    pub located: Option<String>,
    pub since: Option<OffsetDateTime>,
    /// Only entries at or after this index.
    pub from: Option<u64>,
    pub limit: Option<u64>,
    /// Only the newest this many matching entries (still returned in log order).
    pub last: Option<u64>,
}

/// A key as the registry holds it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    pub key_id: String,
    pub verifier_key: String,
    pub role: Role,
    pub host: Option<String>,
    /// A landmark's surveyed site, or an agent host's declared one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<chipledger_domain::records::Site>,
    pub enrolled_at: u64,
    pub revoked_at: Option<u64>,
    pub last_counter: u64,
}

impl From<KeyState> for KeyInfo {
    fn from(k: KeyState) -> KeyInfo {
        KeyInfo {
            key_id: k.key_id,
            verifier_key: k.verifier_key,
            role: k.role,
            host: k.host,
            site: k.site,
            enrolled_at: k.enrolled_at,
            revoked_at: k.revoked_at,
            last_counter: k.last_counter,
        }
    }
}

impl Ledger {
    /// The key registry.
    pub fn keys(&self) -> Result<Vec<KeyInfo>, Error> {
        let conn = self.reader();
        let mut reg: Vec<KeyInfo> = load_registry(&conn)?.into_values().map(KeyInfo::from).collect();
        reg.sort_by_key(|k| k.enrolled_at);
        Ok(reg)
    }

    /// An enrolled key that may act now: not revoked, inside its validity window. What the
    /// server checks a signed request's key against.
    pub fn active_key(&self, key_id: &str) -> Result<Option<KeyInfo>, Error> {
        let now = self.now();
        let conn = self.credentials_reader();
        let sql = format!("{EXACT_KEYS} WHERE k.key_id = ?1 AND k.revoked_at IS NULL");
        let found = conn.query_row(&sql, [key_id], |r| Ok(exact_key(r))).optional()?.transpose()?;
        // The validity window as the enrollment states it, to the nanosecond (as authorisation
        // reads it), not as the view rounds it.
        let Some(k) = found.filter(|k| k.valid_from <= now && k.valid_until.is_none_or(|u| now < u)) else {
            return Ok(None);
        };
        Ok(Some(KeyInfo::from(k)))
    }

    /// Entries matching `filter`, in log order.
    pub fn entries(&self, filter: &EntryFilter) -> Result<Vec<EntrySummary>, Error> {
        let conn = self.reader();
        let mut sql = String::from(
            "SELECT e.idx, e.leaf_hash, e.kind, k.key_id,
                    (SELECT c.signed_at FROM checkpoints c WHERE c.size > e.idx ORDER BY c.size LIMIT 1),
                    e.body, e.form
             FROM entries e JOIN keys k ON k.enrolled_at = e.signer",
        );
        let mut conds: Vec<String> = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(g) = &filter.gpu {
            conds.push("e.idx IN (SELECT idx FROM gpu_records WHERE uuid = ?)".into());
            args.push(g.as_str().to_string().into());
        }
        if let Some(serial) = &filter.serial {
            conds.push("e.idx IN (SELECT idx FROM acquisitions WHERE serial = ?)".into());
            args.push(serial.clone().into());
        }
        if let Some(host) = &filter.located {
            conds.push("e.idx IN (SELECT idx FROM located WHERE host = ?)".into());
            args.push(host.clone().into());
        }
        if let Some(k) = filter.kind {
            conds.push("e.kind = ?".into());
            args.push(crate::store::kind_code(k).into());
        }
        if let Some(i) = filter.from {
            conds.push("e.idx >= ?".into());
            args.push((i as i64).into());
        }
        if let Some(t) = filter.since {
            // Appended at or after t = in a batch whose checkpoint was signed at or after t.
            conds.push("e.idx >= (SELECT COALESCE(MAX(size), 0) FROM checkpoints WHERE signed_at < ?)".into());
            args.push(unix(t).into());
        }
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        // SQLite reads a LIMIT as a signed 64-bit integer: a larger one would be an error.
        let cap = |n: u64| n.min(i64::MAX as u64);
        match filter.last {
            Some(n) => {
                sql.push_str(&format!(" ORDER BY e.idx DESC LIMIT {}", cap(n.min(filter.limit.unwrap_or(u64::MAX)))))
            }
            None => {
                sql.push_str(" ORDER BY e.idx");
                if let Some(l) = filter.limit {
                    sql.push_str(&format!(" LIMIT {}", cap(l)));
                }
            }
        }
        let mut st = conn.prepare_cached(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Vec<u8>>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (idx, leaf, kind, key_id, appended, body, form) = row?;
            let env =
                crate::record::expand(&body, form, &key_id).map_err(|e| Error::Corrupt(format!("entry {idx}: {e}")))?;
            out.push(EntrySummary {
                index: idx as u64,
                leaf_hash: Hash(leaf.try_into().map_err(|_| Error::Corrupt(format!("leaf hash of entry {idx}")))?),
                kind: kind_from_code(kind).ok_or_else(|| Error::Corrupt(format!("kind of entry {idx}")))?,
                key_id,
                appended_at: from_unix(appended.unwrap_or(0)),
                envelope: String::from_utf8_lossy(&env).into_owned(),
            });
        }
        if filter.last.is_some() {
            out.reverse();
        }
        Ok(out)
    }

    /// The latest attested state of every GPU, as of a point in the log.
    pub fn inventory(&self, as_of: AsOf) -> Result<Vec<InventoryGpu>, Error> {
        let reader = self.reader();
        // One snapshot for every query below: an append in between would tear a GPU's row
        // from its trail.
        let conn = reader.unchecked_transaction()?;
        let limit: Option<i64> = match as_of {
            AsOf::Latest => None,
            AsOf::Size(n) => Some(n as i64),
            // An entry was appended when the first checkpoint covering it was signed.
            AsOf::Time(t) => Some(conn.query_row(
                "SELECT COALESCE(MAX(size), 0) FROM checkpoints WHERE signed_at <= ?1",
                [unix(t)],
                |r| r.get(0),
            )?),
        };
        let mut out = latest_gpus(&conn, None)?;
        let Some(n) = limit else { return Ok(out) };
        // A GPU last attested before `n` stands as the view has it, trail and all: none of its
        // attestations is newer. The others are read again as of `n` (usually none or a few: a
        // caller reading the inventory at the checkpoint it just fetched).
        let n = n.max(0) as u64;
        let newer: Vec<GpuUuid> = out.iter().filter(|g| g.index >= n).map(|g| g.uuid.clone()).collect();
        out.retain(|g| g.index < n);
        let mut parsed: HashMap<u64, Option<GpuAttestation>> = HashMap::new();
        for uuid in newer {
            let trail = trail_as_of(&conn, &uuid, n)?;
            let Some((idx, _)) = trail.latest else { continue };
            // One attestation covers several GPUs: read and parse it once.
            if let std::collections::hash_map::Entry::Vacant(slot) = parsed.entry(idx) {
                slot.insert(match stored_record(&conn, idx)? {
                    Some(Record::GpuAttestation(a)) => Some(a),
                    _ => None,
                });
            }
            let Some(Some(a)) = parsed.get(&idx) else { continue };
            if let Some(g) = a.gpus.iter().find(|g| g.uuid == uuid) {
                out.push(InventoryGpu {
                    uuid: g.uuid.clone(),
                    host: a.host.hostname.clone(),
                    serial: g.facts.serial.clone(),
                    ueid: g.facts.ueid.clone(),
                    sku: recomputed_sku(g),
                    fingerprint_digest: g.fingerprint_digest,
                    index: idx,
                    observed_at: a.observed_at,
                    source: a.source,
                    trail,
                });
            }
        }
        out.sort_by(|a, b| (a.host.as_str(), a.uuid.as_str()).cmp(&(b.host.as_str(), b.uuid.as_str())));
        Ok(out)
    }

    /// The trails of `uuids` as of the first `size` entries (what [`Ledger::inventory`] gives
    /// them), for a reader that keeps its own fleet and reads only what changed.
    pub fn trails(&self, uuids: &[GpuUuid], size: u64) -> Result<HashMap<GpuUuid, Trail>, Error> {
        let reader = self.reader();
        let conn = reader.unchecked_transaction()?;
        let mut current = conn.prepare_cached("SELECT idx, fingerprint_digest, changes FROM gpus WHERE uuid = ?1")?;
        let mut spans = conn.prepare_cached(
            "SELECT uuid, host, first_idx, last_idx, first_ns, last_ns, prev_idx FROM gpu_hosts WHERE uuid = ?1 ORDER BY first_idx",
        )?;
        let mut out = HashMap::new();
        for uuid in uuids {
            let row: Option<(i64, Vec<u8>, Option<String>)> =
                current.query_row([uuid.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()?;
            let trail = match row {
                // Nothing of it after `size`: the view's trail is the trail then.
                Some((idx, digest, changes)) if (idx as u64) < size => Trail {
                    latest: Some((
                        idx as u64,
                        Hash(digest.try_into().map_err(|_| Error::Corrupt("gpus digest".into()))?),
                    )),
                    changes: json_or_default(changes.as_deref(), "gpus.changes")?,
                    hosts: spans
                        .query_map([uuid.as_str()], host_span)?
                        .map(|r| r.map(|(_, h)| (h.host.clone(), h)))
                        .collect::<Result<_, _>>()?,
                    ..Trail::default()
                },
                Some(_) => trail_as_of(&conn, uuid, size)?,
                None => continue,
            };
            out.insert(uuid.clone(), trail);
        }
        Ok(out)
    }

    /// The latest attested state of the GPUs that report `serial` (one serial under several
    /// UUIDs is an anomaly the agents look for without reading the whole inventory).
    pub fn inventory_by_serial(&self, serial: &str) -> Result<Vec<InventoryGpu>, Error> {
        let reader = self.reader();
        let conn = reader.unchecked_transaction()?;
        latest_gpus(&conn, Some(serial))
    }

    /// Drops and recomputes every derived view from the entries; returns how many it replayed.
    pub fn rebuild_views(&self) -> Result<u64, Error> {
        let mut w = self.writer_lock();
        let tx = w.conn.transaction()?;
        tx.execute_batch(
            "DELETE FROM keys; DELETE FROM gpus; DELETE FROM gpu_records; DELETE FROM gpu_hosts; DELETE FROM gpu_facts; DELETE FROM gpu_settled; DELETE FROM acquisitions; DELETE FROM runs; DELETE FROM located;",
        )?;
        let mut registry = Registry::new();
        let mut n = 0u64;
        crate::record::replay(&tx, true, |idx, parsed| {
            let p = parsed.map_err(|e| Error::Corrupt(format!("entry {idx}: {e}")))?;
            crate::record::apply(&p, &mut registry, idx);
            if let Some(rec) = &p.record {
                apply(&tx, idx, rec, &registry)?;
            }
            n += 1;
            Ok(())
        })?;
        store_counters(&tx, &Registry::new(), &registry)?;
        tx.commit()?;
        w.set_registry(registry);
        Ok(n)
    }

    /// Which entry index a GPU's latest attestation is at, if any.
    pub fn gpu_latest_index(&self, uuid: &GpuUuid) -> Result<Option<u64>, Error> {
        let conn = self.reader();
        Ok(conn
            .query_row("SELECT idx FROM gpus WHERE uuid = ?1", [uuid.as_str()], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|v| v as u64))
    }
}

/// GPU `uuid`'s trail as of the first `n` entries, folded from its records' rows (host, time,
/// digest) and the fact values each set. What a reader sees of it: its hosts and changes.
fn trail_as_of(conn: &Connection, uuid: &GpuUuid, n: u64) -> Result<Trail, Error> {
    let mut records = conn.prepare_cached(
        "SELECT idx, host, observed_ns, digest FROM gpu_records WHERE uuid = ?1 AND idx < ?2 AND host IS NOT NULL ORDER BY idx",
    )?;
    let mut facts =
        conn.prepare_cached("SELECT idx, field, value FROM gpu_facts WHERE uuid = ?1 AND idx < ?2 ORDER BY idx")?;
    let mut set: std::collections::BTreeMap<u64, Vec<(String, String)>> = std::collections::BTreeMap::new();
    for row in facts.query_map(params![uuid.as_str(), n as i64], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
    })? {
        let (idx, field, value) = row?;
        set.entry(idx).or_default().push((field, value));
    }
    let mut settled_st =
        conn.prepare_cached("SELECT idx FROM gpu_settled WHERE uuid = ?1 AND idx < ?2 ORDER BY idx")?;
    let settled: Vec<u64> = settled_st
        .query_map(params![uuid.as_str(), n as i64], |r| r.get::<_, i64>(0))?
        .map(|r| r.map(|i| i as u64))
        .collect::<Result<_, _>>()?;
    let mut settled = settled.into_iter().peekable();
    let mut trail = Trail::default();
    let mut rows = records.query(params![uuid.as_str(), n as i64])?;
    while let Some(r) = rows.next()? {
        let idx = r.get::<_, i64>(0)? as u64;
        // Settlements before this attestation, in log order.
        while settled.next_if(|s| *s < idx).is_some() {
            trail.settle();
        }
        let digest: Vec<u8> = r.get(3)?;
        let digest = Hash(digest.try_into().map_err(|_| Error::Corrupt("gpu_records digest".into()))?);
        let values: Vec<(&str, &str)> =
            set.get(&idx).map(|v| v.iter().map(|(f, v)| (f.as_str(), v.as_str())).collect()).unwrap_or_default();
        trail.fold(idx, &r.get::<_, String>(1)?, from_unix_ns(r.get(2)?), digest, &values);
    }
    if settled.next().is_some() {
        trail.settle();
    }
    // The known values are the fold's working state, not part of what the view gives.
    trail.known.clear();
    Ok(trail)
}

/// A `gpu_hosts` row (`uuid, host, first_idx, last_idx, first_ns, last_ns, prev_idx`).
fn host_span(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, HostSpan)> {
    Ok((
        r.get(0)?,
        HostSpan {
            host: r.get(1)?,
            first_index: r.get::<_, i64>(2)? as u64,
            last_index: r.get::<_, i64>(3)? as u64,
            first_observed_at: from_unix_ns(r.get(4)?),
            last_observed_at: from_unix_ns(r.get(5)?),
            previous_index: r.get::<_, Option<i64>>(6)?.map(|i| i as u64),
        },
    ))
}

/// The record stored at `idx`, parsed in full.
fn stored_record(conn: &Connection, idx: u64) -> Result<Option<Record>, Error> {
    let (body, form, key_id): (Vec<u8>, i64, String) = conn.query_row(
        "SELECT e.body, e.form, k.key_id FROM entries e JOIN keys k ON k.enrolled_at = e.signer WHERE e.idx = ?1",
        [idx as i64],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let env = crate::record::expand(&body, form, &key_id).map_err(|e| Error::Corrupt(format!("entry {idx}: {e}")))?;
    Ok(crate::record::parse(&env, usize::MAX, true).map_err(|r| Error::Corrupt(format!("entry {idx}: {r}")))?.record)
}

/// Rows of the `gpus` view (every GPU's latest attestation) with their trails, all or those with
/// one serial.
fn latest_gpus(conn: &Connection, serial: Option<&str>) -> Result<Vec<InventoryGpu>, Error> {
    let columns =
        "g.uuid, g.idx, g.host, g.serial, g.sku, g.fingerprint_digest, g.observed_at, g.source, g.changes, g.ueid";
    let sql = match serial {
        None => format!("SELECT {columns} FROM gpus g ORDER BY g.host, g.uuid"),
        Some(_) => format!("SELECT {columns} FROM gpus g WHERE g.serial = ?1 ORDER BY g.host, g.uuid"),
    };
    let mut st = conn.prepare(&sql)?;
    let mut rows = match serial {
        None => st.query([])?,
        Some(s) => st.query([s])?,
    };
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let uuid: String = r.get(0)?;
        let digest: Vec<u8> = r.get(5)?;
        let source: String = r.get(7)?;
        let index = r.get::<_, i64>(1)? as u64;
        let fingerprint_digest = Hash(digest.try_into().map_err(|_| Error::Corrupt("gpus digest".into()))?);
        out.push(InventoryGpu {
            uuid: GpuUuid::parse(&uuid)?,
            index,
            host: r.get(2)?,
            serial: r.get(3)?,
            ueid: r.get(9)?,
            sku: r.get(4)?,
            fingerprint_digest,
            observed_at: from_unix(r.get(6)?),
            source: serde_json::from_value(serde_json::Value::String(source)).unwrap_or(ProbeSource::NvidiaSmiText),
            trail: Trail {
                latest: Some((index, fingerprint_digest)),
                changes: json_or_default(r.get::<_, Option<String>>(8)?.as_deref(), "gpus.changes")?,
                ..Trail::default()
            },
        });
    }
    // The hosts of every GPU in one ordered read (or of the few that report `serial`).
    let mut hosts: HashMap<String, Vec<HostSpan>> = HashMap::new();
    let span = host_span;
    let host_columns = "uuid, host, first_idx, last_idx, first_ns, last_ns, prev_idx";
    match serial {
        None => {
            let mut st = conn.prepare(&format!("SELECT {host_columns} FROM gpu_hosts"))?;
            for row in st.query_map([], span)? {
                let (uuid, h) = row?;
                hosts.entry(uuid).or_default().push(h);
            }
        }
        Some(_) => {
            let mut st = conn.prepare_cached(&format!("SELECT {host_columns} FROM gpu_hosts WHERE uuid = ?1"))?;
            for g in &out {
                for row in st.query_map([g.uuid.as_str()], span)? {
                    let (uuid, h) = row?;
                    hosts.entry(uuid).or_default().push(h);
                }
            }
        }
    }
    for g in &mut out {
        g.trail.hosts =
            hosts.remove(g.uuid.as_str()).unwrap_or_default().into_iter().map(|h| (h.host.clone(), h)).collect();
    }
    Ok(out)
}
