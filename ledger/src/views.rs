//! Derived views: the key registry, latest GPU state, per-GPU record index, acquisitions, runs.
//! Updated in the append transaction; rebuildable from the entries alone.

use std::collections::HashMap;

use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::log::{AsOf, EntrySummary, InventoryGpu};
use chipledger_domain::merkle::Hash;
use chipledger_domain::records::{AnnotationTarget, GpuAttestation, ProbeSource, Record, Role};
use chipledger_domain::trail::{HostSpan, Trail};
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
        Record::Annotation(a) => {
            if let AnnotationTarget::Gpu { uuid } = &a.target {
                conn.prepare_cached("INSERT OR IGNORE INTO gpu_records (uuid, idx) VALUES (?1, ?2)")?
                    .execute(params![uuid.as_str(), idx])?;
            }
        }
    }
    Ok(())
}

/// The attestation at `idx` in the GPU views: each GPU's record (with its host, signer time and
/// digest), its latest state, and its trail (`domain::trail::Trail::fold`, kept as `gpu_hosts`
/// and `gpus.changed_from`).
fn apply_attestation(conn: &Connection, idx: i64, a: &GpuAttestation) -> Result<(), Error> {
    let mut rec_st = conn.prepare_cached(
        "INSERT OR IGNORE INTO gpu_records (uuid, idx, host, observed_ns, digest) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    // A GPU's latest state is its attestation at the highest log index: the signer's clock
    // (`observed_at`) never orders the view. Its fingerprint changing makes the attestation it
    // replaces the one to compare with.
    let mut gpu_st = conn.prepare_cached(
        "INSERT INTO gpus (uuid, idx, host, serial, sku, fingerprint_digest, observed_at, source, changed_from)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL)
         ON CONFLICT (uuid) DO UPDATE SET idx = excluded.idx, host = excluded.host, serial = excluded.serial,
           sku = excluded.sku, fingerprint_digest = excluded.fingerprint_digest,
           observed_at = excluded.observed_at, source = excluded.source,
           changed_from = CASE WHEN gpus.fingerprint_digest = excluded.fingerprint_digest THEN gpus.changed_from
                               ELSE gpus.idx END
         WHERE excluded.idx >= gpus.idx",
    )?;
    let mut host_st = conn.prepare_cached(
        "INSERT INTO gpu_hosts (uuid, host, first_idx, last_idx, first_ns, last_ns) VALUES (?1, ?2, ?3, ?3, ?4, ?4)
         ON CONFLICT (uuid, host) DO UPDATE SET last_idx = excluded.last_idx, last_ns = excluded.last_ns
         WHERE excluded.last_idx >= gpu_hosts.last_idx",
    )?;
    let source = a.source.as_str();
    let at_ns = unix_ns(a.observed_at);
    for g in &a.gpus {
        let uuid = g.uuid.as_str();
        let digest = &g.fingerprint_digest.0[..];
        rec_st.execute(params![uuid, idx, a.host.hostname, at_ns, digest])?;
        gpu_st.execute(params![
            uuid,
            idx,
            a.host.hostname,
            g.facts.serial,
            recomputed_sku(g),
            digest,
            unix(a.observed_at),
            source
        ])?;
        host_st.execute(params![uuid, a.host.hostname, idx, at_ns])?;
    }
    Ok(())
}

/// Fills the trail columns of a log written before they existed (schema 4), from its entries.
/// An entry that does not read back is left out: `ledger verify` then names the difference.
pub(crate) fn backfill_trails(tx: &Connection) -> Result<(), Error> {
    let mut update =
        tx.prepare("UPDATE gpu_records SET host = ?3, observed_ns = ?4, digest = ?5 WHERE uuid = ?1 AND idx = ?2")?;
    let mut trails: HashMap<String, Trail> = HashMap::new();
    let mut unreadable = 0u64;
    crate::record::replay(tx, true, |idx, parsed| {
        match parsed {
            Ok(Parsed { record: Some(Record::GpuAttestation(a)), .. }) => {
                for g in &a.gpus {
                    let at_ns = unix_ns(a.observed_at);
                    update.execute(params![
                        g.uuid.as_str(),
                        idx as i64,
                        a.host.hostname,
                        at_ns,
                        &g.fingerprint_digest.0[..]
                    ])?;
                    trails.entry(g.uuid.as_str().to_string()).or_default().fold(
                        idx,
                        &a.host.hostname,
                        a.observed_at,
                        g.fingerprint_digest,
                    );
                }
            }
            Ok(_) => {}
            Err(_) => unreadable += 1,
        }
        Ok(())
    })?;
    let mut changed = tx.prepare("UPDATE gpus SET changed_from = ?2 WHERE uuid = ?1")?;
    let mut host = tx.prepare(
        "INSERT INTO gpu_hosts (uuid, host, first_idx, last_idx, first_ns, last_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (uuid, trail) in &trails {
        changed.execute(params![uuid, trail.changed_from.map(|i| i as i64)])?;
        for h in &trail.hosts {
            host.execute(params![
                uuid,
                h.host,
                h.first_index as i64,
                h.last_index as i64,
                unix_ns(h.first_observed_at),
                unix_ns(h.last_observed_at)
            ])?;
        }
    }
    if unreadable > 0 {
        tracing::warn!(
            unreadable,
            "entries that do not read back are left out of the GPU trails; `ledger verify` names them"
        );
    }
    tracing::info!(gpus = trails.len(), "filled in the GPU trails");
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
        let conn = self.reader();
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
        match filter.last {
            Some(n) => sql.push_str(&format!(" ORDER BY e.idx DESC LIMIT {}", n.min(filter.limit.unwrap_or(u64::MAX)))),
            None => {
                sql.push_str(" ORDER BY e.idx");
                if let Some(l) = filter.limit {
                    sql.push_str(&format!(" LIMIT {l}"));
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
        let conn = self.reader();
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
        let mut records = conn.prepare_cached(
            "SELECT idx, host, observed_ns, digest FROM gpu_records WHERE uuid = ?1 AND idx < ?2 AND host IS NOT NULL ORDER BY idx",
        )?;
        for uuid in newer {
            let mut trail = Trail::default();
            let mut rows = records.query(params![uuid.as_str(), n as i64])?;
            while let Some(r) = rows.next()? {
                let digest: Vec<u8> = r.get(3)?;
                let digest = Hash(digest.try_into().map_err(|_| Error::Corrupt("gpu_records digest".into()))?);
                trail.fold(r.get::<_, i64>(0)? as u64, &r.get::<_, String>(1)?, from_unix_ns(r.get(2)?), digest);
            }
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

    /// The latest attested state of the GPUs that report `serial` (one serial under several
    /// UUIDs is an anomaly the agents look for without reading the whole inventory).
    pub fn inventory_by_serial(&self, serial: &str) -> Result<Vec<InventoryGpu>, Error> {
        latest_gpus(&self.reader(), Some(serial))
    }

    /// Drops and recomputes every derived view from the entries; returns how many it replayed.
    pub fn rebuild_views(&self) -> Result<u64, Error> {
        let mut w = self.writer_lock();
        let tx = w.conn.transaction()?;
        tx.execute_batch(
            "DELETE FROM keys; DELETE FROM gpus; DELETE FROM gpu_records; DELETE FROM gpu_hosts; DELETE FROM acquisitions; DELETE FROM runs;",
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
        "g.uuid, g.idx, g.host, g.serial, g.sku, g.fingerprint_digest, g.observed_at, g.source, g.changed_from";
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
            sku: r.get(4)?,
            fingerprint_digest,
            observed_at: from_unix(r.get(6)?),
            source: serde_json::from_value(serde_json::Value::String(source)).unwrap_or(ProbeSource::NvidiaSmiText),
            trail: Trail {
                latest: Some((index, fingerprint_digest)),
                changed_from: r.get::<_, Option<i64>>(8)?.map(|i| i as u64),
                hosts: Vec::new(),
            },
        });
    }
    // The hosts of every GPU in one ordered read (or of the few that report `serial`).
    let mut hosts: HashMap<String, Vec<HostSpan>> = HashMap::new();
    let span = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(String, HostSpan)> {
        Ok((
            r.get(0)?,
            HostSpan {
                host: r.get(1)?,
                first_index: r.get::<_, i64>(2)? as u64,
                last_index: r.get::<_, i64>(3)? as u64,
                first_observed_at: from_unix_ns(r.get(4)?),
                last_observed_at: from_unix_ns(r.get(5)?),
            },
        ))
    };
    let host_columns = "uuid, host, first_idx, last_idx, first_ns, last_ns";
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
        let mut spans = hosts.remove(g.uuid.as_str()).unwrap_or_default();
        spans.sort_by_key(|h| h.first_index);
        g.trail.hosts = spans;
    }
    Ok(out)
}
