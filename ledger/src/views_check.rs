//! The audit's check of the derived views: the views a replay of the entries builds, gathered as
//! the audit streams past them, compared row by row with the stored ones. The first difference is
//! named. (The views feed the inventory, the dashboard and placement; none of them may say more
//! or less than the log.)

use std::collections::BTreeMap;

use chipledger_domain::records::Record;
use rusqlite::Connection;

use chipledger_domain::trail::{followed, Change, Known, Trail};

use crate::record::{Parsed, Registry};
use crate::Error;

/// One row of the `gpus` view: a GPU's latest attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GpuRow {
    idx: u64,
    host: String,
    serial: Option<String>,
    ueid: Option<String>,
    sku: Option<String>,
    digest: Vec<u8>,
    observed_at: i64,
    source: String,
    /// The trail's facts: last known values and last changes (`gpus.known`, `gpus.changes`).
    known: BTreeMap<String, Known>,
    changes: BTreeMap<String, Change>,
}

/// The views as a replay makes them.
#[derive(Debug, Default)]
pub(crate) struct Expected {
    gpus: BTreeMap<String, GpuRow>,
    /// uuid → the indexes of the entries about it, in log order, each with a tag of what the
    /// view keeps of an attestation (host, signer time, digest; [`attested_tag`]) or 0.
    gpu_records: BTreeMap<String, Vec<(u64, u64)>>,
    /// uuid → its trail (`gpu_hosts`, `gpus.known`, `gpus.changes`).
    trails: BTreeMap<String, Trail>,
    /// How many fact values the attestations set (`gpu_facts` rows).
    facts_set: u64,
    /// uuid → the admin annotations that settled its history (`gpu_settled`).
    settled: BTreeMap<String, Vec<(u64, u64)>>,
    /// serial → the indexes of the acquisitions naming it, in log order.
    acquisitions: BTreeMap<String, Vec<(u64, u64)>>,
    runs: BTreeMap<String, u64>,
    /// host → the indexes of the location proofs locating it, in log order.
    located: BTreeMap<String, Vec<(u64, u64)>>,
}

impl Expected {
    /// Takes in the entry at `idx` (entries come in log order).
    pub(crate) fn apply(&mut self, idx: u64, p: &Parsed) {
        let mut about = |uuid: &str, tag: u64| {
            let v = self.gpu_records.entry(uuid.to_string()).or_default();
            if v.last().map(|(i, _)| *i) != Some(idx) {
                v.push((idx, tag));
            }
        };
        match &p.record {
            Some(Record::GpuAttestation(a)) => {
                let at_ns = crate::views::unix_ns(a.observed_at);
                for g in &a.gpus {
                    let trail = self.trails.entry(g.uuid.as_str().to_string()).or_default();
                    let mut set = trail.fold(
                        idx,
                        &a.host.hostname,
                        a.observed_at,
                        g.fingerprint_digest,
                        &followed(&g.fingerprint),
                    );
                    set.sort();
                    self.facts_set += set.len() as u64;
                    let (known, changes) = (trail.known.clone(), trail.changes.clone());
                    about(g.uuid.as_str(), attested_tag(&a.host.hostname, at_ns, &g.fingerprint_digest.0, &set));
                    self.gpus.insert(
                        g.uuid.as_str().to_string(),
                        GpuRow {
                            idx,
                            host: a.host.hostname.clone(),
                            serial: g.facts.serial.clone(),
                            sku: crate::views::recomputed_sku(g),
                            ueid: g.facts.ueid.clone(),
                            digest: g.fingerprint_digest.0.to_vec(),
                            observed_at: crate::store::unix(a.observed_at),
                            source: a.source.as_str().to_string(),
                            known,
                            changes,
                        },
                    );
                }
            }
            Some(Record::RunProvenance(r)) => {
                for g in &r.gpus {
                    about(g.uuid.as_str(), 0);
                }
                self.runs.insert(r.run_id.clone(), idx);
            }
            Some(Record::SchedulerJob(j)) => {
                for g in &j.gpus {
                    about(g.uuid.as_str(), 0);
                }
            }
            Some(Record::Acquisition(a)) => {
                for s in &a.serials {
                    let v = self.acquisitions.entry(s.clone()).or_default();
                    if v.last().map(|(i, _)| *i) != Some(idx) {
                        v.push((idx, 0));
                    }
                }
            }
            Some(Record::LocationProof(p)) => {
                let v = self.located.entry(p.subject.host.clone()).or_default();
                if v.last().map(|(i, _)| *i) != Some(idx) {
                    v.push((idx, 0));
                }
            }
            Some(Record::Annotation(a)) => {
                if let chipledger_domain::records::AnnotationTarget::Gpu { uuid } = &a.target {
                    about(uuid.as_str(), 0);
                    if a.settles_history {
                        self.settle(uuid.as_str(), idx);
                    }
                }
            }
            None => {
                if let Some(uuid) = &p.gpu_target {
                    about(uuid, 0);
                    if p.settles_history {
                        self.settle(uuid, idx);
                    }
                }
            }
            _ => {}
        }
    }

    /// An admin's settlement of GPU `uuid`'s history at `idx`.
    fn settle(&mut self, uuid: &str, idx: u64) {
        self.settled.entry(uuid.to_string()).or_default().push((idx, 0));
        if let Some(trail) = self.trails.get_mut(uuid) {
            trail.settle();
            if let Some(row) = self.gpus.get_mut(uuid) {
                row.changes.clear();
            }
        }
    }

    /// The first way the stored views differ from the replay, if any.
    pub(crate) fn first_difference(&self, conn: &Connection, registry: &Registry) -> Result<Option<String>, Error> {
        if let Some(d) = self.keys_difference(conn, registry)? {
            return Ok(Some(d));
        }
        // gpus
        let mut st = conn.prepare(
            "SELECT uuid, idx, host, serial, sku, fingerprint_digest, observed_at, source, known, changes, ueid FROM gpus ORDER BY uuid",
        )?;
        let mut rows = st.query([])?;
        let mut expected = self.gpus.iter();
        loop {
            let stored = match rows.next()? {
                Some(r) => Some((
                    r.get::<_, String>(0)?,
                    GpuRow {
                        idx: r.get::<_, i64>(1)? as u64,
                        host: r.get(2)?,
                        serial: r.get(3)?,
                        ueid: r.get(10)?,
                        sku: r.get(4)?,
                        digest: r.get(5)?,
                        observed_at: r.get(6)?,
                        source: r.get(7)?,
                        // A column that does not read back differs from any replay.
                        known: r.get::<_, Option<String>>(8)?.map_or(Ok(BTreeMap::new()), |t| {
                            serde_json::from_str(&t).or_else(|_| Ok::<_, Error>(unreadable_known()))
                        })?,
                        changes: r.get::<_, Option<String>>(9)?.map_or(Ok(BTreeMap::new()), |t| {
                            serde_json::from_str(&t).or_else(|_| Ok::<_, Error>(unreadable_changes()))
                        })?,
                    },
                )),
                None => None,
            };
            match (stored, expected.next()) {
                (None, None) => break,
                (Some((uuid, row)), Some((want_uuid, want))) if uuid == *want_uuid && row == *want => {}
                (Some((uuid, row)), Some((want_uuid, want))) if uuid == *want_uuid => {
                    return Ok(Some(format!(
                        "the gpus view says GPU {uuid} was last attested at entry {} on {} ({}, facts changed: {}), a replay says entry {} on {} ({}, {})",
                        row.idx,
                        row.host,
                        row.sku.as_deref().unwrap_or("no SKU"),
                        changed(&row),
                        want.idx,
                        want.host,
                        want.sku.as_deref().unwrap_or("no SKU"),
                        changed(want)
                    )))
                }
                (Some((uuid, _)), Some((want_uuid, _))) if uuid < *want_uuid => {
                    return Ok(Some(format!("the gpus view lists GPU {uuid}, which no attestation names")))
                }
                (Some((uuid, _)), None) => {
                    return Ok(Some(format!("the gpus view lists GPU {uuid}, which no attestation names")))
                }
                (_, Some((want_uuid, want))) => {
                    return Ok(Some(format!(
                        "the gpus view lacks GPU {want_uuid}, attested at entry {}",
                        want.idx
                    )))
                }
            }
        }
        let tag = |r: &rusqlite::Row<'_>| -> rusqlite::Result<u64> {
            Ok(match (r.get::<_, Option<String>>(2)?, r.get::<_, Option<i64>>(3)?, r.get::<_, Option<Vec<u8>>>(4)?) {
                (Some(host), Some(ns), Some(digest)) => {
                    let set: Vec<(String, String)> = r
                        .get::<_, Option<String>>(5)?
                        .unwrap_or_default()
                        .split('\n')
                        .filter(|l| !l.is_empty())
                        .map(|l| {
                            l.split_once('=').map_or((l.to_string(), String::new()), |(f, v)| (f.into(), v.into()))
                        })
                        .collect();
                    attested_tag(&host, ns, &digest, &set)
                }
                _ => 0,
            })
        };
        // Each record's row with the fact values its attestation set, in field order.
        let sql = "SELECT r.uuid, r.idx, r.host, r.observed_ns, r.digest,
                      (SELECT group_concat(f.field || '=' || f.value, char(10) ORDER BY f.field)
                       FROM gpu_facts f WHERE f.uuid = r.uuid AND f.idx = r.idx)
                   FROM gpu_records r ORDER BY r.uuid, r.idx";
        if let Some(d) = index_difference(conn, sql, "gpu_records", "GPU", &self.gpu_records, tag)? {
            return Ok(Some(d));
        }
        if let Some(d) = self.hosts_difference(conn)? {
            return Ok(Some(d));
        }
        let sql = "SELECT uuid, idx FROM gpu_settled ORDER BY uuid, idx";
        if let Some(d) = index_difference(conn, sql, "gpu_settled", "GPU", &self.settled, |_| Ok(0))? {
            return Ok(Some(d));
        }
        let stored: i64 = conn.query_row("SELECT COUNT(*) FROM gpu_facts", [], |r| r.get(0))?;
        if stored as u64 != self.facts_set {
            return Ok(Some(format!(
                "the gpu_facts view holds {stored} fact values; a replay sets {} (rows of no attestation)",
                self.facts_set
            )));
        }
        let sql = "SELECT serial, idx FROM acquisitions ORDER BY serial, idx";
        if let Some(d) = index_difference(conn, sql, "acquisitions", "serial", &self.acquisitions, |_| Ok(0))? {
            return Ok(Some(d));
        }
        let sql = "SELECT host, idx FROM located ORDER BY host, idx";
        if let Some(d) = index_difference(conn, sql, "located", "host", &self.located, |_| Ok(0))? {
            return Ok(Some(d));
        }
        let mut st = conn.prepare("SELECT run_id, idx FROM runs ORDER BY run_id")?;
        let stored: BTreeMap<String, u64> = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
            .collect::<Result<_, _>>()?;
        if stored != self.runs {
            let first = stored
                .iter()
                .find(|(k, v)| self.runs.get(*k) != Some(v))
                .map(|(k, v)| format!("the runs view has run {k} at entry {v}, a replay {:?}", self.runs.get(k)))
                .or_else(|| {
                    self.runs
                        .iter()
                        .find(|(k, _)| !stored.contains_key(*k))
                        .map(|(k, v)| format!("the runs view lacks run {k}, at entry {v}"))
                });
            return Ok(first);
        }
        Ok(None)
    }

    /// The `gpu_hosts` view against the replay's trails, GPU by GPU and host by host.
    fn hosts_difference(&self, conn: &Connection) -> Result<Option<String>, Error> {
        let mut st = conn.prepare(
            "SELECT uuid, host, first_idx, last_idx, first_ns, last_ns, prev_idx FROM gpu_hosts ORDER BY uuid, first_idx, host",
        )?;
        let mut stored: BTreeMap<String, Vec<SpanRow>> = BTreeMap::new();
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            stored.entry(r.get(0)?).or_default().push((
                r.get(1)?,
                r.get::<_, i64>(2)? as u64,
                r.get::<_, i64>(3)? as u64,
                r.get(4)?,
                r.get(5)?,
                r.get::<_, Option<i64>>(6)?.map(|i| i as u64),
            ));
        }
        for (uuid, trail) in &self.trails {
            let mut want: Vec<SpanRow> = trail
                .hosts
                .values()
                .map(|h| {
                    let (first, last) =
                        (crate::views::unix_ns(h.first_observed_at), crate::views::unix_ns(h.last_observed_at));
                    (h.host.clone(), h.first_index, h.last_index, first, last, h.previous_index)
                })
                .collect();
            want.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
            let have = stored.remove(uuid).unwrap_or_default();
            if have != want {
                let show = |v: &[SpanRow]| {
                    v.iter()
                        .map(|(h, f, l, _, _, p)| match p {
                            Some(p) => format!("{h} (entries {f}–{l}, the one before {p})"),
                            None => format!("{h} (entries {f}–{l})"),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Ok(Some(format!(
                    "the gpu_hosts view says GPU {uuid} was attested on {}; a replay says on {}",
                    show(&have),
                    show(&want)
                )));
            }
        }
        if let Some(uuid) = stored.keys().next() {
            return Ok(Some(format!("the gpu_hosts view lists GPU {uuid}, which no attestation names")));
        }
        Ok(None)
    }

    fn keys_difference(&self, conn: &Connection, registry: &Registry) -> Result<Option<String>, Error> {
        let stored = match crate::views::load_registry(conn) {
            Ok(r) => r,
            Err(e) => return Ok(Some(format!("the keys view does not load: {e}"))),
        };
        for (id, k) in registry {
            let Some(s) = stored.get(id) else {
                return Ok(Some(format!("the keys view lacks key {id}, enrolled at entry {}", k.enrolled_at)));
            };
            if (s.enrolled_at, s.revoked_at, s.last_counter) != (k.enrolled_at, k.revoked_at, k.last_counter) {
                return Ok(Some(format!(
                    "the keys view says key {id} was enrolled at {}, revoked at {:?}, last counter {}; a replay says {}, {:?}, {}",
                    s.enrolled_at, s.revoked_at, s.last_counter, k.enrolled_at, k.revoked_at, k.last_counter
                )));
            }
        }
        if let Some(id) = stored.keys().find(|id| !registry.contains_key(*id)) {
            return Ok(Some(format!("the keys view lists key {id}, which no entry enrolls")));
        }
        Ok(None)
    }
}

/// The changed facts of a `gpus` row, for a person.
fn changed(row: &GpuRow) -> String {
    if row.changes.is_empty() {
        return "none".into();
    }
    row.changes.iter().map(|(f, c)| format!("{f} {} → {}", c.from.value, c.to)).collect::<Vec<_>>().join(", ")
}

/// What an unreadable `gpus.known` compares as: a value no replay gives.
fn unreadable_known() -> BTreeMap<String, Known> {
    let since = time::OffsetDateTime::UNIX_EPOCH;
    let k = Known { value: "(unreadable)".into(), index: u64::MAX, host: String::new(), since };
    BTreeMap::from([("(unreadable)".to_string(), k)])
}

/// What an unreadable `gpus.changes` compares as.
fn unreadable_changes() -> BTreeMap<String, Change> {
    let since = time::OffsetDateTime::UNIX_EPOCH;
    let from = Known { value: "(unreadable)".into(), index: u64::MAX, host: String::new(), since };
    BTreeMap::from([("(unreadable)".to_string(), Change { from, to: "(unreadable)".into(), index: u64::MAX })])
}

/// A `gpu_hosts` row: host, first and last index, first and last signer time (Unix ns).
/// `(host, first index, last index, first ns, last ns, previous index)`.
type SpanRow = (String, u64, u64, i64, i64, Option<u64>);

/// What the view keeps of one GPU's attestation, in 8 bytes: its host, signer time, digest and
/// the fact values it set (in field order).
fn attested_tag(host: &str, at_ns: i64, digest: &[u8], set: &[(String, String)]) -> u64 {
    let mut bytes = Vec::with_capacity(8 + host.len() + 8 + digest.len());
    let mut put = |b: &[u8]| {
        bytes.extend_from_slice(&(b.len() as u64).to_be_bytes());
        bytes.extend_from_slice(b);
    };
    put(host.as_bytes());
    put(&at_ns.to_be_bytes());
    put(digest);
    for (field, value) in set {
        put(field.as_bytes());
        put(value.as_bytes());
    }
    let out = chipledger_domain::merkle::Hash::sha256(&bytes).0;
    // Never 0, which stands for "not an attestation".
    u64::from_be_bytes([out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7]]).max(1)
}

/// Compares a `(name, idx, …)` index view (`sql` reads it in key order) with the replay's, row by
/// row; `tag` sums up what a row holds beyond its key and index.
fn index_difference(
    conn: &Connection,
    sql: &str,
    table: &str,
    what: &str,
    expected: &BTreeMap<String, Vec<(u64, u64)>>,
    tag: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<u64>,
) -> Result<Option<String>, Error> {
    let mut st = conn.prepare(sql)?;
    let mut rows = st.query([])?;
    let mut want = expected.iter().flat_map(|(k, v)| v.iter().map(move |(i, t)| (k, *i, *t)));
    loop {
        let stored = match rows.next()? {
            Some(r) => Some((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64, tag(r)?)),
            None => None,
        };
        match (stored, want.next()) {
            (None, None) => return Ok(None),
            (Some((k, i, t)), Some((wk, wi, wt))) if k == *wk && i == wi && t == wt => {}
            (Some((k, i, _)), Some((wk, wi, _))) if k == *wk && i == wi => {
                let what = format!("{what} {k} at entry {i}");
                return Ok(Some(format!("the {table} view's row for {what} holds another host, time or digest")));
            }
            (Some((k, i, _)), Some((wk, wi, _))) if (k.as_str(), i) < (wk.as_str(), wi) => {
                return Ok(Some(format!("the {table} view ties {what} {k} to entry {i}; a replay does not")))
            }
            (Some((k, i, _)), None) => {
                return Ok(Some(format!("the {table} view ties {what} {k} to entry {i}; a replay does not")))
            }
            (_, Some((wk, wi, _))) => {
                return Ok(Some(format!("the {table} view does not tie {what} {wk} to entry {wi}; a replay does")))
            }
        }
    }
}
