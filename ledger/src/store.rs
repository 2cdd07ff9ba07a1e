//! The ledger: a data directory with the log database and the log's key; append with group
//! commit; checkpoints; proofs; tiles.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use chipledger_domain::keys::{PublicKey, SigningKey, VerifierKey};
use chipledger_domain::log::{Clock, Receipt};
use chipledger_domain::merkle::{self, Hash, HashSource};
use chipledger_domain::note::Checkpoint;
use chipledger_domain::records::{self, KeyEnrollment, RecordKind, Role};
use rand_core::CryptoRngCore;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use time::{Duration, OffsetDateTime};

use crate::record::{self, Parsed, Registry};
use crate::tree::{node_id, DbSource, Frontier, OverlaySource};
use crate::{views, Error, Rejection};

pub const DB_FILE: &str = "ledger.sqlite";
pub const LOG_KEY_FILE: &str = "log-key.pem";
pub const ADMIN_KEY_FILE: &str = "admin-key.pem";

/// Append-time limits.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// The largest envelope accepted, in bytes; never more than [`MAX_ENTRY_BYTES`], whatever
    /// it is set to.
    pub max_envelope_bytes: usize,
    /// How far ahead of the log's clock a record's time may be.
    pub skew: Duration,
    /// How old a record may be when it arrives (agents spool while the log is unreachable).
    pub max_delay: Duration,
}

/// Read connections per open ledger (besides the writer's and the credential checks').
const READERS: usize = 4;

/// The largest envelope a log entry may be: a C2SP entry bundle gives each entry a 2-byte
/// length, so a larger one could never be served in its tile.
pub const MAX_ENTRY_BYTES: usize = chipledger_domain::records::MAX_ENTRY_BYTES;

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig { max_envelope_bytes: MAX_ENTRY_BYTES, skew: Duration::minutes(5), max_delay: Duration::days(7) }
    }
}

/// What `init` created.
#[derive(Debug)]
pub struct InitInfo {
    pub origin: String,
    pub log_verifier_key: VerifierKey,
    pub admin_verifier_key: VerifierKey,
    pub admin_key_path: PathBuf,
}

/// The in-memory state of the writer, always equal to what is committed.
#[derive(Debug, Clone)]
struct State {
    frontier: Frontier,
    registry: Registry,
}

pub(crate) struct Writer {
    pub(crate) conn: Connection,
    state: State,
    log_key: SigningKey,
    /// During a key rotation's overlap: the new key, which signs every checkpoint beside it.
    next_key: Option<SigningKey>,
    /// The log key epoch this writer's keys are from (`meta.log_key_epoch`); a rotation by
    /// another process bumps it, and this writer then signs nothing.
    pub(crate) epoch: i64,
}

impl Writer {
    pub(crate) fn set_registry(&mut self, registry: Registry) {
        self.state.registry = registry;
    }
}

struct Pending {
    envelopes: Vec<Vec<u8>>,
    /// Each envelope as [`Ledger::prepare`] left it, taken by the first validation (a group
    /// committed again parses anew, under the lock).
    parsed: Vec<Option<Result<Parsed, Rejection>>>,
    /// For each envelope over the size limit: its signer's key id and counter (a light parse
    /// outside the lock), so that one stored before the limit was lowered is still a duplicate.
    oversize: HashMap<usize, (String, u64)>,
    reply: mpsc::Sender<Result<Vec<Receipt>, Error>>,
}

/// A transparency log in a data directory.
pub struct Ledger {
    dir: PathBuf,
    origin: String,
    log_vkey: VerifierKey,
    config: LedgerConfig,
    clock: Arc<dyn Clock>,
    writer: Mutex<Writer>,
    queue: Mutex<Vec<Pending>>,
    /// Read connections: a long read (a whole history, a bundle) holds one, not every reader.
    pub(crate) readers: Vec<Mutex<Connection>>,
    /// Turns among the readers when all are busy.
    next_reader: std::sync::atomic::AtomicUsize,
    /// The connection credential checks read through (tokens, a signed request's key): a login
    /// never waits behind a long read.
    credentials: Mutex<Connection>,
    /// The connection that folds the WAL when commits do not ([`Ledger::defer_wal_folding`]).
    folder: Mutex<Option<Connection>>,
    /// The committed size, published after each commit: readers (a server's async handlers)
    /// learn it without the writer's lock or SQLite.
    size: std::sync::atomic::AtomicU64,
    /// Every enrolled key's public key by key id, published after each commit that enrolls one:
    /// appends check signatures against it before they queue for the writer.
    known_keys: std::sync::RwLock<Arc<HashMap<String, PublicKey>>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("dir", &self.dir).field("origin", &self.origin).finish_non_exhaustive()
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the database half-written (transactions roll
    // back), so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Creates `path` with mode 0600 and writes a secret into it; never overwrites.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Where `init` builds a log before moving it into its directory.
const INIT_STAGING_DIR: &str = ".init-staging";
/// The file `init` holds an exclusive lock on while it builds a log.
const INIT_LOCK_FILE: &str = ".init.lock";

/// Makes the renames inside `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    Ok(())
}

pub(crate) fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

impl Ledger {
    /// Creates a new log in `dir`: database, log key, first admin key, and the admin's
    /// self-enrollment as entry 0.
    pub fn init(
        dir: &Path,
        origin: &str,
        clock: Arc<dyn Clock>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Ledger, InitInfo), Error> {
        chipledger_domain::keys::check_key_name(origin)?;
        let db_path = dir.join(DB_FILE);
        if db_path.exists() {
            return Err(Error::AlreadyInitialized { path: dir.to_path_buf() });
        }
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            // A directory we create holds keys: only its owner may enter it.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
            }
        }
        // One init at a time in a directory: an exclusive lock on a file beside the log, released
        // when this returns or the process dies; under it, the log is looked for again.
        let lock_path = dir.join(INIT_LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        lock.lock().map_err(io_err(&lock_path))?;
        if db_path.exists() {
            return Err(Error::AlreadyInitialized { path: dir.to_path_buf() });
        }
        // WAL files without their database belong to no log; SQLite must not replay them into
        // the new one.
        for stale in [format!("{DB_FILE}-wal"), format!("{DB_FILE}-shm")] {
            let path = dir.join(stale);
            if path.exists() {
                std::fs::remove_file(&path).map_err(io_err(&path))?;
            }
        }
        // The log is built whole in a staging directory and moved in, its database last: a crash
        // leaves either no log (`ledger.sqlite` absent, so `init` can run again) or a complete
        // one whose entry 0 is its admin's enrollment — never an empty log that whoever appends
        // first would own. Key files left by an init that did not finish belong to no log and
        // are replaced.
        let staging = dir.join(INIT_STAGING_DIR);
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io_err(&staging))?;
        }
        std::fs::create_dir(&staging).map_err(io_err(&staging))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o700)).map_err(io_err(&staging))?;
        }
        let log_key = SigningKey::generate(rng);
        let admin_key = SigningKey::generate(rng);
        let log_vkey = VerifierKey::new(origin, log_key.public_key())?;
        let admin_vkey = VerifierKey::new("admin", admin_key.public_key())?;
        write_private_file(&staging.join(LOG_KEY_FILE), log_key.to_pkcs8_pem()?.as_bytes())?;
        write_private_file(&staging.join(ADMIN_KEY_FILE), admin_key.to_pkcs8_pem()?.as_bytes())?;

        let staged_db = staging.join(DB_FILE);
        let mut conn = Connection::open(&staged_db)?;
        crate::schema::configure(&conn)?;
        crate::schema::migrate(&mut conn)?;
        let now = clock.now();
        conn.execute("INSERT INTO meta (key, value) VALUES ('origin', ?1)", [origin])?;
        conn.execute("INSERT INTO meta (key, value) VALUES ('log_verifier_key', ?1)", [log_vkey.to_string()])?;
        conn.execute("INSERT INTO meta (key, value) VALUES ('created_at', ?1)", [record::rfc3339(now)])?;
        drop(conn);

        let staged = Ledger::open(&staging, LedgerConfig::default(), clock.clone())?;
        let enrollment = KeyEnrollment {
            format_version: records::FORMAT_VERSION,
            counter: 1,
            issued_at: now,
            key_id: admin_key.key_id(),
            verifier_key: admin_vkey.to_string(),
            role: Role::Admin,
            host: None,
            valid_from: now,
            valid_until: None,
            site: None,
        };
        let env = records::sign_record(&enrollment, &admin_key)?;
        staged.append(&[env.to_json()])?;
        drop(staged);
        // Fold the WAL into the database file, which then holds the whole log on its own.
        let busy: i64 = Connection::open(&staged_db)?.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy != 0 {
            return Err(Error::Corrupt("the new log's WAL could not be folded into its database".into()));
        }
        for name in [LOG_KEY_FILE, ADMIN_KEY_FILE, DB_FILE] {
            let to = dir.join(name);
            std::fs::rename(staging.join(name), &to).map_err(io_err(&to))?;
            sync_dir(dir)?;
        }
        std::fs::remove_dir_all(&staging).map_err(io_err(&staging))?;
        drop(lock);

        let ledger = Ledger::open(dir, LedgerConfig::default(), clock)?;
        let info = InitInfo {
            origin: origin.to_string(),
            log_verifier_key: log_vkey,
            admin_verifier_key: admin_vkey,
            admin_key_path: dir.join(ADMIN_KEY_FILE),
        };
        Ok((ledger, info))
    }

    /// Opens an existing log: O(log n + keys) work, no scan of the entries.
    pub fn open(dir: &Path, config: LedgerConfig, clock: Arc<dyn Clock>) -> Result<Ledger, Error> {
        let db_path = dir.join(DB_FILE);
        if !db_path.exists() {
            return Err(Error::NotInitialized { path: dir.to_path_buf() });
        }
        let mut conn = Connection::open(&db_path)?;
        crate::schema::configure(&conn)?;
        crate::schema::migrate(&mut conn)?;
        let meta = |key: &str| -> Result<String, Error> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()?
                .ok_or_else(|| Error::Corrupt(format!("meta.{key} is missing")))
        };
        let origin = meta("origin")?;
        let on_file = VerifierKey::parse(&meta("log_verifier_key")?)?;
        // The keys the log's rotation records lead to, from its first key; the key that signs
        // now is the newest, or the one being rotated from during an overlap.
        let log_keys = crate::rotation::fold(&conn, &on_file)?;
        let pending = crate::rotation::pending(&log_keys);
        let log_vkey = match &pending {
            Some((old, _)) => old.clone(),
            None => log_keys.current().clone(),
        };
        let log_key = crate::rotation::signing_key(dir, &log_vkey)?;
        if on_file != log_vkey {
            // A `finish` interrupted after its record: meta catches up with the log.
            conn.execute("UPDATE meta SET value = ?1 WHERE key = 'log_verifier_key'", [log_vkey.to_string()])?;
        }
        // A rotation's overlap: the announced key's file, which signs beside the current key.
        let next_key = match &pending {
            None => None,
            Some((_, next)) => crate::rotation::next_key(dir, next)?,
        };
        let epoch = crate::rotation::epoch(&conn)?;
        // Size, right edge, last checkpoint and key registry from one snapshot: another process
        // appending meanwhile must not make a healthy log look torn.
        let snapshot = conn.unchecked_transaction()?;
        let size: u64 =
            snapshot.query_row("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries", [], |r| r.get::<_, i64>(0))? as u64;
        let frontier = Frontier::load(&DbSource(&snapshot), size)?;
        // Never sign a checkpoint inconsistent with the last one: the stored tree must still
        // match what the log signed.
        if let Some((cp_size, note)) = latest_checkpoint(&snapshot)? {
            let cp = log_keys.open_checkpoint(note.as_bytes(), Some(&origin))?;
            if cp_size != size || cp.checkpoint.root != frontier.root() {
                return Err(Error::Corrupt(format!(
                    "the last signed checkpoint (size {cp_size}) does not match the stored tree (size {size})"
                )));
            }
        }
        let registry = views::load_registry(&snapshot)?;
        drop(snapshot);
        let known_keys = std::sync::RwLock::new(Arc::new(public_keys(&registry)));
        let read_connection = || -> Result<Mutex<Connection>, Error> {
            let c = Connection::open(&db_path)?;
            crate::schema::configure(&c)?;
            Ok(Mutex::new(c))
        };
        let readers = (0..READERS).map(|_| read_connection()).collect::<Result<Vec<_>, _>>()?;
        let credentials = read_connection()?;
        Ok(Ledger {
            dir: dir.to_path_buf(),
            origin,
            log_vkey,
            config,
            clock,
            writer: Mutex::new(Writer { conn, state: State { frontier, registry }, log_key, next_key, epoch }),
            queue: Mutex::new(Vec::new()),
            readers,
            next_reader: std::sync::atomic::AtomicUsize::new(0),
            credentials,
            folder: Mutex::new(None),
            size: std::sync::atomic::AtomicU64::new(size),
            known_keys,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn verifier_key(&self) -> &VerifierKey {
        &self.log_vkey
    }

    /// Runs `f` on the writer's connection, under the writer's lock.
    pub(crate) fn writer_conn<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, Error> {
        let w = lock(&self.writer);
        Ok(f(&w.conn)?)
    }

    /// Bumps the log key epoch (a rotation step): this writer follows, every other process
    /// holding the ledger open stops signing.
    pub(crate) fn bump_epoch(&self) -> Result<(), Error> {
        let mut w = lock(&self.writer);
        let next = crate::rotation::epoch(&w.conn)? + 1;
        w.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('log_key_epoch', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [next.to_string()],
        )?;
        w.epoch = next;
        Ok(())
    }

    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    /// Appends envelopes, all or nothing. Concurrent callers are committed together in one
    /// transaction (group commit), each with its own all-or-nothing validation, and each
    /// committed group gets one signed checkpoint in the same transaction.
    pub fn append(&self, envelopes: &[Vec<u8>]) -> Result<Vec<Receipt>, Error> {
        self.append_checked(envelopes, false)
    }

    /// [`Ledger::append`]; log key rotation records only when `rotation` (the rotation
    /// commands, which check them against the log's keys first).
    pub(crate) fn append_checked(&self, envelopes: &[Vec<u8>], rotation: bool) -> Result<Vec<Receipt>, Error> {
        let (parsed, oversize) = self.prepare(envelopes)?;
        if !rotation {
            if let Some(position) = parsed.iter().position(
                |p| matches!(p, Some(Ok(p)) if p.kind == chipledger_domain::records::RecordKind::LogKeyRotation),
            ) {
                return Err(Error::Rejected { position, reason: Rejection::RotationNotAppendable });
            }
        }
        let (tx, rx) = mpsc::channel();
        lock(&self.queue).push(Pending { envelopes: envelopes.to_vec(), parsed, oversize, reply: tx });
        loop {
            if let Ok(result) = rx.try_recv() {
                return result;
            }
            let mut writer = lock(&self.writer);
            if let Ok(result) = rx.try_recv() {
                return result;
            }
            let group = std::mem::take(&mut *lock(&self.queue));
            self.commit_group(&mut writer, group);
        }
    }

    /// The part of an append that needs no lock, on the caller's thread (and its cores): every
    /// envelope parsed in full, within the size bound; where its key was enrolled before, its
    /// signature checked — a key id names one public key for good, so the verdict stands under
    /// the lock — and only then its storage form packed. A malformed or badly signed envelope is
    /// refused here and costs the writer nothing; what needs the log's state (enrolment,
    /// revocation, role, counters, duplicates, keys enrolled since) is checked under the lock.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        envelopes: &[Vec<u8>],
    ) -> Result<(Vec<Option<Result<Parsed, Rejection>>>, HashMap<usize, (String, u64)>), Error> {
        let limit = self.config.max_envelope_bytes.min(MAX_ENTRY_BYTES);
        let mut parsed = record::parse_many(envelopes, limit, true);
        let keys = Arc::clone(&self.known_keys.read().unwrap_or_else(|p| p.into_inner()));
        let known: Vec<usize> =
            (0..parsed.len()).filter(|i| parsed[*i].as_ref().is_ok_and(|p| keys.contains_key(&p.key_id))).collect();
        let items: Vec<(&[u8], &[u8], PublicKey)> = known
            .iter()
            .filter_map(|i| {
                let p = parsed[*i].as_ref().ok()?;
                Some((p.message.as_slice(), p.signature.as_slice(), *keys.get(&p.key_id)?))
            })
            .collect();
        let badly_signed = record::first_bad_signature(&items).map(|b| known[b]);
        // Refused for good: the first envelope that does not parse (one over the size limit may
        // still be a stored duplicate) or whose signature does not verify.
        let malformed = parsed.iter().position(|r| matches!(r, Err(e) if !matches!(e, Rejection::TooLarge { .. })));
        match (malformed, badly_signed) {
            (Some(m), b) if b.is_none_or(|b| m < b) => {
                let reason = match std::mem::replace(&mut parsed[m], Err(Rejection::NeedsSelfEnrollment)) {
                    Err(r) => r,
                    Ok(_) => Rejection::MalformedEnvelope("(unreachable)".into()),
                };
                return Err(Error::Rejected { position: m, reason });
            }
            (_, Some(b)) => {
                let key_id = parsed[b].as_ref().map(|p| p.key_id.clone()).unwrap_or_default();
                return Err(Error::Rejected { position: b, reason: Rejection::BadSignature { key_id } });
            }
            _ => {}
        }
        // Signed by an enrolled key: now worth packing.
        let packed = record::par_map(
            &known,
            |i| parsed[*i].as_ref().ok().and_then(|p| record::compact(&envelopes[*i], p)),
            || None,
        );
        for (i, compact) in known.iter().zip(packed) {
            if let Ok(p) = &mut parsed[*i] {
                p.verified = keys.get(&p.key_id).copied();
                p.compact = compact;
            }
        }
        let oversize = parsed
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Err(Rejection::TooLarge { .. })))
            .filter_map(|(i, _)| {
                let light = record::parse(&envelopes[i], usize::MAX, false).ok()?;
                keys.contains_key(&light.key_id).then_some((i, (light.key_id, light.counter)))
            })
            .collect();
        Ok((parsed.into_iter().map(Some).collect(), oversize))
    }

    /// Publishes the registry's usable public keys to [`Ledger::prepare`].
    fn publish_keys(&self, registry: &Registry) {
        *self.known_keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(public_keys(registry));
    }

    fn commit_group(&self, w: &mut Writer, group: Vec<Pending>) {
        let fail_all = |group: Vec<Pending>, e: &Error| {
            for p in group {
                let _ = p.reply.send(Err(Error::NotCommitted(e.to_string())));
            }
        };
        let Writer { conn, state: committed, log_key, next_key, epoch } = w;
        let next_key: Option<&SigningKey> = next_key.as_ref();
        // One write transaction covers validation and writing: one lock, and a consistent view
        // even if another process appended to the same file since our last commit.
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => return fail_all(group, &e.into()),
        };
        // Keys rotated by another process since this one opened the ledger: never sign again
        // with keys that may be retired.
        match crate::rotation::epoch(&tx) {
            Ok(e) if e == *epoch => {}
            Ok(_) => {
                return fail_all(
                    group,
                    &Error::Rotation(
                        "the log key was rotated by another process since this one opened the ledger: restart it"
                            .into(),
                    ),
                )
            }
            Err(e) => return fail_all(group, &e),
        }
        match refresh(&tx, committed) {
            Ok(true) => self.publish_keys(&committed.registry),
            Ok(false) => {}
            Err(e) => return fail_all(group, &e),
        }
        self.size.store(committed.frontier.size, std::sync::atomic::Ordering::Release);
        let now = self.clock.now();
        let mut state = committed.clone();
        let mut accepted: Vec<(Pending, Vec<Slot>)> = Vec::new();
        let mut fresh_leaves: HashMap<Hash, u64> = HashMap::new();
        for mut p in group {
            match self.validate(&tx, &state, &mut fresh_leaves, &mut p, now) {
                Ok((slots, next)) => {
                    state = next;
                    accepted.push((p, slots));
                }
                Err(e) => {
                    let _ = p.reply.send(Err(e));
                }
            }
        }
        if accepted.is_empty() {
            return;
        }
        // On big commits, signatures are verified and the new checkpoint signed on another core
        // while this thread writes. A bad signature rolls the transaction back (nothing is
        // signed) and the group is committed again without the request that carried it. The
        // checkpoint covers the tree validation computed; `write` checks that the rows it wrote
        // hash to it, and a note signed for a batch that then fails is dropped unseen.
        let new_entries: usize = accepted.iter().map(|(_, slots)| slots.iter().filter(|s| !s.duplicate).count()).sum();
        let (size, root) = (state.frontier.size, state.frontier.root());
        let log_key: &SigningKey = log_key;
        let (verdicts, result) = if new_entries == 0 {
            // Nothing new: no checkpoint; answer against the latest one.
            let verdicts = vec![None; accepted.len()];
            (verdicts, latest_checkpoint(&tx).map(|c| (HashMap::new(), c.map(|(_, n)| n).unwrap_or_default())))
        } else {
            // The signature verdicts and, if all pass, the signed checkpoint note.
            let check = || {
                let verdicts = accepted.iter().map(|(_, slots)| bad_signature(slots)).collect::<Vec<_>>();
                let note =
                    verdicts.iter().all(Option::is_none).then(|| self.sign_checkpoint(log_key, next_key, size, root));
                (verdicts, note)
            };
            let (fresh, (verdicts, note)) = if new_entries < 64 {
                // Small commits: a thread costs more than it saves (one per commit: ~2,700/s
                // inline against ~2,350/s with a helper thread, on two cores).
                let checked = check();
                let fresh = if checked.1.is_some() {
                    self.write(&tx, committed, &mut state, &accepted)
                } else {
                    Ok(HashMap::new())
                };
                (fresh, checked)
            } else {
                std::thread::scope(|scope| {
                    let helper = std::thread::Builder::new().spawn_scoped(scope, check);
                    let fresh = self.write(&tx, committed, &mut state, &accepted);
                    let checked = match helper {
                        Ok(h) => h.join().unwrap_or_else(|_| {
                            (vec![Some((0, "(verifier failed)".to_string())); accepted.len()], None)
                        }),
                        // No thread to be had: the same check, on this one.
                        Err(_) => check(),
                    };
                    (fresh, checked)
                })
            };
            let result = match (fresh, note) {
                (Ok(fresh), Some(Ok(note))) => insert_checkpoint(&tx, size, &note, now).map(|()| (fresh, note)),
                (Err(e), _) | (_, Some(Err(e))) => Err(e),
                (Ok(fresh), None) => Ok((fresh, String::new())), // a bad signature: rolled back below
            };
            (verdicts, result)
        };
        if verdicts.iter().any(Option::is_some) {
            drop(tx); // rolls back
            let mut retry = Vec::new();
            for ((p, _), verdict) in accepted.into_iter().zip(verdicts) {
                match verdict {
                    Some((position, key_id)) => {
                        let _ =
                            p.reply.send(Err(Error::Rejected { position, reason: Rejection::BadSignature { key_id } }));
                    }
                    None => retry.push(p),
                }
            }
            if !retry.is_empty() {
                self.commit_group(w, retry);
            }
            return;
        }
        // Receipts are computed inside the transaction (which sees the new nodes), so that their
        // proofs cost no extra read transactions; they are sent only after the commit.
        let size = state.frontier.size;
        let result = result.and_then(|(fresh, checkpoint)| {
            let src = OverlaySource { fresh: &fresh, db: DbSource(&tx) };
            let mut all = Vec::with_capacity(accepted.len());
            for (_, slots) in &accepted {
                let receipts = slots
                    .iter()
                    .map(|s| {
                        Ok(Receipt {
                            index: s.index,
                            leaf_hash: s.leaf_hash,
                            duplicate: s.duplicate,
                            checkpoint: checkpoint.clone(),
                            inclusion_proof: merkle::inclusion_proof(&src, s.index, size)?,
                        })
                    })
                    .collect::<Result<Vec<Receipt>, Error>>()?;
                all.push(receipts);
            }
            Ok(all)
        });
        let result = result.and_then(|r| {
            tx.commit()?;
            Ok(r)
        });
        match result {
            Ok(receipts) => {
                *committed = state;
                self.size.store(committed.frontier.size, std::sync::atomic::Ordering::Release);
                // Enrolments and revocations change which keys `prepare` may check against.
                let keys_changed = accepted.iter().flat_map(|(_, slots)| slots).any(|s| {
                    s.parsed
                        .as_ref()
                        .is_some_and(|p| matches!(p.kind, RecordKind::KeyEnrollment | RecordKind::KeyRevocation))
                });
                if keys_changed {
                    self.publish_keys(&committed.registry);
                }
                for ((p, _), r) in accepted.into_iter().zip(receipts) {
                    let _ = p.reply.send(Ok(r));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "append transaction failed; nothing was written");
                fail_all(accepted.into_iter().map(|(p, _)| p).collect(), &e);
            }
        }
    }

    /// Validates one caller's envelopes against `state`; returns their slots and the state after.
    fn validate(
        &self,
        conn: &Connection,
        state: &State,
        fresh_leaves: &mut HashMap<Hash, u64>,
        pending: &mut Pending,
        now: OffsetDateTime,
    ) -> Result<(Vec<Slot>, State), Error> {
        let limit = self.config.max_envelope_bytes.min(MAX_ENTRY_BYTES);
        if pending.parsed.iter().all(Option::is_none) {
            // A group committed again: its parses were spent; redone on every core.
            pending.parsed = record::parse_many(&pending.envelopes, limit, true).into_iter().map(Some).collect();
        }
        let envelopes = &pending.envelopes;
        let reject = |position: usize, reason: Rejection| Error::Rejected { position, reason };
        let mut next_registry = state.registry.clone();
        let mut next_index = state.frontier.size;
        let mut slots = Vec::with_capacity(envelopes.len());
        let mut mine: HashSet<Hash> = HashSet::new();
        for (pos, bytes) in envelopes.iter().enumerate() {
            let parsed =
                pending.parsed.get_mut(pos).and_then(Option::take).unwrap_or_else(|| record::parse(bytes, limit, true));
            let leaf = match &parsed {
                Ok(p) => p.leaf_hash,
                Err(_) => merkle::leaf_hash(bytes),
            };
            // An exact duplicate has its original's signer and counter. Counters only grow per
            // key, so an envelope with a counter beyond its key's last one is new: no lookup
            // (the common case).
            let stored_as = match &parsed {
                Ok(p) => next_registry
                    .get(&p.key_id)
                    .filter(|k| p.counter <= k.last_counter)
                    .map(|k| (k.enrolled_at, p.counter)),
                // A stored envelope over a since-lowered size limit is still a duplicate.
                Err(Rejection::TooLarge { .. }) => pending
                    .oversize
                    .get(&pos)
                    .and_then(|(key_id, counter)| next_registry.get(key_id).map(|k| (k.enrolled_at, *counter))),
                Err(_) => None,
            };
            let seen = match fresh_leaves.get(&leaf) {
                Some(i) => Some(*i),
                None => match stored_as {
                    Some((signer, counter)) => existing_index(conn, signer, counter, &leaf)?,
                    None => None,
                },
            };
            if let Some(index) = seen {
                slots.push(Slot { index, leaf_hash: leaf, duplicate: true, parsed: None, signer: 0, public: None });
                continue;
            }
            if !mine.insert(leaf) {
                // The same envelope twice in one call: the second is a duplicate of the first.
                let first = slots.iter().find(|s| s.leaf_hash == leaf && !s.duplicate).map_or(0, |s| s.index);
                slots.push(Slot {
                    index: first,
                    leaf_hash: leaf,
                    duplicate: true,
                    parsed: None,
                    signer: 0,
                    public: None,
                });
                continue;
            }
            let mut p = parsed.map_err(|r| reject(pos, r))?;
            if p.made_at > now + self.config.skew {
                return Err(reject(
                    pos,
                    Rejection::FromTheFuture {
                        made_at: record::rfc3339(p.made_at),
                        now: record::rfc3339(now),
                        skew_seconds: self.config.skew.whole_seconds(),
                    },
                ));
            }
            if p.made_at < now - self.config.max_delay {
                return Err(reject(
                    pos,
                    Rejection::TooOld {
                        made_at: record::rfc3339(p.made_at),
                        now: record::rfc3339(now),
                        max_delay_seconds: self.config.max_delay.whole_seconds(),
                    },
                ));
            }
            let (public, signer) = record::authorize(&p, &next_registry, next_index).map_err(|r| reject(pos, r))?;
            if p.verified != Some(public) {
                // A key enrolled since `prepare` (or a group committed again): its signature is
                // checked during the write; authorised, the envelope is worth packing.
                p.verified = None;
                p.compact = record::compact(bytes, &p);
            }
            record::apply(&p, &mut next_registry, next_index);
            slots.push(Slot {
                index: next_index,
                leaf_hash: leaf,
                duplicate: false,
                parsed: Some(p),
                signer,
                public: Some(public),
            });
            next_index += 1;
        }
        for s in slots.iter().filter(|s| !s.duplicate) {
            fresh_leaves.insert(s.leaf_hash, s.index);
        }
        let mut frontier = state.frontier.clone();
        let mut sink = Vec::new();
        for s in slots.iter().filter(|s| !s.duplicate) {
            frontier.push(s.leaf_hash, &mut sink);
        }
        Ok((slots, State { frontier, registry: next_registry }))
    }

    /// Writes accepted slots, their nodes and views in the caller's transaction, and checks they
    /// hash to the tree validation computed. Returns the hashes the receipts' proofs need: the
    /// right edge before the batch and every node the batch closes.
    fn write(
        &self,
        tx: &Connection,
        before: &State,
        after: &mut State,
        accepted: &[(Pending, Vec<Slot>)],
    ) -> Result<HashMap<(u8, u64), Hash>, Error> {
        let mut frontier = before.frontier.clone();
        // With the right edge before this batch and every node the batch closes, the receipts'
        // proofs need no reads: each new leaf's left siblings are on that edge.
        let mut fresh: HashMap<(u8, u64), Hash> =
            before.frontier.subtrees().map(|(level, index, hash)| ((level, index), hash)).collect();
        let mut new_nodes = Vec::new();
        {
            let mut ins_entry = tx.prepare_cached(
                "INSERT INTO entries (idx, leaf_hash, body, form, kind, signer, made_at, counter)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut ins_node = tx.prepare_cached("INSERT INTO nodes (id, hash) VALUES (?1, ?2)")?;
            for (p, slots) in accepted {
                for (slot, bytes) in slots.iter().zip(&p.envelopes) {
                    let Some(parsed) = &slot.parsed else { continue };
                    // The log's first entry names its own signer, so it is kept as received.
                    let compact = if slot.signer < slot.index { parsed.compact.as_ref() } else { None };
                    let (body, form) = match compact {
                        Some((form, body)) => (body.as_slice(), *form),
                        None => (bytes.as_slice(), record::FORM_RAW),
                    };
                    ins_entry.execute(params![
                        slot.index as i64,
                        &slot.leaf_hash.0[..],
                        body,
                        form,
                        kind_code(parsed.kind),
                        slot.signer as i64,
                        unix(parsed.made_at),
                        parsed.counter as i64,
                    ])?;
                    fresh.insert((0, slot.index), slot.leaf_hash);
                    new_nodes.clear();
                    frontier.push(slot.leaf_hash, &mut new_nodes);
                    for (level, index, hash) in &new_nodes {
                        if *level >= 2 {
                            ins_node.execute(params![node_id(*level, *index), &hash.0[..]])?;
                        }
                        fresh.insert((*level, *index), *hash);
                    }
                    if let Some(rec) = &parsed.record {
                        views::apply(tx, slot.index, rec, &after.registry)?;
                    }
                }
            }
        }
        views::store_counters(tx, &before.registry, &after.registry)?;
        let root = frontier.root();
        if frontier.size != after.frontier.size || root != after.frontier.root() {
            return Err(Error::Corrupt("the tree computed while writing differs from the validated one".into()));
        }
        after.frontier = frontier;
        Ok(fresh)
    }

    /// The signed checkpoint note for a tree of `size` leaves with `root`.
    fn sign_checkpoint(
        &self,
        log_key: &SigningKey,
        next_key: Option<&SigningKey>,
        size: u64,
        root: Hash,
    ) -> Result<String, Error> {
        let cp = Checkpoint { origin: self.origin.clone(), size, root, extensions: vec![] };
        let mut note = cp.sign(&self.origin, log_key)?;
        if let Some(next) = next_key {
            note.cosign(&self.origin, next)?;
        }
        Ok(String::from_utf8_lossy(&note.to_bytes()).into_owned())
    }

    /// The latest signed checkpoint (note text) and its size.
    pub fn checkpoint(&self) -> Result<(u64, String), Error> {
        let conn = self.reader();
        latest_checkpoint(&conn)?.ok_or_else(|| Error::Corrupt("the log has no checkpoint".into()))
    }

    /// Every stored checkpoint, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<(u64, String)>, Error> {
        let conn = self.reader();
        let mut st = conn.prepare("SELECT size, note FROM checkpoints ORDER BY size")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (s, n) = row?;
            out.push((s, String::from_utf8_lossy(&n).into_owned()));
        }
        Ok(out)
    }

    /// The number of entries committed (as of the last commit this process saw): no lock, no
    /// SQLite.
    pub fn size(&self) -> u64 {
        self.size.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The number of entries the database file holds now (differs from [`Ledger::size`] only if
    /// someone else changed the file).
    pub fn stored_size(&self) -> Result<u64, Error> {
        let conn = self.reader();
        Ok(conn.query_row("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// An inclusion proof: O(log n) reads in one read transaction.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, Error> {
        let mut conn = self.reader();
        let tx = conn.transaction()?;
        self.check_size(&tx, size)?;
        Ok(merkle::inclusion_proof(&DbSource(&tx), index, size)?)
    }

    /// A consistency proof: O(log n) reads in one read transaction.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, Error> {
        let mut conn = self.reader();
        let tx = conn.transaction()?;
        self.check_size(&tx, new)?;
        Ok(merkle::consistency_proof(&DbSource(&tx), old, new)?)
    }

    /// The root of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Result<Hash, Error> {
        let conn = self.reader();
        self.check_size(&conn, size)?;
        Ok(merkle::subtree_root(&DbSource(&conn), 0, size)?)
    }

    fn check_size(&self, conn: &Connection, size: u64) -> Result<(), Error> {
        let have: i64 = conn.query_row("SELECT COALESCE(MAX(size), 0) FROM checkpoints", [], |r| r.get(0))?;
        if size > have as u64 {
            return Err(Error::NoSuchEntry { index: size, size: have as u64 });
        }
        Ok(())
    }

    /// The stored envelope bytes at `index`, exactly as appended.
    pub fn envelope(&self, index: u64) -> Result<Vec<u8>, Error> {
        let conn = self.reader();
        let row: Option<(Vec<u8>, i64, String)> = conn
            .query_row(
                "SELECT e.body, e.form, k.key_id FROM entries e JOIN keys k ON k.enrolled_at = e.signer WHERE e.idx = ?1",
                [index as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let (body, form, key_id) = row.ok_or(Error::NoSuchEntry { index, size: self.size() })?;
        record::expand(&body, form, &key_id).map_err(|e| Error::Corrupt(format!("entry {index}: {e}")))
    }

    /// C2SP tlog-tiles: the hashes of tile `level`/`index`, `width` of them (1..=256).
    pub fn tile(&self, level: u8, index: u64, width: u16) -> Result<Vec<u8>, Error> {
        let conn = self.reader();
        // What this process committed, or — for a tile past it — what is signed now (another
        // process may have appended: a server must serve what its checkpoint covers).
        let mut size = self.size();
        if (u128::from(index) * 256 + u128::from(width)) << (8 * u32::from(level.min(8))) > u128::from(size) {
            let signed: i64 = conn.query_row("SELECT COALESCE(MAX(size), 0) FROM checkpoints", [], |r| r.get(0))?;
            size = size.max(signed as u64);
        }
        let height = 8 * level as u32;
        let first = index.checked_mul(256).ok_or(Error::NoSuchEntry { index, size })?;
        // Hash `i` of a tile at height `height` covers leaves up to (i + 1) << height: a tile
        // beyond the tree (a level past 7 included) is none, never another level's hashes.
        let last = u128::from(first) + u128::from(width);
        if height > 63 || width == 0 || width > 256 || last << height > u128::from(size) {
            return Err(Error::NoSuchEntry { index: first, size });
        }
        let mut out = Vec::with_capacity(width as usize * 32);
        for i in first..first + u64::from(width) {
            let h = DbSource(&conn).subtree(height as u8, i).map_err(|_| Error::NoSuchEntry { index: i, size })?;
            out.extend_from_slice(&h.0);
        }
        Ok(out)
    }

    /// C2SP tlog-tiles entry bundle: `width` entries from `index * 256`, each as a big-endian
    /// u16 length and the envelope bytes.
    pub fn entry_bundle(&self, index: u64, width: u16) -> Result<Vec<u8>, Error> {
        let conn = self.reader();
        let first = index.checked_mul(256).ok_or(Error::NoSuchEntry { index, size: 0 })?;
        let mut st = conn.prepare_cached(
            "SELECT e.body, e.form, k.key_id FROM entries e JOIN keys k ON k.enrolled_at = e.signer
             WHERE e.idx >= ?1 AND e.idx < ?2 ORDER BY e.idx",
        )?;
        let rows = st.query_map([first as i64, first.saturating_add(width as u64) as i64], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
        })?;
        let mut out = Vec::new();
        let mut n = 0;
        for row in rows {
            let (body, form, key_id) = row?;
            let env = record::expand(&body, form, &key_id).map_err(Error::Corrupt)?;
            let len = u16::try_from(env.len()).map_err(|_| Error::Corrupt("an entry exceeds 65535 bytes".into()))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&env);
            n += 1;
        }
        if n != width as u64 {
            return Err(Error::NoSuchEntry { index: first + n, size: self.size() });
        }
        Ok(out)
    }

    /// Stops commits from folding the write-ahead log into the database themselves (SQLite's
    /// auto-checkpoint copies and syncs up to 80 MB inside one unlucky commit); the caller then
    /// calls [`Ledger::fold_wal`] from a thread of its own. For long-running servers.
    pub fn defer_wal_folding(&self) -> Result<(), Error> {
        let w = self.writer_lock();
        w.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(())
    }

    /// Folds what it can of the write-ahead log into the database without waiting for or
    /// blocking the writer (a PASSIVE checkpoint, on a connection of its own). Returns the
    /// WAL's frames and how many are now in the database.
    pub fn fold_wal(&self) -> Result<(i64, i64), Error> {
        let mut slot = lock(&self.folder);
        if slot.is_none() {
            let conn = Connection::open(self.dir.join(DB_FILE))?;
            crate::schema::configure(&conn)?;
            *slot = Some(conn);
        }
        let Some(conn) = slot.as_ref() else { return Ok((0, 0)) };
        Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?)))?)
    }

    /// The statement payloads (the signed bytes inside each DSSE envelope) of the entries at
    /// `indexes`, with their leaf hashes, straight from storage: no envelope is rebuilt. For a
    /// reader of this process's own ledger (the dashboard) that needs the records, not the
    /// envelopes; the signatures were checked when the entries were appended.
    pub fn payloads(&self, indexes: &[u64]) -> Result<Vec<(u64, Hash, Vec<u8>)>, Error> {
        let conn = self.reader();
        let mut st = conn.prepare_cached("SELECT leaf_hash, body, form FROM entries WHERE idx = ?1")?;
        let mut out = Vec::with_capacity(indexes.len());
        for &idx in indexes {
            let (leaf, body, form): (Vec<u8>, Vec<u8>, i64) = st
                .query_row([idx as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?
                .ok_or(Error::NoSuchEntry { index: idx, size: self.size() })?;
            let leaf = Hash(leaf.try_into().map_err(|_| Error::Corrupt(format!("leaf hash of entry {idx}")))?);
            let payload = match form {
                record::FORM_RAW => chipledger_domain::dsse::Envelope::from_json(&body)
                    .and_then(|e| e.payload_bytes())
                    .map_err(|e| Error::Corrupt(format!("entry {idx}: {e}")))?,
                form => record::signature_and_payload(&body, form)
                    .map_err(|e| Error::Corrupt(format!("entry {idx}: {e}")))?
                    .1
                    .into_owned(),
            };
            out.push((idx, leaf, payload));
        }
        Ok(out)
    }

    /// When the latest checkpoint was signed (unix seconds): the time of the last append.
    pub fn last_append_at(&self) -> Result<Option<i64>, Error> {
        let conn = self.reader();
        Ok(conn.query_row("SELECT MAX(signed_at) FROM checkpoints", [], |r| r.get(0))?)
    }

    /// Whether an append could start now: takes and releases SQLite's write lock.
    pub fn check_writable(&self) -> Result<(), Error> {
        let w = self.writer_lock();
        w.conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
        Ok(())
    }

    /// The ledger's clock (the system clock outside tests).
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub(crate) fn now_unix(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    /// A free read connection, or (all busy) the next in turn.
    pub(crate) fn reader(&self) -> MutexGuard<'_, Connection> {
        for r in &self.readers {
            if let Ok(guard) = r.try_lock() {
                return guard;
            }
        }
        let next = self.next_reader.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.readers.len();
        lock(&self.readers[next])
    }

    /// The connection credential checks read through.
    pub(crate) fn credentials_reader(&self) -> MutexGuard<'_, Connection> {
        lock(&self.credentials)
    }

    pub(crate) fn writer_lock(&self) -> MutexGuard<'_, Writer> {
        lock(&self.writer)
    }
}

/// Reloads the writer's state if the file grew behind its back (another process appended);
/// says whether it did.
fn refresh(conn: &Connection, state: &mut State) -> Result<bool, Error> {
    let stored = conn
        .prepare_cached("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries")?
        .query_row([], |r| r.get::<_, i64>(0))? as u64;
    if stored != state.frontier.size {
        tracing::info!(stored, known = state.frontier.size, "the log grew in another process; reloading");
        state.frontier = Frontier::load(&DbSource(conn), stored)?;
        state.registry = views::load_registry(conn)?;
        return Ok(true);
    }
    Ok(false)
}

/// One envelope's place in an append.
#[derive(Debug)]
struct Slot {
    index: u64,
    leaf_hash: Hash,
    duplicate: bool,
    parsed: Option<Parsed>,
    /// The signer's enrollment index.
    signer: u64,
    /// The key the signature must verify under (checked after validation, during the write).
    public: Option<PublicKey>,
}

/// The first envelope whose signature does not verify: its position and signer. Signatures
/// [`Ledger::prepare`] verified under the same key are not checked again.
fn bad_signature(slots: &[Slot]) -> Option<(usize, String)> {
    let positions: Vec<usize> = (0..slots.len())
        .filter(|i| slots[*i].parsed.as_ref().is_some_and(|p| p.verified.is_none() || p.verified != slots[*i].public))
        .collect();
    let items: Vec<(&[u8], &[u8], PublicKey)> = positions
        .iter()
        .filter_map(|i| {
            let s = &slots[*i];
            Some((s.parsed.as_ref()?.message.as_slice(), s.parsed.as_ref()?.signature.as_slice(), s.public?))
        })
        .collect();
    if items.len() != positions.len() {
        return Some((0, "(no key)".into()));
    }
    record::first_bad_signature(&items).map(|b| {
        let pos = positions[b];
        (pos, slots[pos].parsed.as_ref().map_or_else(String::new, |p| p.key_id.clone()))
    })
}

/// Every unrevoked key's public key by key id (a revoked key's envelopes are refused under the
/// lock, and not worth a signature check and packing first).
fn public_keys(registry: &Registry) -> HashMap<String, PublicKey> {
    registry.iter().filter(|(_, k)| k.revoked_at.is_none()).map(|(id, k)| (id.clone(), k.public)).collect()
}

/// The index of the stored entry by `signer` with `counter`, if it is exactly `leaf`.
fn existing_index(conn: &Connection, signer: u64, counter: u64, leaf: &Hash) -> Result<Option<u64>, Error> {
    let mut st =
        conn.prepare_cached("SELECT idx FROM entries WHERE signer = ?1 AND counter = ?2 AND leaf_hash = ?3")?;
    Ok(st
        .query_row(params![signer as i64, counter as i64, &leaf.0[..]], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|i| i as u64))
}

fn insert_checkpoint(tx: &Connection, size: u64, note: &str, now: OffsetDateTime) -> Result<(), Error> {
    tx.prepare_cached("INSERT INTO checkpoints (size, note, signed_at) VALUES (?1, ?2, ?3)")?.execute(params![
        size as i64,
        note.as_bytes(),
        unix(now)
    ])?;
    Ok(())
}

fn latest_checkpoint(conn: &Connection) -> Result<Option<(u64, String)>, Error> {
    Ok(conn
        .query_row("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1", [], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?))
        })
        .optional()?
        .map(|(s, n)| (s, String::from_utf8_lossy(&n).into_owned())))
}

/// Stable small integers for `entries.kind`.
pub(crate) fn kind_code(kind: RecordKind) -> i64 {
    match kind {
        RecordKind::KeyEnrollment => 1,
        RecordKind::KeyRevocation => 2,
        RecordKind::GpuAttestation => 3,
        RecordKind::Acquisition => 4,
        RecordKind::RunProvenance => 5,
        RecordKind::Annotation => 6,
        RecordKind::SchedulerJob => 7,
        RecordKind::LogKeyRotation => 8,
        RecordKind::ServingBatch => 9,
        RecordKind::LocationProof => 10,
    }
}

pub(crate) fn kind_from_code(code: i64) -> Option<RecordKind> {
    RecordKind::ALL.into_iter().find(|k| kind_code(*k) == code)
}
