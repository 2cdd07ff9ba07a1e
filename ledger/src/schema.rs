//! The SQLite schema and its migrations. `PRAGMA user_version` holds the schema version; each
//! migration runs in its own transaction.

use rusqlite::Connection;

use crate::Error;

/// `(version, SQL)`, applied in order to bring a database up to date. A version may also need
/// work SQL cannot do (see [`backfill`]).
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "
    -- Log facts: origin, log verifier key, creation time.
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;

    -- The log itself. Never UPDATEd or DELETEd. `body` is the envelope as received (form 0) or,
    -- for an envelope in canonical form, `signature ‖ payload` (form 1): the exact bytes are
    -- rebuilt from it and the signer's key id, and checked against `leaf_hash`. `signer` is the
    -- index of the signing key's enrollment entry; `kind` a RecordKind number; `made_at` unix
    -- seconds. When an entry was appended is the time of the checkpoint that first covers it.
    CREATE TABLE entries (
        idx INTEGER PRIMARY KEY,
        leaf_hash BLOB NOT NULL,
        body BLOB NOT NULL,
        form INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        signer INTEGER NOT NULL,
        made_at INTEGER NOT NULL
    );
    -- Duplicate detection on an 8-byte prefix keeps the index small; the full hash is compared.
    CREATE INDEX entries_by_leaf ON entries (substr(leaf_hash, 1, 8));

    -- Complete subtrees of level >= 2: id = level << 48 | index. Derived from the leaves
    -- (level 1 is two leaf hashes away and not worth a row per pair).
    CREATE TABLE nodes (id INTEGER PRIMARY KEY, hash BLOB NOT NULL);

    -- Every signed checkpoint, by tree size.
    CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, note BLOB NOT NULL, signed_at INTEGER NOT NULL);
    CREATE INDEX checkpoints_by_time ON checkpoints (signed_at);

    -- Derived views, rebuildable from the entries.
    CREATE TABLE keys (
        enrolled_at INTEGER PRIMARY KEY,
        key_id TEXT NOT NULL UNIQUE,
        verifier_key TEXT NOT NULL,
        role TEXT NOT NULL,
        host TEXT,
        valid_from INTEGER NOT NULL,
        valid_until INTEGER,
        revoked_at INTEGER,
        last_counter INTEGER NOT NULL
    );
    CREATE TABLE gpus (
        uuid TEXT PRIMARY KEY,
        idx INTEGER NOT NULL,
        host TEXT NOT NULL,
        serial TEXT,
        sku TEXT,
        fingerprint_digest BLOB NOT NULL,
        observed_at INTEGER NOT NULL,
        source TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE gpu_records (uuid TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (uuid, idx)) WITHOUT ROWID;
    CREATE TABLE acquisitions (serial TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (serial, idx)) WITHOUT ROWID;
    CREATE TABLE runs (run_id TEXT PRIMARY KEY, idx INTEGER NOT NULL) WITHOUT ROWID;
    ",
    ),
    (
        2,
        "
    -- People's tokens for the server: state beside the log, not part of it. Only SHA-256 of a
    -- token's secret is kept; revocation sets revoked_at and is never undone.
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER,
        secret_hash BLOB NOT NULL
    ) WITHOUT ROWID;
    ",
    ),
    (
        3,
        "
    -- Duplicate detection by (signer, counter) instead of by leaf hash: counters only grow per
    -- key, so new entries land at the end of their signer's range of this index, where a random
    -- 8-byte hash prefix dirtied a random page of it per entry (and wrote it to the WAL). An
    -- exact duplicate has the same signer and counter; its full leaf hash is then compared.
    -- `counter` is the predicate's counter, derived from the payload like `kind` and `signer`.
    ALTER TABLE entries ADD COLUMN counter INTEGER;
    DROP INDEX entries_by_leaf;
    CREATE INDEX entries_by_signer ON entries (signer, counter);
    ",
    ),
    (
        4,
        "
    -- Each GPU's trail through the log (domain::trail::Trail::fold): every host that attested it
    -- (first and last log index there, signer times in Unix nanoseconds); each identity fact's
    -- last known value and last change (gpus.known, gpus.changes: JSON, NULL when empty); and
    -- the fact values each attestation set (gpu_facts). An attestation's row in gpu_records keeps
    -- its host, signer time and the GPU's digest: with gpu_facts, the trail as of any earlier
    -- size is one range read per GPU.
    CREATE TABLE gpu_hosts (
        uuid TEXT NOT NULL,
        host TEXT NOT NULL,
        first_idx INTEGER NOT NULL,
        last_idx INTEGER NOT NULL,
        first_ns INTEGER NOT NULL,
        last_ns INTEGER NOT NULL,
        PRIMARY KEY (uuid, host)
    ) WITHOUT ROWID;
    CREATE TABLE gpu_facts (
        uuid TEXT NOT NULL,
        idx INTEGER NOT NULL,
        field TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (uuid, idx, field)
    ) WITHOUT ROWID;
    -- Admin annotations that settle a GPU's history (Trail::settle), by log index.
    CREATE TABLE gpu_settled (uuid TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (uuid, idx)) WITHOUT ROWID;
    ALTER TABLE gpus ADD COLUMN known TEXT;
    ALTER TABLE gpus ADD COLUMN changes TEXT;
    ALTER TABLE gpu_records ADD COLUMN host TEXT;
    ALTER TABLE gpu_records ADD COLUMN observed_ns INTEGER;
    ALTER TABLE gpu_records ADD COLUMN digest BLOB;
    ",
    ),
    (
        5,
        "
    -- Witnesses' cosignatures (C2SP cosignature/v1 note signature lines) of the log's
    -- checkpoints, by checkpoint size and witness name, each checked against the witness's key
    -- before it is kept. Not part of the log: a checkpoint is served with those it has.
    CREATE TABLE cosignatures (
        size INTEGER NOT NULL,
        witness TEXT NOT NULL,
        line TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (size, witness)
    ) WITHOUT ROWID;
    ",
    ),
    (
        6,
        "
    -- The log key rotation records (kind 8), read at every open and by GET /log-keys: a partial
    -- index holds only them.
    CREATE INDEX IF NOT EXISTS entries_rotations ON entries (idx) WHERE kind = 8;
    ",
    ),
    (
        7,
        "
    -- Each host's attestation of a GPU before its last one: a derived evidence nonce's
    -- checkpoint must include it (domain::standing::InLog). And each GPU's hardware identity
    -- (the ueid its NVIDIA evidence names), so a node's hook finds the GPUs elsewhere that
    -- claim its GPUs' identities. Both filled by rebuilding the trails.
    ALTER TABLE gpu_hosts ADD COLUMN prev_idx INTEGER;
    ALTER TABLE gpus ADD COLUMN ueid TEXT;
    CREATE INDEX gpus_ueid ON gpus (ueid) WHERE ueid IS NOT NULL;
    ",
    ),
    (
        8,
        "
    -- Each location proof by the host it locates (its subject): what a scheduler's hook and
    -- the dashboard read a host's recent proofs from. Filled by a replay of the proofs.
    CREATE TABLE located (host TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (host, idx)) WITHOUT ROWID;
    ",
    ),
];

/// The newest schema this build writes.
pub const SCHEMA_VERSION: i64 = 8;

/// Applies every migration the database lacks, all in one transaction (a crash leaves the
/// database as it was); refuses a database from a newer build.
pub fn migrate(conn: &mut Connection) -> Result<(), Error> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    let pending: Vec<_> = MIGRATIONS.iter().filter(|(v, _)| *v > found).collect();
    let Some(&&(last, _)) = pending.last() else { return Ok(()) };
    let tx = conn.transaction()?;
    let mut rebuild_trails = false;
    for (version, sql) in pending {
        tx.execute_batch(sql)?;
        match version {
            3 => backfill_counters(&tx)?,
            // The trails are rebuilt once, after the last migration: the code that fills them
            // writes the newest shape of their tables.
            4 | 7 => rebuild_trails = true,
            8 => crate::views::backfill_located(&tx)?,
            _ => {}
        }
        tracing::info!(version, "applied schema migration");
    }
    if rebuild_trails {
        crate::views::backfill_trails(&tx)?;
    }
    tx.pragma_update(None, "user_version", last)?;
    tx.commit()?;
    Ok(())
}

/// Schema 3: each entry's predicate counter.
fn backfill_counters(tx: &rusqlite::Transaction<'_>) -> Result<(), Error> {
    // Fill `entries.counter` from each stored envelope. An entry that does not read back keeps a
    // NULL counter rather than stopping the log from opening: the audit then names it.
    let mut update = tx.prepare("UPDATE entries SET counter = ?1 WHERE idx = ?2")?;
    let (mut n, mut unreadable) = (0u64, 0u64);
    crate::record::replay(tx, false, |idx, parsed| {
        match parsed {
            Ok(p) => {
                update.execute(rusqlite::params![p.counter as i64, idx as i64])?;
                n += 1;
            }
            Err(_) => unreadable += 1,
        }
        Ok(())
    })?;
    if unreadable > 0 {
        tracing::warn!(unreadable, "entries that do not read back keep no counter; `ledger verify` names them");
    }
    tracing::info!(entries = n, "filled in entries.counter");
    Ok(())
}

/// Connection settings: WAL, full fsync on commit, foreign data kept out of memory-mapped IO.
pub fn configure(conn: &Connection) -> Result<(), Error> {
    // Large pages pack ~600-byte rows with little slack; only takes effect on a new file.
    conn.pragma_update(None, "page_size", 8192)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    conn.pragma_update(None, "cache_size", -32768)?;
    // Fold the WAL into the database every ~40 MB rather than every 4 MB, and trim it after.
    conn.pragma_update(None, "wal_autocheckpoint", 10000)?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    // An append runs ~20 distinct statements; rusqlite's default cache keeps 16, and a statement
    // evicted is parsed again on its next use.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}
