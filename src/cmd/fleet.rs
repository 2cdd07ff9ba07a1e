//! `chipledger fleet`: the fleet as an auditor exports it — the dashboard's rows and columns
//! (`domain::fleet::Row`), judged here from the log's facts, from a local ledger or a server.

use std::path::PathBuf;

use anyhow::{Context, Result};
use chipledger_domain::fleet::{self, CSV_HEADER};
use chipledger_domain::keys::VerifierKey;

use crate::datadir;
use crate::output::{self, Format};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ledger: a data directory (default: the global --data-dir) or a server's URL (a
    /// person's token from CHIPLEDGER_TOKEN, or --key).
    #[arg(long, value_name = "DIR|URL")]
    ledger: Option<String>,
    /// The log's verifier key (required with a URL; checked against a local ledger's).
    #[arg(long, value_name = "VKEY")]
    log_key: Option<String>,
    /// An enrolled admin or auditor key to sign the server requests with, instead of a token.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub fn run(data_dir: Option<PathBuf>, args: Args) -> Result<()> {
    let target = match &args.ledger {
        Some(l) => datadir::LedgerTarget::parse(l),
        None => datadir::LedgerTarget::Dir(datadir::resolve(data_dir)?),
    };
    let pinned = args.log_key.as_deref().map(VerifierKey::parse).transpose().context("--log-key")?;
    let (log, log_key) = target.open(pinned, args.key.as_deref())?;
    let mut fleet = fleet::load(log.as_ref(), &log_key).context("reading the fleet")?;
    let max_age = chipledger_domain::located::DEFAULT_MAX_AGE_SECS;
    fleet::locate(&mut fleet, log.as_ref(), None, time::OffsetDateTime::now_utc(), max_age)
        .context("reading the location proofs")?;
    let rows = fleet::rows(&fleet.candidates);
    match args.format {
        Format::Json => output::print_json(&rows),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record(CSV_HEADER)?;
            for r in &rows {
                w.write_record(r.csv_record())?;
            }
            w.flush()?;
            Ok(())
        }
        Format::Table => {
            let mut t = output::table(&[
                "host",
                "SKU",
                "serial",
                "UUID",
                "attested",
                "evidence",
                "class (Oct 2023)",
                "acquisition",
                "location",
                "anomalies",
            ]);
            for r in &rows {
                t.add_row(vec![
                    r.host.clone(),
                    r.sku.clone(),
                    r.serial.clone(),
                    r.uuid.clone(),
                    r.last_attested.clone(),
                    format!("{} ({})", r.evidence, r.source),
                    r.class_2023.clone(),
                    r.verdict.clone(),
                    r.location.clone(),
                    if r.anomalies.is_empty() { "none".into() } else { r.anomalies.join("\n") },
                ]);
            }
            println!("{t}");
            println!("{} GPU(s) at checkpoint size {}", rows.len(), fleet.checkpoint.size);
            Ok(())
        }
    }
}
