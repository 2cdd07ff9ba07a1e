//! The durable spool: every signed attestation is written here before it is sent, and removed
//! only once a log's receipt for it verifies. A crash, a reboot or a log outage loses nothing;
//! files are sent in counter order, so the log sees the agent's counters increase.
//!
//! Layout: `<dir>/<counter, 20 digits>.dsse.json` (the exact envelope bytes), written to a
//! temporary name, synced and renamed; records a log refused for good move to
//! `<dir>/rejected/` beside a `.reason` file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Error;

const SUFFIX: &str = ".dsse.json";

/// A spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

/// One waiting envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    pub counter: u64,
    pub path: PathBuf,
}

impl Spool {
    /// Opens (creating, mode 0700) a spool directory and clears half-written files a crash left.
    pub fn open(dir: &Path) -> Result<Spool, Error> {
        create_private_dir(dir)?;
        create_private_dir(&dir.join("rejected"))?;
        for entry in fs::read_dir(dir).map_err(Error::io(dir))? {
            let path = entry.map_err(Error::io(dir))?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                fs::remove_file(&path).map_err(Error::io(&path))?;
            }
        }
        Ok(Spool { dir: dir.to_path_buf() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores an envelope durably under its counter.
    pub fn put(&self, counter: u64, envelope: &[u8]) -> Result<Spooled, Error> {
        let path = self.dir.join(format!("{counter:020}{SUFFIX}"));
        let tmp = self.dir.join(format!("{counter:020}.tmp"));
        let mut file = fs::File::create(&tmp).map_err(Error::io(&tmp))?;
        file.write_all(envelope).and_then(|_| file.sync_all()).map_err(Error::io(&tmp))?;
        fs::rename(&tmp, &path).map_err(Error::io(&path))?;
        sync_dir(&self.dir)?;
        Ok(Spooled { counter, path })
    }

    /// The waiting envelopes, oldest counter first.
    pub fn pending(&self) -> Result<Vec<Spooled>, Error> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(Error::io(&self.dir))? {
            let path = entry.map_err(Error::io(&self.dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let Some(stem) = name.strip_suffix(SUFFIX) else { continue };
            let counter = stem.parse::<u64>().map_err(|_| Error::Spool {
                path: path.clone(),
                reason: "the name is not <counter>.dsse.json".into(),
            })?;
            out.push(Spooled { counter, path });
        }
        out.sort_by_key(|s| s.counter);
        Ok(out)
    }

    pub fn read(&self, item: &Spooled) -> Result<Vec<u8>, Error> {
        fs::read(&item.path).map_err(Error::io(&item.path))
    }

    /// Forgets an envelope a log has accepted.
    pub fn remove(&self, item: &Spooled) -> Result<(), Error> {
        fs::remove_file(&item.path).map_err(Error::io(&item.path))?;
        sync_dir(&self.dir)
    }

    /// Moves an envelope a log refused for good out of the queue, with the reason beside it.
    pub fn reject(&self, item: &Spooled, reason: &str) -> Result<PathBuf, Error> {
        let name = item.path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        let dest = self.dir.join("rejected").join(&name);
        let mut reason_path = dest.clone().into_os_string();
        reason_path.push(".reason");
        fs::write(&reason_path, format!("{reason}\n")).map_err(Error::io(PathBuf::from(&reason_path)))?;
        fs::rename(&item.path, &dest).map_err(Error::io(&dest))?;
        sync_dir(&self.dir)?;
        Ok(dest)
    }
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(Error::io(dir))
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io(dir))?;
    Ok(())
}
