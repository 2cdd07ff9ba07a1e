//! A witness's durable memory: for each log it follows, the latest checkpoint it cosigned (size
//! and root), in SQLite with a full fsync on commit. [`WitnessState::advance`] reads a log's
//! head, lets the caller decide, and stores the new head in one write transaction — atomic even
//! against another process on the same file — so that the head only moves along consistency
//! proofs the caller checked, and a crash at any point leaves either the old head or the new one.
//! The caller cosigns only after `advance` returns: a cosignature is never given for a head not
//! yet on disk.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chipledger_domain::merkle::Hash;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::Error;

/// A witness's heads, one per log origin.
#[derive(Debug)]
pub struct WitnessState {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl WitnessState {
    /// Opens (creating if needed) the state file at `path`.
    pub fn open(path: &Path) -> Result<WitnessState, Error> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS heads (
                 origin TEXT PRIMARY KEY,
                 size INTEGER NOT NULL CHECK (size >= 0),
                 root BLOB NOT NULL CHECK (length(root) = 32)
             ) STRICT;",
        )?;
        Ok(WitnessState { path: path.to_path_buf(), conn: Mutex::new(conn) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The latest head cosigned for `origin`.
    pub fn head(&self, origin: &str) -> Result<Option<(u64, Hash)>, Error> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        read_head(&conn, origin)
    }

    /// Reads `origin`'s head and hands it to `decide`; if it accepts — returning its answer and
    /// the new head — the head is stored and committed (fsynced) before this returns. A head
    /// never moves backwards, whatever `decide` says.
    pub fn advance<T, E>(
        &self,
        origin: &str,
        decide: impl FnOnce(Option<(u64, Hash)>) -> Result<(T, u64, Hash), E>,
    ) -> Result<Result<T, E>, Error> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let head = read_head(&tx, origin)?;
        let (answer, size, root) = match decide(head) {
            Ok(accepted) => accepted,
            Err(e) => return Ok(Err(e)),
        };
        if head.is_some_and(|(old, _)| size < old) {
            return Err(Error::Corrupt(format!("a witness head for {origin} would move back from {size}")));
        }
        if head != Some((size, root)) {
            tx.execute(
                "INSERT INTO heads (origin, size, root) VALUES (?1, ?2, ?3)
                 ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root",
                params![origin, size as i64, &root.0[..]],
            )?;
        }
        tx.commit()?;
        Ok(Ok(answer))
    }
}

fn read_head(conn: &Connection, origin: &str) -> Result<Option<(u64, Hash)>, Error> {
    let row: Option<(i64, Vec<u8>)> = conn
        .query_row("SELECT size, root FROM heads WHERE origin = ?1", [origin], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        None => Ok(None),
        Some((size, root)) => {
            let root: [u8; 32] =
                root.try_into().map_err(|_| Error::Corrupt(format!("the witness head of {origin} is not a hash")))?;
            Ok(Some((size as u64, Hash(root))))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failure is the point
mod tests {
    use super::*;

    #[test]
    fn heads_persist_move_forward_only_and_refusals_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("witness.db");
        let w = WitnessState::open(&path).unwrap();
        assert_eq!(w.head("a").unwrap(), None);
        let r: Result<(), ()> = w
            .advance("a", |h| {
                assert_eq!(h, None);
                Ok(((), 5, Hash([5; 32])))
            })
            .unwrap();
        assert!(r.is_ok());
        let r: Result<(), &str> = w.advance("a", |_| Err("no")).unwrap();
        assert_eq!(r, Err("no"));
        assert!(w.advance::<(), ()>("a", |_| Ok(((), 4, Hash([4; 32])))).is_err());
        drop(w);
        let w = WitnessState::open(&path).unwrap();
        assert_eq!(w.head("a").unwrap(), Some((5, Hash([5; 32]))));
        assert_eq!(w.head("b").unwrap(), None);
    }
}
