//! The audit's check of the derived views: the views a replay of the entries builds, gathered as
//! the audit streams past them, compared row by row with the stored ones. The first difference is
//! named. (The views feed the inventory, the dashboard and placement; none of them may say more
//! or less than the log.)

use std::collections::BTreeMap;

use chipledger_domain::records::Record;
use rusqlite::Connection;

use crate::record::{Parsed, Registry};
use crate::Error;

/// One row of the `gpus` view: a GPU's latest attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GpuRow {
    idx: u64,
    host: String,
    serial: Option<String>,
    sku: Option<String>,
    digest: Vec<u8>,
    observed_at: i64,
    source: String,
}

/// The views as a replay makes them.
#[derive(Debug, Default)]
pub(crate) struct Expected {
    gpus: BTreeMap<String, GpuRow>,
    /// uuid → the indexes of the entries about it, in log order.
    gpu_records: BTreeMap<String, Vec<u64>>,
    /// serial → the indexes of the acquisitions naming it, in log order.
    acquisitions: BTreeMap<String, Vec<u64>>,
    runs: BTreeMap<String, u64>,
}

impl Expected {
    /// Takes in the entry at `idx` (entries come in log order).
    pub(crate) fn apply(&mut self, idx: u64, p: &Parsed) {
        let mut about = |uuid: &str| {
            let v = self.gpu_records.entry(uuid.to_string()).or_default();
            if v.last() != Some(&idx) {
                v.push(idx);
            }
        };
        match &p.record {
            Some(Record::GpuAttestation(a)) => {
                for g in &a.gpus {
                    about(g.uuid.as_str());
                    self.gpus.insert(
                        g.uuid.as_str().to_string(),
                        GpuRow {
                            idx,
                            host: a.host.hostname.clone(),
                            serial: g.facts.serial.clone(),
                            sku: crate::views::recomputed_sku(g),
                            digest: g.fingerprint_digest.0.to_vec(),
                            observed_at: crate::store::unix(a.observed_at),
                            source: a.source.as_str().to_string(),
                        },
                    );
                }
            }
            Some(Record::RunProvenance(r)) => {
                for g in &r.gpus {
                    about(g.uuid.as_str());
                }
                self.runs.insert(r.run_id.clone(), idx);
            }
            Some(Record::Acquisition(a)) => {
                for s in &a.serials {
                    let v = self.acquisitions.entry(s.clone()).or_default();
                    if v.last() != Some(&idx) {
                        v.push(idx);
                    }
                }
            }
            Some(Record::Annotation(a)) => {
                if let chipledger_domain::records::AnnotationTarget::Gpu { uuid } = &a.target {
                    about(uuid.as_str());
                }
            }
            None => {
                if let Some(uuid) = &p.gpu_target {
                    about(uuid);
                }
            }
            _ => {}
        }
    }

    /// The first way the stored views differ from the replay, if any.
    pub(crate) fn first_difference(&self, conn: &Connection, registry: &Registry) -> Result<Option<String>, Error> {
        if let Some(d) = self.keys_difference(conn, registry)? {
            return Ok(Some(d));
        }
        // gpus
        let mut st = conn.prepare(
            "SELECT uuid, idx, host, serial, sku, fingerprint_digest, observed_at, source FROM gpus ORDER BY uuid",
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
                        sku: r.get(4)?,
                        digest: r.get(5)?,
                        observed_at: r.get(6)?,
                        source: r.get(7)?,
                    },
                )),
                None => None,
            };
            match (stored, expected.next()) {
                (None, None) => break,
                (Some((uuid, row)), Some((want_uuid, want))) if uuid == *want_uuid && row == *want => {}
                (Some((uuid, row)), Some((want_uuid, want))) if uuid == *want_uuid => {
                    return Ok(Some(format!(
                        "the gpus view says GPU {uuid} was last attested at entry {} on {} ({}), a replay says entry {} on {} ({})",
                        row.idx,
                        row.host,
                        row.sku.as_deref().unwrap_or("no SKU"),
                        want.idx,
                        want.host,
                        want.sku.as_deref().unwrap_or("no SKU")
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
        if let Some(d) = index_difference(conn, "gpu_records", "uuid", "GPU", &self.gpu_records)? {
            return Ok(Some(d));
        }
        if let Some(d) = index_difference(conn, "acquisitions", "serial", "serial", &self.acquisitions)? {
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

/// Compares a `(name, idx)` index view with the replay's, row by row in key order.
fn index_difference(
    conn: &Connection,
    table: &str,
    column: &str,
    what: &str,
    expected: &BTreeMap<String, Vec<u64>>,
) -> Result<Option<String>, Error> {
    let mut st = conn.prepare(&format!("SELECT {column}, idx FROM {table} ORDER BY {column}, idx"))?;
    let mut rows = st.query([])?;
    let mut want = expected.iter().flat_map(|(k, v)| v.iter().map(move |i| (k, *i)));
    loop {
        let stored = match rows.next()? {
            Some(r) => Some((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)),
            None => None,
        };
        match (stored, want.next()) {
            (None, None) => return Ok(None),
            (Some((k, i)), Some((wk, wi))) if k == *wk && i == wi => {}
            (Some((k, i)), Some((wk, wi))) if (k.as_str(), i) < (wk.as_str(), wi) => {
                return Ok(Some(format!("the {table} view ties {what} {k} to entry {i}; a replay does not")))
            }
            (Some((k, i)), None) => {
                return Ok(Some(format!("the {table} view ties {what} {k} to entry {i}; a replay does not")))
            }
            (_, Some((wk, wi))) => {
                return Ok(Some(format!("the {table} view does not tie {what} {wk} to entry {wi}; a replay does")))
            }
        }
    }
}
