//! `chipledger mirror`: a copy of a log that follows its public checkpoint and hash tiles (and,
//! with a credential, its entry bundles) into a directory, in the C2SP tlog-tiles layout
//! (`checkpoint`, `tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]`).
//!
//! Every checkpoint is opened with the log's key; the new leaf hashes are appended to the ones
//! the mirror already holds, and the tree they make must have the signed root — so each new
//! checkpoint is consistent with the last one by construction, and a log that rewrote its
//! history (a fork, a rollback) is caught, with both checkpoints kept as evidence. Higher tiles
//! and entry bundles are checked against that tree before they are stored. The checkpoint is
//! written last: a mirror stopped at any point holds a verified tree.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chipledger_domain::keys::VerifierKey;
use chipledger_domain::merkle::{self, leaf_hash, Hash, HashSource, MemoryTree};
use chipledger_domain::note::{open_checkpoint, Checkpoint};
use chipledger_domain::tiles::{check_tile, tile_index_path, tiles_of};

/// Why a sync did not complete.
#[derive(Debug)]
pub enum MirrorError {
    /// The log could not be reached or answered oddly: try again later.
    Fetch(String),
    /// The mirror's directory.
    Io(String),
    /// The log serves a history that is not the one mirrored: evidence written to `evidence`.
    Fork { reason: String, evidence: PathBuf },
    /// The log's answers do not verify (a checkpoint signature, a tile, an entry).
    Invalid(String),
}

impl std::fmt::Display for MirrorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MirrorError::Fetch(e) => write!(f, "fetching from the log: {e}"),
            MirrorError::Io(e) => write!(f, "the mirror's directory: {e}"),
            MirrorError::Fork { reason, evidence } => write!(
                f,
                "FORK: {reason} — the log's history is not the one mirrored, or it serves tiles that do not match its \
                 own signed checkpoints (both are kept in {}: ask the log for a consistency proof between them)",
                evidence.display()
            ),
            MirrorError::Invalid(e) => write!(f, "the log's answer does not verify: {e}"),
        }
    }
}

impl std::error::Error for MirrorError {}

/// The most entries a mirror holds (every hash of the tree is in memory: ~64 bytes each).
pub const MAX_MIRRORED: u64 = 1 << 32;

/// What one sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub from: u64,
    pub to: u64,
    pub tiles: usize,
    pub bundles: usize,
}

/// A mirror of one log in a directory. Cloning copies the tree in memory (a sync can run on a
/// clone while readers keep the original).
#[derive(Debug, Clone)]
pub struct Mirror {
    dir: PathBuf,
    base: String,
    log_key: VerifierKey,
    token: Option<String>,
    agent: ureq::Agent,
    tree: MemoryTree,
    /// The latest verified checkpoint (its note, verbatim) and what it says.
    checkpoint: Option<(String, Checkpoint)>,
}

fn io(e: impl std::fmt::Display) -> MirrorError {
    MirrorError::Io(e.to_string())
}

/// Writes `bytes` to `path` through a temporary file and a rename: never half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), MirrorError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Where a tile lives under the mirror's directory (`level` `None`: entry bundles).
pub fn tile_file(dir: &Path, level: Option<u8>, index: u64, width: u16) -> PathBuf {
    let l = level.map_or_else(|| "entries".to_string(), |l| l.to_string());
    dir.join("tile").join(l).join(tile_index_path(index, width))
}

/// The tile `index` of `level` as the mirror holds it, cut to `width` hashes: from the full
/// tile, else from a partial one at least that wide.
pub fn read_tile(dir: &Path, level: Option<u8>, index: u64, width: u16) -> Option<Vec<u8>> {
    for have in std::iter::once(256).chain((width..256).rev()) {
        if have < width {
            continue;
        }
        if let Ok(bytes) = std::fs::read(tile_file(dir, level, index, have)) {
            if level.is_none() {
                return (have == width).then_some(bytes);
            }
            return bytes.get(..usize::from(width) * 32).map(<[u8]>::to_vec);
        }
    }
    None
}

impl Mirror {
    /// Opens (or starts) a mirror of the log at `base` whose key is `log_key` in `dir`, checking
    /// that what the directory holds is the tree of its checkpoint.
    pub fn open(dir: &Path, base: &str, log_key: VerifierKey, token: Option<String>) -> Result<Mirror, MirrorError> {
        std::fs::create_dir_all(dir).map_err(io)?;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .timeout_connect(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut m = Mirror {
            dir: dir.to_path_buf(),
            base: base.trim_end_matches('/').to_string(),
            log_key,
            token,
            agent,
            tree: MemoryTree::default(),
            checkpoint: None,
        };
        let note = match std::fs::read(dir.join("checkpoint")) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(m),
            Err(e) => return Err(io(e)),
        };
        let cp = open_checkpoint(&note, std::slice::from_ref(&m.log_key), None)
            .map_err(|e| MirrorError::Invalid(format!("the mirrored checkpoint: {e}")))?;
        for (level, index, width) in tiles_of(cp.checkpoint.size).into_iter().filter(|t| t.0 == 0) {
            let bytes = read_tile(dir, Some(level), index, width)
                .ok_or_else(|| MirrorError::Io(format!("tile 0/{index} is missing from {}", dir.display())))?;
            for chunk in bytes.chunks(32) {
                m.tree.push(Hash(chunk.try_into().map_err(io)?));
            }
        }
        if m.tree.root_at(cp.checkpoint.size).ok() != Some(cp.checkpoint.root) {
            return Err(MirrorError::Invalid(format!(
                "the tiles in {} do not make its checkpoint's root",
                dir.display()
            )));
        }
        m.checkpoint = Some((String::from_utf8_lossy(&note).into_owned(), cp.checkpoint));
        Ok(m)
    }

    pub fn size(&self) -> u64 {
        self.checkpoint.as_ref().map_or(0, |(_, c)| c.size)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The latest verified checkpoint note.
    pub fn checkpoint_note(&self) -> Option<&str> {
        self.checkpoint.as_ref().map(|(n, _)| n.as_str())
    }

    /// Every mirrored hash (for proofs).
    pub fn tree(&self) -> &MemoryTree {
        &self.tree
    }

    /// One GET; a 429 or 503 is waited out (its `Retry-After`, at most 10 s each, 60 times at
    /// most): a mirror catching up is a patient reader of a rate-limited log.
    fn get(&self, path: &str, credential: bool) -> Result<Vec<u8>, MirrorError> {
        let url = format!("{}{path}", self.base);
        let mut waits = 0;
        let mut r = loop {
            let mut req = self.agent.get(&url);
            if credential {
                if let Some(t) = &self.token {
                    req = req.header("authorization", &format!("Bearer {t}"));
                }
            }
            let r = req.call().map_err(|e| MirrorError::Fetch(format!("{url}: {e}")))?;
            let status = r.status().as_u16();
            if (status == 429 || status == 503) && waits < 60 {
                let secs = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1)
                    .clamp(1, 10);
                waits += 1;
                std::thread::sleep(Duration::from_secs(secs));
                continue;
            }
            break r;
        };
        let status = r.status().as_u16();
        let body = r
            .body_mut()
            .with_config()
            .limit(32 << 20)
            .read_to_vec()
            .map_err(|e| MirrorError::Fetch(format!("{url}: {e}")))?;
        if status != 200 {
            return Err(MirrorError::Fetch(format!("{url}: HTTP {status}: {}", String::from_utf8_lossy(&body))));
        }
        Ok(body)
    }

    /// Keeps both checkpoints and says so.
    fn fork(&self, theirs: &[u8], reason: String) -> MirrorError {
        let ours = self.checkpoint_note().unwrap_or("");
        let text = format!(
            "{reason}\n\nThe checkpoint this mirror had verified:\n{ours}\nThe checkpoint the log served at {}:\n{}",
            self.base,
            String::from_utf8_lossy(theirs)
        );
        // Named by its content: the same evidence found again is the same file.
        let evidence = self.dir.join(format!("fork-{}.txt", &Hash::sha256(text.as_bytes()).to_hex()[..16]));
        let _ = write_atomic(&evidence, text.as_bytes());
        tracing::error!(%reason, evidence = %evidence.display(), "fork detected");
        MirrorError::Fork { reason, evidence }
    }

    /// Brings the mirror up to the log's latest checkpoint.
    pub fn sync(&mut self) -> Result<SyncReport, MirrorError> {
        let note = self.get("/checkpoint", false)?;
        let cp = open_checkpoint(&note, std::slice::from_ref(&self.log_key), None)
            .map_err(|e| MirrorError::Invalid(format!("the log's checkpoint: {e}")))?
            .checkpoint;
        let (from, size) = (self.size(), cp.size);
        // Every hash of the tree is held in memory: a size past that is refused, not attempted.
        if size > MAX_MIRRORED {
            return Err(MirrorError::Invalid(format!(
                "the log's size {size} is past the {MAX_MIRRORED} entries a mirror holds"
            )));
        }
        if let Some((_, ours)) = &self.checkpoint {
            if ours.origin != cp.origin {
                return Err(MirrorError::Invalid(format!(
                    "the log's origin is {:?}, not {:?}",
                    cp.origin, ours.origin
                )));
            }
            if size < from {
                return Err(
                    self.fork(&note, format!("the log's checkpoint has size {size}, less than the {from} mirrored"))
                );
            }
            if size == from {
                if cp.root != ours.root {
                    return Err(self.fork(&note, format!("the log signed another root for size {size}")));
                }
                // The same checkpoint, perhaps with more witnesses' cosignatures since: keep them.
                if self.checkpoint_note() != Some(String::from_utf8_lossy(&note).as_ref()) {
                    write_atomic(&self.dir.join("checkpoint"), &note)?;
                    self.checkpoint = Some((String::from_utf8_lossy(&note).into_owned(), cp));
                }
                return Ok(SyncReport { from, to: size, tiles: 0, bundles: 0 });
            }
        }
        // New leaves, from the tile holding the first new one; what the mirror already has of
        // that tile must not have changed.
        let mut tree = self.tree.clone();
        let mut fetched: Vec<((u8, u64, u16), Vec<u8>)> = Vec::new();
        for (level, index, width) in tiles_of(size).into_iter().filter(|t| t.0 == 0 && t.1 >= from / 256) {
            let bytes = self.get(&format!("/tile/0/{}", tile_index_path(index, width)), false)?;
            if bytes.len() != usize::from(width) * 32 {
                return Err(MirrorError::Invalid(format!("tile 0/{index} has {} bytes", bytes.len())));
            }
            let have = from.saturating_sub(index * 256).min(u64::from(width)) as usize;
            for (i, chunk) in bytes.chunks(32).enumerate() {
                let h = Hash(chunk.try_into().map_err(io)?);
                if i < have {
                    if tree.subtree(0, index * 256 + i as u64).ok() != Some(h) {
                        let at = index * 256 + i as u64;
                        return Err(self.fork(&note, format!("the log's leaf {at} is not the one mirrored")));
                    }
                } else {
                    tree.push(h);
                }
            }
            fetched.push(((level, index, width), bytes));
        }
        if tree.root_at(size).ok() != Some(cp.root) {
            return Err(self.fork(
                &note,
                format!("the leaves mirrored up to {from} and the log's after them do not make its signed root for size {size}"),
            ));
        }
        // Higher tiles, checked against the tree.
        for (level, index, width) in tiles_of(size).into_iter().filter(|t| t.0 > 0) {
            if width == 256 && ((u128::from(index) + 1) * 256) << (8 * u32::from(level)) <= u128::from(from) {
                continue; // full before this sync: already stored
            }
            let bytes = self.get(&format!("/tile/{level}/{}", tile_index_path(index, width)), false)?;
            check_tile(&tree, level, index, width, &bytes).map_err(|e| MirrorError::Invalid(e.to_string()))?;
            fetched.push(((level, index, width), bytes));
        }
        // Entry bundles, with a credential: each entry must hash to its leaf.
        let mut bundles = Vec::new();
        if self.token.is_some() {
            for (_, index, width) in tiles_of(size).into_iter().filter(|t| t.0 == 0 && t.1 >= from / 256) {
                let bytes = self.get(&format!("/tile/entries/{}", tile_index_path(index, width)), true)?;
                let mut at = 0usize;
                for i in 0..u64::from(width) {
                    let len = bytes.get(at..at + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                    let entry = len.and_then(|l| bytes.get(at + 2..at + 2 + l));
                    let Some(entry) = entry else {
                        return Err(MirrorError::Invalid(format!("entry bundle {index} ends early")));
                    };
                    if tree.subtree(0, index * 256 + i).ok() != Some(leaf_hash(entry)) {
                        return Err(MirrorError::Invalid(format!(
                            "entry {} does not hash to its leaf",
                            index * 256 + i
                        )));
                    }
                    at += 2 + entry.len();
                }
                if at != bytes.len() {
                    return Err(MirrorError::Invalid(format!("entry bundle {index} has bytes past its entries")));
                }
                bundles.push(((index, width), bytes));
            }
        }
        // Store: tiles and bundles first (replacing narrower partial ones), the checkpoint last.
        let tiles = fetched.len();
        for ((level, index, width), bytes) in fetched {
            write_atomic(&tile_file(&self.dir, Some(level), index, width), &bytes)?;
            remove_narrower(&self.dir, Some(level), index, width);
        }
        let n_bundles = bundles.len();
        for ((index, width), bytes) in bundles {
            write_atomic(&tile_file(&self.dir, None, index, width), &bytes)?;
            remove_narrower(&self.dir, None, index, width);
        }
        write_atomic(&self.dir.join("checkpoint"), &note)?;
        self.tree = tree;
        self.checkpoint = Some((String::from_utf8_lossy(&note).into_owned(), cp));
        Ok(SyncReport { from, to: size, tiles, bundles: n_bundles })
    }

    /// An inclusion proof of leaf `index` in the tree of `size` (≤ the mirrored size).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, chipledger_domain::Error> {
        if size > self.size() {
            return Err(chipledger_domain::Error::IndexOutOfRange { index: size, size: self.size() });
        }
        merkle::inclusion_proof(&self.tree, index, size)
    }

    /// A consistency proof between two mirrored sizes.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, chipledger_domain::Error> {
        if new > self.size() {
            return Err(chipledger_domain::Error::IndexOutOfRange { index: new, size: self.size() });
        }
        merkle::consistency_proof(&self.tree, old, new)
    }
}

/// Partial tiles narrower than `width` are superseded by it.
fn remove_narrower(dir: &Path, level: Option<u8>, index: u64, width: u16) {
    for w in 1..width.min(256) {
        let _ = std::fs::remove_file(tile_file(dir, level, index, w));
    }
}
