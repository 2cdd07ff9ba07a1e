//! `chipledger report diversion` (write a diversion report from the local ledger) and the
//! diversion side of `chipledger report verify` (check one offline). The events and the checks
//! are `domain::diversion`'s and `ledger::diversion`'s; this module parses and prints.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chipledger_domain::diversion::Event;
use chipledger_domain::keys::VerifierKey;
use chipledger_ledger::diversion::{verify_diversion_report, DiversionOptions, DiversionReport};

use crate::datadir;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only events whose newest cited entry was appended at or after this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// How old a location proof may be and still count: 90s, 30m, 24h, 7d.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    max_age: String,
    /// Where to write the report (JSON).
    #[arg(long)]
    out: PathBuf,
}

/// Writes the local ledger's diversion report.
pub fn write(data_dir: Option<PathBuf>, args: Args) -> Result<()> {
    let since = args
        .since
        .as_deref()
        .map(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .with_context(|| format!("--since {s:?} is not an RFC 3339 time such as 2026-11-29T09:00:00Z"))
        })
        .transpose()?;
    let max_age = chipledger_agent::config::parse_duration(&args.max_age)
        .map_err(|e| anyhow::anyhow!("--max-age: {e}"))?
        .as_secs();
    use chipledger_ledger::diversion::{MAX_MAX_AGE_SECS, MAX_REPORT_BYTES, MIN_MAX_AGE_SECS};
    if !(MIN_MAX_AGE_SECS..=MAX_MAX_AGE_SECS).contains(&max_age) {
        bail!("--max-age must be between 1m and 30d");
    }
    let ledger = datadir::open(data_dir)?;
    let report = ledger
        .diversion_report(&DiversionOptions { now: ledger.now(), since, max_age_secs: max_age })
        .context("writing the diversion report")?;
    let bytes = serde_json::to_vec_pretty(&report)?;
    if bytes.len() > MAX_REPORT_BYTES {
        bail!(
            "the report would be {} bytes, over the {MAX_REPORT_BYTES} a verifier reads: narrow it with --since",
            bytes.len()
        );
    }
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    let gpus: std::collections::BTreeSet<&str> = report.events.iter().map(|e| e.uuid.as_str()).collect();
    println!(
        "wrote {} event(s) about {} GPU(s), with {} entries proven against the checkpoint of size {}, to {}",
        report.events.len(),
        gpus.len(),
        report.bundle.entries.len(),
        checkpoint_size(&report),
        args.out.display()
    );
    print_events(&report.events);
    Ok(())
}

/// Verifies a diversion report read from `file` (`bytes`, already bounded).
pub fn verify(
    file: &Path,
    bytes: &[u8],
    key: Option<&VerifierKey>,
    witnesses: &crate::witnesses::PolicyArgs,
) -> Result<()> {
    let v = verify_diversion_report(bytes, key).with_context(|| format!("verifying {}", file.display()))?;
    if let Some(policy) = witnesses.policy()? {
        // The report verified: its checkpoint is the log's; now its witnesses.
        let report: DiversionReport = serde_json::from_slice(bytes)?;
        let cosigned = crate::witnesses::check(&policy, report.bundle.checkpoint.as_bytes())
            .with_context(|| format!("verifying {}", file.display()))?;
        let names: Vec<&str> = cosigned.iter().map(|(n, _)| n.as_str()).collect();
        println!("witnessed by {} of {} required: {}", cosigned.len(), policy.quorum, names.join(", "));
    }
    println!(
        "valid: diversion report of {:?} generated {} (proofs counted up to {} s old; events from entry {} on): {} \
         event(s), each as the report's own {} entries give it ({} GPU(s)), included in its checkpoint of size {} \
         (root {}); entries the file leaves out are not seen",
        v.origin,
        chipledger_domain::fleet::rfc3339(v.generated_at),
        v.max_age_secs,
        v.since_index,
        v.events.len(),
        v.entries,
        v.gpus,
        v.tree_size,
        v.root
    );
    print_events(&v.events);
    if !v.log_key_pinned {
        println!(
            "note: checked against the log key named in the file, which anyone can make verify; pin the log's key \
             with --log-key"
        );
    }
    Ok(())
}

/// The events, one a line: the first [`SHOWN`], then how many more the file holds.
fn print_events(events: &[Event]) {
    for e in events.iter().take(SHOWN) {
        let cites: Vec<String> = e.cites.iter().map(u64::to_string).collect();
        println!("  {}: {} [entries {}]", e.name(), e.reason, cites.join(", "));
    }
    if events.len() > SHOWN {
        println!("  … and {} more in the file", events.len() - SHOWN);
    }
}

/// How many events a command prints.
const SHOWN: usize = 100;

fn checkpoint_size(report: &DiversionReport) -> String {
    // A checkpoint's second line is its tree size (C2SP tlog-checkpoint); the report was
    // verified against it before it was written.
    report.bundle.checkpoint.lines().nth(1).unwrap_or("?").to_string()
}
