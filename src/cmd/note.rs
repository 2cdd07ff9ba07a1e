//! `chipledger note …`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use chipledger_domain::keys::VerifierKey;
use chipledger_domain::note::{Checkpoint, Note, MAX_NOTE_BYTES};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Verify a C2SP signed note or checkpoint: at least one --key must have signed it; signatures
    /// by other keys are ignored. Exit 0 when valid.
    Verify {
        /// A C2SP verifier key (name+hash+base64); repeat for several.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// The note file ('-' for standard input).
        file: PathBuf,
    },
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Verify { keys, file } => {
            let keys = parse_keys(&keys)?;
            let bytes = read_bounded(&file, MAX_NOTE_BYTES)?;
            let note = Note::open(&bytes, &keys).with_context(|| format!("verifying {}", file.display()))?;
            println!("valid: signed by {}", note.verified_by.join(", "));
            if !note.unknown_signers.is_empty() {
                println!("ignored signatures by unknown keys: {}", note.unknown_signers.join(", "));
            }
            if let Ok(cp) = Checkpoint::parse(&note.text) {
                println!("checkpoint: origin {:?}, size {}, root {}", cp.origin, cp.size, cp.root);
            }
            Ok(())
        }
    }
}

pub fn parse_keys(keys: &[String]) -> Result<Vec<VerifierKey>> {
    keys.iter().map(|k| VerifierKey::parse(k).map_err(anyhow::Error::from)).collect()
}

/// Reads a file (or stdin for `-`), refusing anything over `limit` bytes.
pub fn read_bounded(path: &std::path::Path, limit: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().take(limit as u64 + 1).read_to_end(&mut buf)
    } else {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        // A file that says it is too large is refused before a byte of it is read.
        if f.metadata().is_ok_and(|m| m.is_file() && m.len() > limit as u64) {
            anyhow::bail!("{} is larger than {limit} bytes", path.display());
        }
        f.take(limit as u64 + 1).read_to_end(&mut buf)
    };
    read.with_context(|| format!("reading {}", path.display()))?;
    if buf.len() > limit {
        anyhow::bail!("{} is larger than {limit} bytes", path.display());
    }
    Ok(buf)
}
