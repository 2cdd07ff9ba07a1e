//! `chipledger gpu …`: an admin's calls about one GPU, as signed annotations — which GPU holds a
//! serial reported under several UUIDs, and that a GPU's history (moves, second hosts, fact
//! changes) has been reviewed.

use std::path::PathBuf;

use anyhow::{bail, Result};
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::identify::Severity;
use chipledger_domain::records::{sign_record, Annotation, AnnotationTarget, FORMAT_VERSION};
use time::OffsetDateTime;

use crate::cmd::keys::admin_signer;
use crate::datadir;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Settle a GPU's history after review: its moves, second hosts and VBIOS or identity
    /// changes so far stand down; its current host and facts become the baseline. What happens
    /// afterwards is judged again.
    Settle {
        /// The GPU (`GPU-…`).
        #[arg(long)]
        gpu: String,
        /// Why: what was reviewed (a ticket, an RMA, a planned move). Kept in the log.
        #[arg(long)]
        reason: String,
        #[arg(long)]
        admin_key: Option<PathBuf>,
    },
    /// Resolve a serial reported under several UUIDs to the GPU that holds it: that GPU inherits
    /// the serial's acquisition, the others do not.
    ResolveSerial {
        #[arg(long)]
        gpu: String,
        #[arg(long)]
        serial: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        admin_key: Option<PathBuf>,
    },
}

pub fn run(data_dir: Option<PathBuf>, cmd: Command) -> Result<()> {
    let (gpu, reason, admin_key, resolves_serial, settles_history) = match cmd {
        Command::Settle { gpu, reason, admin_key } => (gpu, reason, admin_key, None, true),
        Command::ResolveSerial { gpu, serial, reason, admin_key } => (gpu, reason, admin_key, Some(serial), false),
    };
    let uuid = GpuUuid::parse(&gpu)?;
    if reason.trim().is_empty() {
        bail!("--reason is empty: say what was reviewed (it is kept in the log)");
    }
    let ledger = datadir::open(data_dir)?;
    let (admin, counter) = admin_signer(&ledger, admin_key)?;
    let record = Annotation {
        format_version: FORMAT_VERSION,
        counter,
        written_at: OffsetDateTime::now_utc(),
        target: AnnotationTarget::Gpu { uuid: uuid.clone() },
        severity: Severity::Info,
        text: reason,
        resolves_serial,
        settles_history,
    };
    let receipts = ledger.append(&[sign_record(&record, &admin)?.to_json()])?;
    let what = if settles_history { "history settled" } else { "serial resolved" };
    println!("{uuid}: {what} at index {}", receipts[0].index);
    Ok(())
}
