//! `chipledger evidence verify`: NVIDIA GPU attestation evidence (an SPDM GET_MEASUREMENTS report
//! and the GPU's certificate chain), verified offline against the pinned NVIDIA device root.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use chipledger_domain::evidence::{self, decode_report, parse_chain, Report};

use crate::output::{self, Format};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Verify a report: its signature by the GPU's attestation key, the key's certificate chain up
    /// to NVIDIA's device root, the nonce you issued, and the FWID the leaf certificate names.
    /// Exit 0 when valid, 1 with the reason when not.
    Verify {
        /// The report: NVIDIA's hex text or raw bytes (SPDM request ‖ response).
        #[arg(long)]
        report: PathBuf,
        /// The GPU's certificate chain (PEM, leaf first).
        #[arg(long)]
        cert_chain: PathBuf,
        /// The nonce you issued (64 hex digits): never taken from the report.
        #[arg(long)]
        nonce: String,
        /// The root to end in (PEM; default: NVIDIA's device identity root, shipped).
        #[arg(long)]
        device_root: Option<PathBuf>,
        /// When the report was made (unix seconds or RFC 3339), for the certificates' validity
        /// (default: now; for a logged attestation, its log time).
        #[arg(long)]
        at: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

fn read(path: &PathBuf, limit: usize) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > limit as u64 {
        bail!("{} is {} bytes, over the {limit}-byte limit", path.display(), meta.len());
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

pub fn run(c: Command) -> Result<()> {
    let Command::Verify { report, cert_chain, nonce, device_root, at, format } = c;
    let nonce: [u8; 32] = hex::decode(nonce.trim())
        .ok()
        .and_then(|n| n.try_into().ok())
        .context("--nonce must be 64 hex digits (32 bytes)")?;
    let at = match at.as_deref() {
        None => time::OffsetDateTime::now_utc().unix_timestamp(),
        Some(t) => match t.parse::<i64>() {
            Ok(unix) => unix,
            Err(_) => time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .with_context(|| format!("--at {t}: not unix seconds or RFC 3339"))?
                .unix_timestamp(),
        },
    };
    let root_pem = device_root.as_ref().map(|p| read(p, 64 * 1024)).transpose()?;
    let root = evidence::parse_root(root_pem.as_deref())?;
    let bytes = decode_report(&read(&report, 2 * evidence::MAX_REPORT_BYTES + 1024)?)?;
    let parsed = Report::parse(&bytes)?;
    let chain = parse_chain(&read(&cert_chain, evidence::MAX_CHAIN_BYTES)?)?;
    let v = evidence::verify(&parsed, &chain, &root, &nonce, at)?;
    if format == Format::Json {
        return output::print_json(&serde_json::json!({
            "valid": true,
            "signature": "ok",
            "chain": format!("ok: {} certificates up to {}", chain.len(), evidence::subject(&root)),
            "nonce": hex::encode(parsed.nonce),
            "at": at,
            "ueid": v.ueid,
            "fwid": hex::encode(&v.fwid),
            "driver_version": v.driver_version,
            "vbios_version": v.vbios_version,
            "chip_sku": v.chip_sku,
            "project": v.project,
            "project_sku": v.project_sku,
            "measurements": v.measurements,
        }));
    }
    println!(
        "valid: signed by the GPU's attestation key, {} certificates up to {}",
        chain.len(),
        evidence::subject(&root)
    );
    println!(
        "  ueid {}  driver {}  VBIOS {}  chip SKU {}",
        v.ueid,
        v.driver_version.as_deref().unwrap_or("?"),
        v.vbios_version.as_deref().unwrap_or("?"),
        v.chip_sku.as_deref().unwrap_or("?")
    );
    println!(
        "  nonce {} (as issued), FWID in the leaf certificate, {} measurements",
        hex::encode(parsed.nonce),
        v.measurements.len()
    );
    println!("  not checked here: revocation (OCSP is online), reference measurements (RIMs)");
    Ok(())
}
