//! Witnesses' cosignatures of the log's checkpoints, kept beside the log (schema 5): the server
//! submits each new checkpoint to its witnesses, checks each cosignature against the witness's
//! key, and keeps it here; `/checkpoint` serves the latest checkpoint with the cosignatures it
//! has. Nothing here is part of the log or its tree.

use rusqlite::{params, OptionalExtension};

use crate::{Error, Ledger};

impl Ledger {
    /// Keeps `witness`'s cosignature `line` (a note signature line, checked by the caller) of
    /// the checkpoint of `size`; a newer one from the same witness replaces it.
    pub fn add_cosignature(&self, size: u64, witness: &str, line: &str) -> Result<(), Error> {
        if !line.starts_with('\u{2014}') || !line.ends_with('\n') || line[..line.len() - 1].contains('\n') {
            return Err(Error::Corrupt("a cosignature is one note signature line".into()));
        }
        let w = self.writer_lock();
        let known: Option<i64> =
            w.conn.query_row("SELECT size FROM checkpoints WHERE size = ?1", [size as i64], |r| r.get(0)).optional()?;
        if known.is_none() {
            return Err(Error::NoSuchEntry { index: size, size: self.size() });
        }
        w.conn.execute(
            "INSERT INTO cosignatures (size, witness, line, received_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (size, witness) DO UPDATE SET line = excluded.line, received_at = excluded.received_at",
            params![size as i64, witness, line, self.now_unix()],
        )?;
        Ok(())
    }

    /// The latest checkpoint with every cosignature kept for it appended (a valid signed note:
    /// readers that know the witnesses' keys check a quorum; others ignore the extra lines).
    pub fn cosigned_checkpoint(&self) -> Result<(u64, String), Error> {
        self.cosigned(None)
    }

    /// The checkpoint signed at `size`, with every cosignature kept for it appended.
    pub fn cosigned_checkpoint_at(&self, size: u64) -> Result<String, Error> {
        Ok(self.cosigned(Some(size))?.1)
    }

    fn cosigned(&self, size: Option<u64>) -> Result<(u64, String), Error> {
        let conn = self.reader();
        let tx = conn.unchecked_transaction()?;
        let row = |r: &rusqlite::Row<'_>| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?));
        let found = match size {
            None => tx.query_row("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1", [], row),
            Some(s) => tx.query_row("SELECT size, note FROM checkpoints WHERE size = ?1", [s as i64], row),
        }
        .optional()?;
        let (size, note) = match (found, size) {
            (Some(found), _) => found,
            (None, None) => return Err(Error::Corrupt("the log has no checkpoint".into())),
            (None, Some(s)) => return Err(Error::Corrupt(format!("no checkpoint was signed at size {s}"))),
        };
        let mut note = String::from_utf8_lossy(&note).into_owned();
        let mut st = tx.prepare_cached("SELECT line FROM cosignatures WHERE size = ?1 ORDER BY witness")?;
        for line in st.query_map([size], |r| r.get::<_, String>(0))? {
            note.push_str(&line?);
        }
        Ok((size as u64, note))
    }

    /// For each witness that cosigned anything: the size of the latest checkpoint it cosigned.
    pub fn witnessed_sizes(&self) -> Result<Vec<(String, u64)>, Error> {
        let conn = self.reader();
        let mut st =
            conn.prepare_cached("SELECT witness, MAX(size) FROM cosignatures GROUP BY witness ORDER BY witness")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        rows.collect::<Result<_, _>>().map_err(Error::from)
    }
}
