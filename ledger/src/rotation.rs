//! Log key rotation on the ledger's side (`domain::rotation` holds the format and the rule):
//! `begin` writes the new key beside the log (`log-key.next.pem`), then appends the announcement
//! signed by both keys; from then on every checkpoint carries both signatures. `finish` appends
//! the closing record (its checkpoint still signed by both), then makes the new key the log key
//! and keeps the old one as `log-key.retired-<key hash>.pem`. Both consume the ledger: a process
//! serving the log is restarted to pick up the new key.

use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::records::{sign_record, Record};
use chipledger_domain::rotation::{LogKeyRotation, LogKeys, Phase};
use rusqlite::{params, Connection};

use crate::store::{io_err, write_private_file, Ledger, LOG_KEY_FILE};
use crate::Error;

/// The announced key's file during an overlap.
pub const NEXT_KEY_FILE: &str = "log-key.next.pem";

/// The rotation records in the log, in order, folded from the log's first key: the chain of
/// keys a reader pinning the first key would follow. `current` is the log key on file.
pub(crate) fn fold(conn: &Connection, current: &VerifierKey) -> Result<LogKeys, Error> {
    let rotations = rotations(conn)?;
    let first = match rotations.first() {
        Some((_, r)) => VerifierKey::parse(&r.old_key)?,
        None => current.clone(),
    };
    let mut keys = LogKeys::pinned(first);
    for (index, r) in &rotations {
        keys.follow(r, *index)?;
    }
    if keys.current() != current && pending_new_key(&keys, current).is_none() {
        return Err(Error::Corrupt(format!(
            "the log key on file ({current}) is neither the key its rotations lead to ({}) nor one being rotated from",
            keys.current()
        )));
    }
    Ok(keys)
}

/// Every `log-key-rotation/v1` record with its index, oldest first.
pub(crate) fn rotations(conn: &Connection) -> Result<Vec<(u64, LogKeyRotation)>, Error> {
    let code = crate::store::kind_code(chipledger_domain::records::RecordKind::LogKeyRotation);
    let mut st = conn.prepare(
        "SELECT e.idx, e.body, e.form, k.key_id FROM entries e JOIN keys k ON k.enrolled_at = e.signer \
         WHERE e.kind = ?1 ORDER BY e.idx",
    )?;
    let rows = st.query_map(params![code], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (index, body, form, key_id) = row?;
        let bytes =
            crate::record::expand(&body, form, &key_id).map_err(|e| Error::Corrupt(format!("entry {index}: {e}")))?;
        let env = chipledger_domain::dsse::Envelope::from_json(&bytes)?;
        match Record::from_payload(&env.payload_bytes()?)? {
            Record::LogKeyRotation(r) => out.push((index, *r)),
            other => {
                return Err(Error::Corrupt(format!("entry {index} is stored as a rotation but is {:?}", other.kind())))
            }
        }
    }
    Ok(out)
}

/// The new key of a rotation that is open and started from `current`.
pub(crate) fn pending_new_key(keys: &LogKeys, current: &VerifierKey) -> Option<VerifierKey> {
    let w = keys.windows();
    let (last, before) = (w.last()?, w.get(w.len().checked_sub(2)?)?);
    (before.key == *current && before.until.is_none()).then(|| last.key.clone())
}

impl Ledger {
    /// The log's keys: every key it has had and the checkpoint sizes each may sign.
    pub fn log_keys(&self) -> Result<LogKeys, Error> {
        let conn = self.reader();
        fold(&conn, self.verifier_key())
    }

    /// The rotation records with their indexes (what a reader follows).
    pub fn rotation_records(&self) -> Result<Vec<(u64, LogKeyRotation)>, Error> {
        rotations(&self.reader())
    }

    /// Starts moving the log to `new_key`: writes it beside the log (0600), then appends the
    /// announcement signed by both keys in an envelope by `admin` (an enrolled admin key, with
    /// its next `counter`). Returns the announcement's index. The ledger is consumed: reopen it,
    /// and every checkpoint it signs carries both keys.
    pub fn begin_key_rotation(self, admin: &SigningKey, counter: u64, new_key: &SigningKey) -> Result<u64, Error> {
        let keys = self.log_keys()?;
        let current = self.verifier_key().clone();
        if let Some(next) = pending_new_key(&keys, &current) {
            return Err(Error::Rotation(format!("a rotation to {next} is already open: finish it first")));
        }
        let path = self.dir().join(NEXT_KEY_FILE);
        if path.exists() {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        }
        write_private_file(&path, new_key.to_pkcs8_pem()?.as_bytes())?;
        let old = self.read_log_key()?;
        self.append_rotation(admin, counter, Phase::Begin, &old, new_key)
    }

    /// Ends the open rotation: appends the closing record (its checkpoint the last the old key
    /// signs), then makes the announced key the log key; the old key file is kept as
    /// `log-key.retired-<key hash>.pem`. Returns the record's index; reopen the ledger.
    pub fn finish_key_rotation(self, admin: &SigningKey, counter: u64) -> Result<u64, Error> {
        let keys = self.log_keys()?;
        let current = self.verifier_key().clone();
        let Some(next) = pending_new_key(&keys, &current) else {
            return Err(Error::Rotation("no rotation is open: begin one first".into()));
        };
        let dir = self.dir().to_path_buf();
        let next_path = dir.join(NEXT_KEY_FILE);
        let new_key =
            SigningKey::from_pkcs8_pem_owned(std::fs::read_to_string(&next_path).map_err(io_err(&next_path))?)?;
        if new_key.public_key() != *next.public_key() {
            return Err(Error::Corrupt(format!("{} is not the announced key {next}", next_path.display())));
        }
        let old = self.read_log_key()?;
        let index = self.append_rotation(admin, counter, Phase::Finish, &old, &new_key)?;
        // The closing record is in; from here the new key alone signs. Order matters for a crash:
        // meta first (open then finds the key file it names missing and says so), then the files.
        let conn = Connection::open(dir.join("ledger.sqlite"))?;
        conn.execute("UPDATE meta SET value = ?1 WHERE key = 'log_verifier_key'", [next.to_string()])?;
        drop(conn);
        let log_path = dir.join(LOG_KEY_FILE);
        let retired = dir.join(format!("log-key.retired-{:08x}.pem", current.key_hash()));
        std::fs::rename(&log_path, &retired).map_err(io_err(&log_path))?;
        std::fs::rename(&next_path, &log_path).map_err(io_err(&next_path))?;
        Ok(index)
    }

    fn read_log_key(&self) -> Result<SigningKey, Error> {
        let path = self.dir().join(LOG_KEY_FILE);
        SigningKey::from_pkcs8_pem_owned(std::fs::read_to_string(&path).map_err(io_err(&path))?).map_err(Error::from)
    }

    fn append_rotation(
        self,
        admin: &SigningKey,
        counter: u64,
        phase: Phase,
        old: &SigningKey,
        new: &SigningKey,
    ) -> Result<u64, Error> {
        let now = self.clock().now();
        let at = self.size();
        let r = LogKeyRotation::new(self.origin(), phase, at, old, new, counter, now)?;
        let env = sign_record(&r, admin)?.to_json();
        let receipts = self.append(&[env])?;
        let receipt = receipts.into_iter().next().ok_or_else(|| Error::Corrupt("no receipt".into()))?;
        Ok(receipt.index)
    }
}
