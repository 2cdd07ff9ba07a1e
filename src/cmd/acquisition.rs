//! `chipledger acquisition record`: an admin's signed record of how GPUs were bought and shipped.

use std::path::PathBuf;

use anyhow::{Context, Result};
use chipledger_domain::country::Country;
use chipledger_domain::merkle::Hash;
use chipledger_domain::records::{sign_record, Acquisition, FORMAT_VERSION};
use time::{Date, OffsetDateTime};

use crate::cmd::keys::admin_signer;
use crate::datadir;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Record an acquisition (signed with the admin key); verdicts follow from it.
    Record {
        /// GPU serial numbers (repeatable), as the agent reports them.
        #[arg(long = "serial", required = true)]
        serials: Vec<String>,
        #[arg(long)]
        supplier: String,
        #[arg(long)]
        invoice: String,
        /// The invoice document: its SHA-256 goes into the record.
        #[arg(long, value_name = "FILE")]
        invoice_file: Option<PathBuf>,
        /// Ship date, YYYY-MM-DD.
        #[arg(long)]
        shipped: String,
        /// Ship-from and ship-to countries, ISO 3166-1 alpha-2.
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        end_user: String,
        /// Licence, NAC or ACA reference.
        #[arg(long)]
        licence: Option<String>,
        #[arg(long)]
        sku: Option<String>,
        #[arg(long, default_value = "")]
        note: String,
        #[arg(long)]
        admin_key: Option<PathBuf>,
    },
}

pub fn run(data_dir: Option<PathBuf>, cmd: Command) -> Result<()> {
    let Command::Record {
        serials,
        supplier,
        invoice,
        invoice_file,
        shipped,
        from,
        to,
        end_user,
        licence,
        sku,
        note,
        admin_key,
    } = cmd;
    let ledger = datadir::open(data_dir)?;
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let shipped_on = Date::parse(&shipped, &fmt)
        .with_context(|| format!("--shipped {shipped:?} is not a date of the form YYYY-MM-DD"))?;
    let invoice_digest = match invoice_file {
        Some(p) => Some(Hash::sha256(&std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?)),
        None => None,
    };
    if let Some(s) = &sku {
        chipledger_domain::catalog::Catalog::embedded()?.sku(s)?;
    }
    let (admin, counter) = admin_signer(&ledger, admin_key)?;
    let record = Acquisition {
        format_version: FORMAT_VERSION,
        counter,
        recorded_at: OffsetDateTime::now_utc(),
        serials,
        sku,
        supplier,
        invoice_reference: invoice,
        invoice_digest,
        shipped_on,
        ship_from: Country::parse(&from)?,
        ship_to: Country::parse(&to)?,
        end_user,
        licence,
        note,
    };
    let receipts = ledger.append(&[sign_record(&record, &admin)?.to_json()])?;
    println!("acquisition of {} GPU(s) recorded at index {}", record.serials.len(), receipts[0].index);
    Ok(())
}
