//! `chipledger evidence verify`: NVIDIA GPU attestation evidence (an SPDM GET_MEASUREMENTS report
//! and the GPU's certificate chain), verified offline against the pinned NVIDIA device root.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use chipledger_domain::evidence::{self, decode_report, parse_chain, Report};
use chipledger_domain::rim;

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
        /// NVIDIA's signed reference manifest (RIM, a SWID tag) for the driver: the report's
        /// measurements are compared with its golden values, index by index.
        #[arg(long, value_name = "FILE")]
        driver_rim: Option<PathBuf>,
        /// NVIDIA's signed RIM for the VBIOS.
        #[arg(long, value_name = "FILE")]
        vbios_rim: Option<PathBuf>,
        /// The root the RIMs' signing chains must end in (PEM; default: NVIDIA's RIM root, shipped).
        #[arg(long, value_name = "PEM")]
        rim_root: Option<PathBuf>,
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
    let Command::Verify { report, cert_chain, nonce, device_root, at, driver_rim, vbios_rim, rim_root, format } = c;
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
    // The reference manifests, each verified to the RIM root at the same time, then compared.
    let rim_root_pem = rim_root.as_ref().map(|p| read(p, 64 * 1024)).transpose()?;
    let rim_root = rim::parse_rim_root(rim_root_pem.as_deref())?;
    let load = |path: &Option<PathBuf>, what: &str| -> Result<Option<rim::Rim>> {
        let Some(path) = path else { return Ok(None) };
        let xml = read(path, rim::MAX_RIM_BYTES)?;
        rim::verify_rim(&xml, &rim_root, at).map(Some).with_context(|| format!("the {what} RIM {}", path.display()))
    };
    let (driver, vbios) = (load(&driver_rim, "driver")?, load(&vbios_rim, "VBIOS")?);
    let comparison = if driver.is_some() || vbios.is_some() {
        Some(rim::compare(
            &v.measurements,
            v.driver_version.as_deref(),
            v.vbios_version.as_deref(),
            driver.as_ref(),
            vbios.as_ref(),
        )?)
    } else {
        None
    };
    let rims_match = comparison.as_ref().is_none_or(rim::Comparison::all_match);
    if format == Format::Json {
        return output::print_json(&serde_json::json!({
            "valid": rims_match,
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
            "rims": comparison.as_ref().map(|c| serde_json::json!({
                "driver": driver.as_ref().map(|r| serde_json::json!({"version": r.version, "product": r.product, "tag_id": r.tag_id, "signer": r.signer})),
                "vbios": vbios.as_ref().map(|r| serde_json::json!({"version": r.version, "product": r.product, "tag_id": r.tag_id, "signer": r.signer})),
                "all_match": c.all_match(),
                "version_findings": c.version_findings,
                "per_index": c.results,
            })),
        }))
        .and_then(|()| rims_verdict(comparison.as_ref()));
    }
    println!(
        "{}: signed by the GPU's attestation key, {} certificates up to {}",
        if rims_match { "valid" } else { "signature valid, measurements not" },
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
    match &comparison {
        None => println!("  not checked here: revocation (OCSP is online), reference measurements (no RIM given)"),
        Some(c) => {
            for (what, r) in [("driver", &driver), ("VBIOS", &vbios)] {
                if let Some(r) = r {
                    println!(
                        "  {what} RIM {} for {} {}: signature and chain valid ({})",
                        r.tag_id, r.product, r.version, r.signer
                    );
                }
            }
            for r in &c.results {
                let verdict = match &r.outcome {
                    rim::Outcome::Matches => "matches".to_string(),
                    rim::Outcome::Differs { reported, .. } => format!("DIFFERS (reported {})", hex::encode(reported)),
                    rim::Outcome::MissingFromReport => "MISSING from the report".to_string(),
                    rim::Outcome::NotCovered => "not covered by a RIM".to_string(),
                };
                // RIM indexes count from 0; the report's SPDM blocks from 1.
                let rim = r.rim.map_or("no".to_string(), |w| format!("the {w}"));
                println!("  measurement {:>2} (block {:>2}, {rim} RIM): {verdict}", r.index, u16::from(r.index) + 1);
            }
            for f in &c.version_findings {
                println!("  {f}");
            }
            println!("  not checked here: revocation (OCSP is online)");
        }
    }
    rims_verdict(comparison.as_ref())
}

/// Exit 1 with the findings when the RIMs were given and the measurements are not theirs.
fn rims_verdict(comparison: Option<&rim::Comparison>) -> Result<()> {
    match comparison {
        Some(c) if !c.all_match() => {
            bail!(
                "the measurements are not NVIDIA's reference values: {}",
                chipledger_domain::standing::rim_findings(c)
            )
        }
        _ => Ok(()),
    }
}
