//! Log key rotation on the ledger's side (`domain::rotation` holds the format and the rule):
//! `begin` writes the new key beside the log (`log-key.next.pem`), then appends the announcement
//! signed by both keys; from then on every checkpoint carries both signatures. `finish` appends
//! the closing record (its checkpoint still signed by both), then makes the new key the log key
//! and keeps the old one as `log-key.retired-<key hash>.pem`. Both consume the ledger: a process
//! serving the log is restarted to pick up the new key.

use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::records::{sign_record, Record};
use chipledger_domain::rotation::{LogKeyRotation, LogKeys, Phase};
use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use crate::store::{io_err, write_private_file, Ledger, LOG_KEY_FILE};
use crate::Error;

/// The announced key's file during an overlap.
pub const NEXT_KEY_FILE: &str = "log-key.next.pem";

/// The rotation records in the log, in order, folded from the log's first key (`meta`'s
/// `first_log_verifier_key`, written before the first rotation; before any, the key on file):
/// the chain of keys a reader pinning the first key follows. Only `rotate-key` appends rotation
/// records, after checking them against this chain, so a chain that does not follow is damage.
pub(crate) fn fold(conn: &Connection, on_file: &VerifierKey) -> Result<LogKeys, Error> {
    let first: Option<String> =
        conn.query_row("SELECT value FROM meta WHERE key = 'first_log_verifier_key'", [], |r| r.get(0)).optional()?;
    let first = match first {
        Some(v) => VerifierKey::parse(&v)?,
        None => on_file.clone(),
    };
    let mut keys = LogKeys::pinned(first);
    for (index, r) in rotations(conn)? {
        keys.follow(&r, index)?;
    }
    Ok(keys)
}

/// An open rotation: (the key it moves from, the announced key).
pub(crate) fn pending(keys: &LogKeys) -> Option<(VerifierKey, VerifierKey)> {
    let w = keys.windows();
    let (last, before) = (w.last()?, w.get(w.len().checked_sub(2)?)?);
    (before.until.is_none()).then(|| (before.key.clone(), last.key.clone()))
}

/// The private key for `expected` from `log-key.pem`. A `finish` interrupted between its record
/// and its renames is completed here: the announced key waiting in `log-key.next.pem` becomes
/// the log key and the old one is kept as retired.
pub(crate) fn signing_key(dir: &Path, expected: &VerifierKey) -> Result<SigningKey, Error> {
    let path = dir.join(LOG_KEY_FILE);
    let key = read_key(&path)?;
    if key.public_key() == *expected.public_key() {
        return Ok(key);
    }
    let next_path = dir.join(NEXT_KEY_FILE);
    if next_path.exists() {
        let next = read_key(&next_path)?;
        if next.public_key() == *expected.public_key() {
            let old = VerifierKey::new(expected.name(), key.public_key())?;
            let retired = dir.join(format!("log-key.retired-{:08x}.pem", old.key_hash()));
            std::fs::rename(&path, &retired).map_err(io_err(&path))?;
            std::fs::rename(&next_path, &path).map_err(io_err(&next_path))?;
            sync_dir(dir)?;
            tracing::warn!(key = %expected, "completed an interrupted log key rotation: the announced key is now log-key.pem");
            return Ok(next);
        }
    }
    Err(Error::Corrupt(format!("{} is not the key the log's rotations lead to ({expected})", path.display())))
}

/// The announced key's private half during an overlap, if its file is there: without it the
/// log signs with the old key alone (still valid) and the rotation cannot finish.
pub(crate) fn next_key(dir: &Path, next: &VerifierKey) -> Result<Option<SigningKey>, Error> {
    let path = dir.join(NEXT_KEY_FILE);
    if !path.exists() {
        tracing::warn!(key = %next, "a log key rotation is open but {} is missing: checkpoints carry the old key only", path.display());
        return Ok(None);
    }
    let key = read_key(&path)?;
    if key.public_key() != *next.public_key() {
        return Err(Error::Corrupt(format!("{} is not the key the open rotation announced ({next})", path.display())));
    }
    Ok(Some(key))
}

/// The log key epoch: bumped by every rotation step, so that other processes holding the
/// ledger open stop signing.
pub(crate) fn epoch(conn: &Connection) -> Result<i64, Error> {
    let v: Option<String> =
        conn.query_row("SELECT value FROM meta WHERE key = 'log_key_epoch'", [], |r| r.get(0)).optional()?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

fn read_key(path: &Path) -> Result<SigningKey, Error> {
    SigningKey::from_pkcs8_pem_owned(std::fs::read_to_string(path).map_err(io_err(path))?).map_err(Error::from)
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Every `log-key-rotation/v1` record with its index, oldest first.
pub(crate) fn rotations(conn: &Connection) -> Result<Vec<(u64, LogKeyRotation)>, Error> {
    // The literal kind lets SQLite use the partial index `entries_rotations` (schema 6).
    debug_assert_eq!(crate::store::kind_code(chipledger_domain::records::RecordKind::LogKeyRotation), 8);
    let mut st = conn.prepare(
        "SELECT e.idx, e.body, e.form, k.key_id FROM entries e JOIN keys k ON k.enrolled_at = e.signer \
         WHERE e.kind = 8 ORDER BY e.idx",
    )?;
    let rows = st.query_map([], |r| {
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
    /// and every checkpoint it signs carries both keys. Other processes holding the ledger open
    /// sign nothing more until restarted.
    pub fn begin_key_rotation(self, admin: &SigningKey, counter: u64, new_key: &SigningKey) -> Result<u64, Error> {
        let keys = self.log_keys()?;
        if let Some((_, next)) = pending(&keys) {
            return Err(Error::Rotation(format!("a rotation to {next} is already open: finish it first")));
        }
        if keys.keys().iter().any(|k| k.public_key() == &new_key.public_key()) {
            return Err(Error::Rotation("the new key was a log key before".into()));
        }
        let dir = self.dir().to_path_buf();
        let path = dir.join(NEXT_KEY_FILE);
        if path.exists() {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        }
        write_private_file(&path, new_key.to_pkcs8_pem()?.as_bytes())?;
        sync_dir(&dir)?;
        // The chain's first key, for readers of this log ever after.
        self.writer_conn(|c| {
            c.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('first_log_verifier_key', ?1)",
                [keys.windows()[0].key.to_string()],
            )
            .map(drop)
        })?;
        let old = self.read_log_key()?;
        self.append_rotation(admin, counter, Phase::Begin, &old, new_key)
    }

    /// Ends the open rotation: appends the closing record (its checkpoint the last the old key
    /// signs, under both keys), then makes the announced key the log key; the old key file is
    /// kept as `log-key.retired-<key hash>.pem`. A crash after the record is completed by the
    /// next open. Returns the record's index; reopen the ledger.
    pub fn finish_key_rotation(self, admin: &SigningKey, counter: u64) -> Result<u64, Error> {
        let keys = self.log_keys()?;
        let Some((_, next)) = pending(&keys) else {
            return Err(Error::Rotation("no rotation is open: begin one first".into()));
        };
        let dir = self.dir().to_path_buf();
        let new_key = next_key(&dir, &next)?.ok_or_else(|| {
            Error::Rotation(format!(
                "{} is missing: the announced key cannot sign; begin another rotation",
                NEXT_KEY_FILE
            ))
        })?;
        let old = self.read_log_key()?;
        let index = self.append_rotation(admin, counter, Phase::Finish, &old, &new_key)?;
        // The closing record is in; from here the new key alone signs.
        signing_key(&dir, &next)?;
        let conn = Connection::open(dir.join("ledger.sqlite"))?;
        conn.execute("UPDATE meta SET value = ?1 WHERE key = 'log_verifier_key'", [next.to_string()])?;
        Ok(index)
    }

    fn read_log_key(&self) -> Result<SigningKey, Error> {
        read_key(&self.dir().join(LOG_KEY_FILE))
    }

    /// Bumps the key epoch (other processes stop signing) and appends one rotation record,
    /// after checking it against the log's keys.
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
        // The record must follow: checked here exactly as every reader will.
        let mut keys = self.log_keys()?;
        keys.follow(&r, at).map_err(|e| Error::Rotation(e.to_string()))?;
        self.bump_epoch()?;
        let env = sign_record(&r, admin)?.to_json();
        let receipts = self.append_checked(&[env], true)?;
        let receipt = receipts.into_iter().next().ok_or_else(|| Error::Corrupt("no receipt".into()))?;
        Ok(receipt.index)
    }
}
