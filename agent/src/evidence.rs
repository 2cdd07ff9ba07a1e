//! NVIDIA attestation evidence captured elsewhere (an SPDM report and its certificate chain, as
//! NVIDIA's tools save them), carried in an attestation for one GPU. The reader verifies it
//! (`chipledger_domain::standing`); here it is only taken apart enough to record its nonce —
//! the one the report itself carries, so its freshness is unknown (said in the kind's name).

use std::path::Path;

use base64::Engine;
use chipledger_domain::evidence::{decode_report, parse_chain, Report, MAX_CHAIN_BYTES, MAX_REPORT_BYTES};
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::merkle::Hash;
use chipledger_domain::records::VendorEvidence;

use crate::Error;

fn read(path: &Path, limit: usize) -> Result<Vec<u8>, Error> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > limit as u64 {
        return Err(Error::Evidence { path: path.display().to_string(), reason: format!("{len} bytes, over {limit}") });
    }
    std::fs::read(path).map_err(io)
}

/// The evidence blobs for `gpu` from a report file (hex text or raw) and a PEM chain file: the
/// report (raw bytes) with the nonce it carries, and the chain. Malformed files are refused here,
/// before anything is signed.
pub fn imported(gpu: &GpuUuid, report: &Path, chain: &Path) -> Result<Vec<VendorEvidence>, Error> {
    let bad = |path: &Path, reason: String| Error::Evidence { path: path.display().to_string(), reason };
    let bytes = decode_report(&read(report, 2 * MAX_REPORT_BYTES + 1024)?).map_err(|e| bad(report, e.to_string()))?;
    let parsed = Report::parse(&bytes).map_err(|e| bad(report, e.to_string()))?;
    let pem = read(chain, MAX_CHAIN_BYTES)?;
    parse_chain(&pem).map_err(|e| bad(chain, e.to_string()))?;
    let blob = |kind: &str, data: &[u8], nonce: Option<String>| VendorEvidence {
        gpu: gpu.clone(),
        kind: kind.to_string(),
        blob: base64::engine::general_purpose::STANDARD.encode(data),
        digest: Hash::sha256(data),
        nonce,
        nonce_checkpoint: None,
    };
    Ok(vec![
        blob("nvidia-attestation-report", &bytes, Some(hex::encode(parsed.nonce))),
        blob("nvidia-attestation-certificate-chain", &pem, None),
    ])
}

/// The hardware identity (`ueid`: the serial of the attestation key's certificate, the chain's
/// first) of `gpu`, from the certificate chain among `evidence`, when it parses and a report comes
/// with it.
/// A claim the reader checks against the report's verified chain.
pub fn ueid_of(gpu: &GpuUuid, evidence: &[VendorEvidence]) -> Option<String> {
    const CHAINS: &[&str] = &["nvml-cc-attestation-certificate-chain", "nvidia-attestation-certificate-chain"];
    const REPORTS: &[&str] = &["nvml-cc-attestation-report", "nvidia-attestation-report"];
    // No report, no claim: a chain alone proves nothing, and readers would call the claim invalid.
    evidence.iter().find(|e| e.gpu == *gpu && REPORTS.contains(&e.kind.as_str()))?;
    let chain = evidence.iter().find(|e| e.gpu == *gpu && CHAINS.contains(&e.kind.as_str()))?;
    let pem = base64::engine::general_purpose::STANDARD.decode(&chain.blob).ok()?;
    let certs = parse_chain(&pem).ok()?;
    Some(hex::encode_upper(certs.first()?.tbs_certificate.serial_number.as_bytes()))
}

/// NVIDIA's reference manifests (RIMs) for the driver and the VBIOS, from files, to carry in the
/// attestation for `gpu` so readers can compare the measurements offline, years later. Checked
/// to be within bounds here; readers verify their signatures.
pub fn rims(gpu: &GpuUuid, driver: Option<&Path>, vbios: Option<&Path>) -> Result<Vec<VendorEvidence>, Error> {
    let mut out = Vec::new();
    for (path, kind) in
        [(driver, chipledger_domain::standing::DRIVER_RIM_KIND), (vbios, chipledger_domain::standing::VBIOS_RIM_KIND)]
    {
        let Some(path) = path else { continue };
        let xml = read(path, chipledger_domain::rim::MAX_RIM_BYTES)?;
        out.push(VendorEvidence {
            gpu: gpu.clone(),
            kind: kind.to_string(),
            blob: base64::engine::general_purpose::STANDARD.encode(chipledger_domain::rim::pack(&xml)),
            digest: Hash::sha256(&xml),
            nonce: None,
            nonce_checkpoint: None,
        });
    }
    Ok(out)
}
