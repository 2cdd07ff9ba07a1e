//! `chipledger proof …`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use chipledger_domain::dsse::MAX_ENVELOPE_BYTES;
use chipledger_domain::merkle::{leaf_hash, Hash};
use chipledger_domain::note::{TlogProof, MAX_NOTE_BYTES};

use super::note::{parse_keys, read_bounded};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Verify a C2SP tlog-proof: the checkpoint's signature under --key, and that the leaf is
    /// included at the proof's index. Exit 0 when valid.
    Verify {
        /// The log's C2SP verifier key; repeat to accept witnesses' cosignatures too.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// Require this checkpoint origin.
        #[arg(long)]
        origin: Option<String>,
        /// The entry's leaf hash (hex or base64 of SHA-256(0x00 ‖ entry)).
        #[arg(long, conflicts_with = "leaf_file", required_unless_present = "leaf_file")]
        leaf_hash: Option<String>,
        /// The entry itself (e.g. the envelope JSON); its leaf hash is computed.
        #[arg(long)]
        leaf_file: Option<PathBuf>,
        /// The .tlog-proof file ('-' for standard input).
        file: PathBuf,
    },
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Verify { keys, origin, leaf_hash: lh, leaf_file, file } => {
            let keys = parse_keys(&keys)?;
            let leaf = match (lh, leaf_file) {
                (Some(h), _) => parse_hash(&h)?,
                (None, Some(f)) => leaf_hash(&read_bounded(&f, MAX_ENVELOPE_BYTES)?),
                (None, None) => bail!("give --leaf-hash H or --leaf-file F"),
            };
            let bytes = read_bounded(&file, MAX_NOTE_BYTES)?;
            let proof = TlogProof::parse(&bytes).with_context(|| format!("reading {}", file.display()))?;
            let v = proof
                .verify(&keys, origin.as_deref(), &leaf)
                .with_context(|| format!("verifying {}", file.display()))?;
            println!(
                "valid: leaf {leaf} is entry {} of {:?} at size {} (checkpoint signed by {})",
                proof.index,
                v.checkpoint.origin,
                v.checkpoint.size,
                v.note.verified_by.join(", ")
            );
            Ok(())
        }
    }
}

fn parse_hash(s: &str) -> Result<Hash> {
    let s = s.trim();
    if s.len() == 64 {
        return Ok(Hash::from_hex(s)?);
    }
    Hash::from_base64(s).with_context(|| format!("--leaf-hash {s:?} is neither 64 hex digits nor base64 of 32 bytes"))
}
