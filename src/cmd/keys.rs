//! `chipledger keys …`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use chipledger_domain::keys::{SigningKey, VerifierKey};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create an Ed25519 key: writes the private key as PKCS#8 PEM (mode 0600, never
    /// overwriting) and prints its C2SP verifier key.
    Generate {
        /// The key's name in signed notes (no spaces or '+'), e.g. a host or log name.
        #[arg(long)]
        name: String,
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Generate { name, out } => {
            chipledger_domain::keys::check_key_name(&name)?;
            let key = SigningKey::generate(&mut rand_core::OsRng);
            let vkey = VerifierKey::new(&name, key.public_key())?;
            write_private(&out, key.to_pkcs8_pem()?.as_bytes())?;
            println!("{vkey}");
            eprintln!("private key written to {} (mode 0600); key id {}", out.display(), key.key_id());
            Ok(())
        }
    }
}

/// Creates `path` with mode 0600 before any secret byte is written; refuses to overwrite.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| {
        if path.exists() {
            format!("{} already exists; refusing to overwrite a key", path.display())
        } else {
            format!("creating {}", path.display())
        }
    })?;
    f.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    f.sync_all().with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}
