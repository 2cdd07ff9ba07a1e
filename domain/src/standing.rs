//! A GPU's standing — its SKU, anomalies, classification, acquisition verdict and evidence
//! level — computed by whoever reads a record, never taken from the record's signer.
//!
//! An attestation carries facts (PCI ids, serial, VBIOS, NVLinks, …) and the agent's own
//! identification of them. The identification is a claim: [`standing`] identifies the facts
//! again under the reader's catalog, and where the claim disagrees, that disagreement is itself
//! a Danger anomaly. The acquisition verdict attaches to a serial only for a GPU whose recomputed
//! SKU is the one the acquisition names, and to no GPU while the serial is reported under more
//! than one UUID. A GPU's history anomalies come from its trail through the log
//! (`domain::trail`), never from the agent's claims. The fleet view, placement, the dashboard,
//! `/metrics` and exports all read GPUs through this one function.

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::fingerprint::GpuUuid;
use crate::identify::{identify, Anomaly};
use crate::records::{Acquisition, AttestedGpu, GpuAttestation, ProbeSource};
use crate::rules::{classify, verdict, DatacenterJudgement, RuleVersion, Shipment, Verdict, VerdictKind};

/// How much a GPU's facts can be trusted, by where they came from. Ordered: a policy asks for
/// at least one level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Evidence {
    /// The record carries NVIDIA attestation evidence for the GPU and it fails a check (with an
    /// `evidence-invalid` Danger anomaly saying which): worse than carrying none.
    EvidenceInvalid,
    /// A dump someone handed in (nvidia-smi output): evidence, not an attestation.
    Imported,
    /// A live probe, signed by the agent key of the host: the host's word.
    SelfReported,
    /// A live probe whose record carries an NVIDIA attestation report that verifies — signed by
    /// a GPU attestation key whose certificate chains to NVIDIA's device root, over the nonce
    /// recorded with it, with the FWID its certificate names, the record's driver and VBIOS
    /// versions — but whose nonce the reader cannot tie to a time (the agent chose it, or no
    /// log key was at hand to check the checkpoint it names): a genuine NVIDIA GPU signed it,
    /// at some time.
    VendorSigned,
    /// All of `vendor-signed`, and the nonce is the one derived from a checkpoint of this log
    /// (signed by the reader's log key), this host, this record's counter and this GPU's UUID
    /// (`evidence::derived_nonce`): the GPU signed the report after that checkpoint, for this
    /// record.
    HardwareSigned,
    /// All of `hardware-signed`, and the measurements equal NVIDIA's signed reference values
    /// (driver and VBIOS RIMs carried in the record, verified to NVIDIA's RIM root).
    HardwareVerified,
}

impl Evidence {
    pub fn of(source: ProbeSource) -> Evidence {
        if source.is_live() {
            Evidence::SelfReported
        } else {
            Evidence::Imported
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Evidence::EvidenceInvalid => "evidence-invalid",
            Evidence::Imported => "imported",
            Evidence::SelfReported => "self-reported",
            Evidence::VendorSigned => "vendor-signed",
            Evidence::HardwareSigned => "hardware-signed",
            Evidence::HardwareVerified => "hardware-verified",
        }
    }

    /// The level a label names (`hardware-signed`, …).
    pub fn parse(label: &str) -> Option<Evidence> {
        ALL_EVIDENCE.into_iter().find(|e| e.label() == label)
    }
}

/// Every level, lowest first.
pub const ALL_EVIDENCE: [Evidence; 6] = [
    Evidence::EvidenceInvalid,
    Evidence::Imported,
    Evidence::SelfReported,
    Evidence::VendorSigned,
    Evidence::HardwareSigned,
    Evidence::HardwareVerified,
];

/// Where a record sits, for a reader that can check a derived nonce's checkpoint: the log key
/// that signs the log's checkpoints, the record's log index, and the index of the same host's
/// previous attestation of the GPU when the reader knows it. The checkpoint must come before the
/// record (a report is no older than it) and, for `hardware-signed`, include that previous
/// record: otherwise an agent could have collected reports for counters ahead, before the GPU
/// left, and kept publishing them.
#[derive(Clone, Copy, Debug)]
pub struct InLog<'a> {
    pub log_key: &'a crate::keys::VerifierKey,
    pub index: u64,
    pub previous: Option<u64>,
}

/// What the reader knows around one GPU that its standing depends on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Surroundings<'a> {
    /// Every UUID the reader has seen report this GPU's serial, this GPU's own among them.
    pub uuids_with_serial: &'a [GpuUuid],
    /// The latest acquisition record naming this GPU's serial, if any.
    pub acquisition: Option<&'a Acquisition>,
    /// The GPU an admin resolved this serial to (an annotation with `resolves_serial`), if any.
    pub owner: Option<&'a GpuUuid>,
}

/// A GPU as the reader judges it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standing {
    /// The catalog SKU its PCI device id gives, or `None` when it needs review.
    pub sku: Option<String>,
    /// Every anomaly: of its facts (recomputed), of its history (as its agent reported them), of
    /// the claim against the recomputation, and of the fleet around it (a shared serial).
    pub anomalies: Vec<Anomaly>,
    /// Its class under every rule version, when the SKU is known.
    pub classifications: Vec<(RuleVersion, String)>,
    pub verdict: Verdict,
    pub evidence: Evidence,
}

impl Standing {
    /// The class under one rule version.
    pub fn class(&self, rule: RuleVersion) -> Option<&str> {
        self.classifications.iter().find(|(r, _)| *r == rule).map(|(_, c)| c.as_str())
    }
}

/// What one record's facts give, before the fleet around the GPU is known.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FactStanding {
    pub sku: Option<String>,
    /// Recomputed from the facts, and the claim's disagreements (history anomalies come from
    /// the GPU's trail, `fleet::candidate`).
    pub anomalies: Vec<Anomaly>,
    pub evidence: Evidence,
    /// The hardware identity its verified NVIDIA evidence names.
    pub ueid: Option<String>,
}

/// The standing of `gpu`, one GPU of the attestation `att`, under `catalog`: [`of_facts`] then
/// [`of_serial`].
pub fn standing(catalog: &Catalog, att: &GpuAttestation, gpu: &AttestedGpu, around: Surroundings<'_>) -> Standing {
    let facts = of_facts(catalog, att, gpu);
    let (verdict, extra) = of_serial(catalog, facts.sku.as_deref(), gpu, around);
    let mut anomalies = facts.anomalies;
    anomalies.extend(extra);
    Standing {
        classifications: classifications(catalog, facts.sku.as_deref()),
        sku: facts.sku,
        anomalies,
        verdict,
        evidence: facts.evidence,
    }
}

/// The part of a GPU's standing its own record decides: the SKU its PCI ids give, the anomalies
/// of its facts, and a `claim-disagrees` anomaly for each way the agent's identification differs.
pub fn of_facts(catalog: &Catalog, att: &GpuAttestation, gpu: &AttestedGpu) -> FactStanding {
    of_facts_in(catalog, att, gpu, None)
}

/// [`of_facts`], for a record read from a log: with `in_log`, a nonce derived from one of the
/// log's checkpoints can make its evidence `hardware-signed`.
pub fn of_facts_in(
    catalog: &Catalog,
    att: &GpuAttestation,
    gpu: &AttestedGpu,
    in_log: Option<InLog<'_>>,
) -> FactStanding {
    // The shipped PEMs always parse (a unit test proves it); if they did not, every chain
    // would be refused ("no NVIDIA device root"), never accepted.
    let none = EvidenceRoots::none();
    of_facts_with(catalog, att, gpu, in_log, EvidenceRoots::shipped().unwrap_or(&none))
}

/// [`of_facts_in`], with the NVIDIA roots evidence must chain to given (tests use their own).
pub fn of_facts_with(
    catalog: &Catalog,
    att: &GpuAttestation,
    gpu: &AttestedGpu,
    in_log: Option<InLog<'_>>,
    roots: &EvidenceRoots,
) -> FactStanding {
    let recomputed = identify(catalog, &gpu.facts);
    // History anomalies are the reader's to find: a shared serial from the GPUs it holds
    // (`of_serial`), moves and changes from the GPU's trail (`fleet::candidate`). The agent's own
    // are claims about records it chose to read, and count for nothing here.
    let mut anomalies = recomputed.anomalies.clone();
    if gpu.identification.sku != recomputed.sku {
        anomalies.push(Anomaly::ClaimDisagrees {
            field: "sku".into(),
            claimed: gpu.identification.sku.clone().unwrap_or_else(|| "needs review".into()),
            recomputed: recomputed.sku.clone().unwrap_or_else(|| "needs review".into()),
        });
    }
    let mut claimed: Vec<String> =
        gpu.identification.anomalies.iter().filter(|a| !is_history(a)).map(Anomaly::kind_name).collect();
    let mut found: Vec<String> = recomputed.anomalies.iter().map(Anomaly::kind_name).collect();
    claimed.sort();
    found.sort();
    if claimed != found {
        anomalies.push(Anomaly::ClaimDisagrees {
            field: "anomalies".into(),
            claimed: list(&claimed),
            recomputed: list(&found),
        });
    }
    // A live NVML probe always reads the NVML library's version; facts without it are what an
    // nvidia-smi dump gives, whatever source the record claims.
    let mut evidence = Evidence::of(att.source);
    if att.source == ProbeSource::Nvml && att.driver.nvml_version.is_none() {
        anomalies.push(Anomaly::ClaimDisagrees {
            field: "source".into(),
            claimed: "nvml".into(),
            recomputed: "an import (its driver facts carry no NVML version, which every live NVML probe reads)".into(),
        });
        evidence = Evidence::Imported;
    }
    let mut ueid = None;
    match vendor_evidence(att, gpu, in_log, roots) {
        Some(Ok(v)) => {
            // Facts imported from a dump stay imported, whatever evidence comes with them.
            if evidence == Evidence::SelfReported {
                evidence = v.level;
            }
            // The board the GPU itself signed, against the SKU its PCI ids give.
            if let (Some((project, project_sku)), Some(sku)) = (&v.board, &recomputed.sku) {
                let known = catalog
                    .board_project(project, project_sku)
                    .or_else(|| catalog.board_project(&format!("G{project}"), project_sku));
                if let Some(bp) = known.filter(|bp| bp.sku != *sku) {
                    anomalies.push(Anomaly::EvidenceSkuDisagrees {
                        sku: sku.clone(),
                        board: format!("{project}-{project_sku}"),
                        evidence_sku: bp.sku.clone(),
                    });
                }
            }
            ueid = Some(v.ueid);
        }
        Some(Err(reason)) => {
            anomalies.push(Anomaly::EvidenceInvalid { reason });
            evidence = Evidence::EvidenceInvalid;
        }
        None if gpu.facts.ueid.is_some() => {
            anomalies.push(Anomaly::EvidenceInvalid {
                reason: "the record names a hardware identity (ueid) but carries no attestation report that proves it"
                    .into(),
            });
            evidence = Evidence::EvidenceInvalid;
        }
        None => {}
    }
    FactStanding { sku: recomputed.sku, anomalies, evidence, ueid }
}

/// The kinds of vendor evidence blobs that hold a GPU's attestation report, and its key's
/// certificate chain (NVML's names; `nvidia-…` for evidence imported with a dump).
const REPORT_KINDS: &[&str] = &["nvml-cc-attestation-report", "nvidia-attestation-report"];
const CHAIN_KINDS: &[&str] = &["nvml-cc-attestation-certificate-chain", "nvidia-attestation-certificate-chain"];
/// NVIDIA's signed reference manifests for the driver and the VBIOS, carried with the report
/// zlib-compressed (`rim::pack`); the digest is the manifest's own bytes'.
pub const DRIVER_RIM_KIND: &str = "nvidia-driver-rim";
pub const VBIOS_RIM_KIND: &str = "nvidia-vbios-rim";

/// The roots NVIDIA evidence must chain to: NVIDIA's device identity root (attestation keys) and
/// its RIM root (reference manifests). Readers use the ones shipped with the binary.
#[derive(Clone, Debug)]
pub struct EvidenceRoots {
    pub device: Option<x509_cert::Certificate>,
    pub rim: Option<x509_cert::Certificate>,
}

impl EvidenceRoots {
    /// The shipped roots, parsed once per process.
    pub fn shipped() -> Result<&'static EvidenceRoots, String> {
        static SHIPPED: std::sync::OnceLock<Result<EvidenceRoots, String>> = std::sync::OnceLock::new();
        SHIPPED
            .get_or_init(|| {
                Ok(EvidenceRoots {
                    device: Some(crate::evidence::parse_root(None).map_err(|e| e.to_string())?),
                    rim: Some(crate::rim::parse_rim_root(None).map_err(|e| e.to_string())?),
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// No roots: every chain is refused.
    pub fn none() -> EvidenceRoots {
        EvidenceRoots { device: None, rim: None }
    }
}

/// What a record's valid NVIDIA evidence gives the reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorVerdict {
    /// `vendor-signed`, `hardware-signed` or `hardware-verified`.
    pub level: Evidence,
    /// The leaf certificate's serial.
    pub ueid: String,
    /// Why it is not higher, when it is not `hardware-verified`.
    pub short_of: Option<String>,
    /// The board project and project SKU the report carries (`G520`, `0200`).
    pub board: Option<(String, String)>,
}

/// The GPU's NVIDIA attestation evidence in the record, verified against the shipped NVIDIA
/// device root at the record's time, over the nonce recorded with the report, and held to the
/// record: the report's driver and VBIOS versions must be the ones the record states, and a
/// `ueid` the record names must be the leaf certificate's serial. A nonce derived from a
/// checkpoint (`nonce_checkpoint`) must be the derivation's, and with `in_log` that checkpoint
/// must be signed by the log key and come before the record: then `hardware-signed`. RIMs in the
/// record must verify to NVIDIA's RIM root at the record's time and match every measurement they
/// cover: both present and matching make it `hardware-verified`.
/// `Some(Ok(_))` when it verifies, `Some(Err(why))` when it is there and does not, `None` when
/// there is none. Chains are checked once per process (a cache of verified chains).
pub fn vendor_evidence(
    att: &GpuAttestation,
    gpu: &AttestedGpu,
    in_log: Option<InLog<'_>>,
    roots: &EvidenceRoots,
) -> Option<Result<VendorVerdict, String>> {
    let uuid = &gpu.uuid;
    use crate::encoding::b64_decode;
    use crate::evidence::{self, ChainCache};
    static CHAINS: std::sync::OnceLock<ChainCache> = std::sync::OnceLock::new();
    let blob = |kinds: &[&str]| att.vendor_evidence.iter().find(|e| e.gpu == *uuid && kinds.contains(&e.kind.as_str()));
    let report = blob(REPORT_KINDS)?;
    let check = || -> Result<VendorVerdict, String> {
        let chain = blob(CHAIN_KINDS).ok_or("the report comes without its certificate chain")?;
        let bytes = b64_decode(&report.blob, "attestation report").map_err(|e| e.to_string())?;
        if crate::merkle::Hash::sha256(&bytes) != report.digest {
            return Err("the report's bytes are not the ones its digest names".into());
        }
        let nonce: [u8; 32] = report
            .nonce
            .as_deref()
            .and_then(|n| hex::decode(n).ok())
            .and_then(|n| n.try_into().ok())
            .ok_or("no nonce was recorded with the report")?;
        let parsed = evidence::Report::parse(&evidence::decode_report(&bytes).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let pem = b64_decode(&chain.blob, "certificate chain").map_err(|e| e.to_string())?;
        let certs = evidence::parse_chain(&pem).map_err(|e| e.to_string())?;
        let root = roots.device.as_ref().ok_or("no NVIDIA device root to check the chain against")?;
        let cache = CHAINS.get_or_init(ChainCache::default);
        let at = att.observed_at.unix_timestamp();
        let v = evidence::verify_cached(&parsed, &certs, root, &nonce, at, Some(cache)).map_err(|e| e.to_string())?;
        let differs = |what: &str, report: Option<&str>, record: Option<&str>| match (report, record) {
            (Some(a), Some(b)) if !a.eq_ignore_ascii_case(b) => {
                Err(format!("the report's {what} is {a}, the record's {b}: the report is not this GPU's"))
            }
            _ => Ok(()),
        };
        differs("driver version", v.driver_version.as_deref(), att.driver.driver_version.as_deref())?;
        differs("VBIOS version", v.vbios_version.as_deref(), gpu.facts.vbios_version.as_deref())?;
        // The record must name the identity its evidence proves: the trail follows the named
        // one, so a record leaving it out could swap chips under one UUID unseen.
        match &gpu.facts.ueid {
            Some(claimed) if claimed.eq_ignore_ascii_case(&v.ueid) => {}
            Some(claimed) => {
                return Err(format!("the record names ueid {claimed}, the report's certificate {}", v.ueid))
            }
            None => return Err(format!("the record does not name the ueid its evidence proves ({})", v.ueid)),
        }
        let mut level = Evidence::VendorSigned;
        let mut short_of = None;
        match (&report.nonce_checkpoint, in_log) {
            (Some(note), in_log) => {
                let derived = evidence::derived_nonce(note, &att.host.hostname, att.counter, uuid.as_str());
                if derived != nonce {
                    return Err("the report's nonce is not the one derived from the checkpoint, host, counter and GPU the record names".into());
                }
                match in_log {
                    Some(l) => {
                        let cp = crate::note::open_checkpoint(note.as_bytes(), std::slice::from_ref(l.log_key), None)
                            .map_err(|e| format!("the checkpoint the nonce was derived from is not this log's: {e}"))?
                            .checkpoint;
                        if cp.size > l.index {
                            return Err(format!(
                                "the nonce's checkpoint (size {}) is later than the record itself (index {})",
                                cp.size, l.index
                            ));
                        }
                        match l.previous {
                            Some(p) if cp.size <= p => {
                                short_of = Some(format!(
                                    "the nonce's checkpoint (size {}) does not include this host's previous record of the GPU (index {p}): the report may predate it, so its freshness is not proven",
                                    cp.size
                                ))
                            }
                            _ => level = Evidence::HardwareSigned,
                        }
                    }
                    None => short_of = Some("no log key at hand to check the nonce's checkpoint".to_string()),
                }
            }
            (None, _) => {
                short_of =
                    Some("the nonce was not derived from a log checkpoint: when the report was made is unknown".into())
            }
        }
        let rim = |kind: &str, what: &str| -> Result<Option<crate::rim::Rim>, String> {
            let Some(b) = att.vendor_evidence.iter().find(|e| e.gpu == *uuid && e.kind == kind) else {
                return Ok(None);
            };
            let packed = b64_decode(&b.blob, "reference manifest").map_err(|e| e.to_string())?;
            let xml = crate::rim::unpack(&packed).map_err(|e| format!("the {what} RIM: {e}"))?;
            if crate::merkle::Hash::sha256(&xml) != b.digest {
                return Err(format!("the {what} RIM's bytes are not the ones its digest names"));
            }
            let root = roots.rim.as_ref().ok_or("no NVIDIA RIM root to check the manifest against")?;
            crate::rim::verify_rim_cached(&xml, root, at, Some(cache))
                .map(Some)
                .map_err(|e| format!("the {what} RIM: {e}"))
        };
        let (driver, vbios) = (rim(DRIVER_RIM_KIND, "driver")?, rim(VBIOS_RIM_KIND, "VBIOS")?);
        if driver.is_some() || vbios.is_some() {
            let cmp = crate::rim::compare(
                &v.measurements,
                v.driver_version.as_deref(),
                v.vbios_version.as_deref(),
                driver.as_ref(),
                vbios.as_ref(),
            )
            .map_err(|e| e.to_string())?;
            if !cmp.all_match() {
                return Err(format!("the measurements are not NVIDIA's reference values: {}", rim_findings(&cmp)));
            }
            if level == Evidence::HardwareSigned {
                if driver.is_some() && vbios.is_some() {
                    level = Evidence::HardwareVerified;
                } else {
                    short_of = Some("only one of the driver and VBIOS RIMs came with the report".into());
                }
            }
        } else if short_of.is_none() {
            short_of = Some("no reference manifests (RIMs) came with the report".into());
        }
        Ok(VendorVerdict {
            level,
            ueid: v.ueid,
            short_of,
            board: v.project.zip(v.project_sku).map(|(p, s)| (p.trim().to_string(), s.trim().to_string())),
        })
    };
    Some(check())
}

/// Every way a RIM comparison fails, in one line: the indexes that differ or are missing, and
/// the versions that are not the RIMs'.
pub fn rim_findings(cmp: &crate::rim::Comparison) -> String {
    use crate::rim::Outcome;
    let mut parts: Vec<String> = cmp
        .results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Differs { .. } => {
                Some(format!("measurement {} differs from the {} RIM", r.index, r.rim.unwrap_or("reference")))
            }
            Outcome::MissingFromReport => Some(format!(
                "measurement {} of the {} RIM is not in the report",
                r.index,
                r.rim.unwrap_or("reference")
            )),
            _ => None,
        })
        .collect();
    parts.extend(cmp.version_findings.iter().cloned());
    parts.join("; ")
}

/// The part the fleet around the GPU decides: its acquisition verdict, and the anomalies of its
/// serial (shared with another UUID; acquired as another SKU). `sku` is the recomputed SKU.
pub fn of_serial(
    catalog: &Catalog,
    sku: Option<&str>,
    gpu: &AttestedGpu,
    around: Surroundings<'_>,
) -> (Verdict, Vec<Anomaly>) {
    of_serial_parts(catalog, sku, &gpu.uuid, gpu.facts.serial.as_deref(), around)
}

/// [`of_serial`] from the parts it reads (for readers that keep GPUs without their records).
pub fn of_serial_parts(
    catalog: &Catalog,
    sku: Option<&str>,
    uuid: &GpuUuid,
    serial: Option<&str>,
    around: Surroundings<'_>,
) -> (Verdict, Vec<Anomaly>) {
    let mut anomalies = Vec::new();
    // A serial is disputed while several UUIDs report it and no admin has said which GPU holds
    // it, or when an admin said another GPU does.
    let owned_elsewhere = around.owner.is_some_and(|o| o != uuid);
    let shared = serial
        .filter(|_| owned_elsewhere || (around.owner.is_none() && around.uuids_with_serial.iter().any(|u| u != uuid)));
    if let Some(serial) = shared {
        let mut uuids = around.uuids_with_serial.to_vec();
        uuids.push(uuid.clone());
        uuids.extend(around.owner.cloned());
        uuids.sort();
        uuids.dedup();
        anomalies.push(Anomaly::SerialUnderTwoUuids { serial: serial.to_string(), uuids });
    }
    let acquired_as = around.acquisition.and_then(|a| a.sku.as_deref());
    let verdict = match (shared, around.acquisition) {
        (Some(serial), _) if owned_elsewhere => needs_review(format!(
            "an admin resolved serial {serial} to GPU {}: this GPU reports a serial that is not its own",
            around.owner.map_or("", |o| o.as_str())
        )),
        (Some(serial), Some(_)) => needs_review(format!(
            "serial {serial} is reported under {} UUIDs: no GPU inherits its acquisition until an admin resolves which one it is",
            around.uuids_with_serial.len()
        )),
        (None, Some(_)) if acquired_as.is_some_and(|a| Some(a) != sku) => {
            let acquired = acquired_as.unwrap_or_default().to_string();
            anomalies.push(Anomaly::AcquisitionSkuDiffers {
                serial: serial.unwrap_or_default().to_string(),
                acquired: acquired.clone(),
                recomputed: sku.unwrap_or("needs review").to_string(),
            });
            needs_review(format!(
                "the acquisition of this serial is for a {acquired}, but the GPU's PCI ids say {}",
                sku.unwrap_or("an unknown SKU")
            ))
        }
        (_, acquisition) => {
            let shipment = acquisition.map(|a| Shipment {
                shipped_on: a.shipped_on,
                ship_to: a.ship_to,
                licence: a.licence.clone(),
            });
            let sku = sku.and_then(|s| catalog.sku(s).ok());
            verdict(sku, sku.map(DatacenterJudgement::catalog_default), shipment.as_ref())
        }
    };
    (verdict, anomalies)
}

/// A SKU's class under one rule version (`None` when the SKU is unknown).
pub fn class(catalog: &Catalog, sku: Option<&str>, rule: RuleVersion) -> Option<String> {
    let s = sku.and_then(|s| catalog.sku(s).ok())?;
    Some(classify(s, rule, DatacenterJudgement::catalog_default(s)).bucket.label().to_string())
}

/// A SKU's class under every rule version (empty when the SKU is unknown).
pub fn classifications(catalog: &Catalog, sku: Option<&str>) -> Vec<(RuleVersion, String)> {
    let Some(s) = sku.and_then(|s| catalog.sku(s).ok()) else { return Vec::new() };
    RuleVersion::ALL
        .iter()
        .map(|r| (*r, classify(s, *r, DatacenterJudgement::catalog_default(s)).bucket.label().to_string()))
        .collect()
}

fn needs_review(reason: String) -> Verdict {
    Verdict { verdict: VerdictKind::NeedsReview, reason, rules: vec![], citations: vec![], human_inputs: vec![] }
}

/// Anomalies that compare a record with earlier ones (the rest are about one record's facts).
fn is_history(a: &Anomaly) -> bool {
    matches!(
        a,
        Anomaly::VbiosChanged { .. }
            | Anomaly::IdentityChanged { .. }
            | Anomaly::SerialUnderTwoUuids { .. }
            | Anomaly::UuidOnTwoHosts { .. }
            | Anomaly::MovedHost { .. }
    )
}

fn list(kinds: &[String]) -> String {
    if kinds.is_empty() {
        "none".into()
    } else {
        kinds.join(", ")
    }
}

/// Checks that a run report's GPU cites what it claims: `envelope` (the entry at the cited index,
/// exact bytes) hashes to the cited leaf, is an attestation of that GPU, and its facts give the
/// SKU and the Oct 2023 class the report states. Says why not, for a person.
pub fn check_citation(catalog: &Catalog, envelope: &[u8], gpu: &crate::records::RunGpu) -> Result<String, String> {
    let index = gpu.attestation.log_index;
    if crate::merkle::leaf_hash(envelope) != gpu.attestation.leaf_hash {
        return Err(format!(
            "entry {index} is not the entry the report cites for {} (its leaf hash differs)",
            gpu.uuid
        ));
    }
    let env = crate::dsse::Envelope::from_json(envelope).map_err(|e| format!("entry {index}: {e}"))?;
    let payload = env.payload_bytes().map_err(|e| format!("entry {index}: {e}"))?;
    let record = crate::records::Record::from_payload(&payload).map_err(|e| format!("entry {index}: {e}"))?;
    let crate::records::Record::GpuAttestation(att) = record else {
        return Err(format!(
            "entry {index}, cited as the attestation of {}, is a {} record, not an attestation",
            gpu.uuid,
            record.kind().predicate_type()
        ));
    };
    let Some(attested) = att.gpus.iter().find(|g| g.uuid == gpu.uuid) else {
        return Err(format!("entry {index} is an attestation of other GPUs, not of {}", gpu.uuid));
    };
    let facts = of_facts(catalog, &att, attested);
    if facts.sku != gpu.sku {
        return Err(format!(
            "the report says {} is a {}, but its attestation at entry {index} gives {}",
            gpu.uuid,
            gpu.sku.as_deref().unwrap_or("needs review"),
            facts.sku.as_deref().unwrap_or("needs review")
        ));
    }
    let class = classifications(catalog, facts.sku.as_deref())
        .into_iter()
        .find(|(r, _)| *r == RuleVersion::Oct2023)
        .map_or_else(|| "needs review".to_string(), |(_, c)| c);
    if class != gpu.classification {
        return Err(format!(
            "the report classes {} as {}, but its attested SKU is {class} under the Oct 2023 rule",
            gpu.uuid, gpu.classification
        ));
    }
    Ok(att.host.hostname)
}
