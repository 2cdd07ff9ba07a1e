//! The probe boundary: everything the agent knows about the GPUs comes through [`GpuProbe`].

use chipledger_domain::fingerprint::{GpuFacts, GpuUuid};
use chipledger_domain::merkle::Hash;
use chipledger_domain::records::{DriverFacts, ProbeSource, VendorEvidence};

use crate::Error;

/// One look at a host's GPUs, as owned data.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeReport {
    pub source: ProbeSource,
    pub driver: DriverFacts,
    /// In the order the driver enumerates them.
    pub gpus: Vec<GpuFacts>,
    /// Confidential-computing reports and certificate chains, when the GPUs give them (filled
    /// from [`GpuProbe::vendor_evidence`] just before signing).
    pub vendor_evidence: Vec<VendorEvidence>,
}

impl ProbeReport {
    /// `(uuid, fingerprint digest)` per GPU, sorted: equal sets mean nothing about the GPUs'
    /// identities changed (volatile readings do not count).
    pub fn identity_set(&self) -> Vec<(Option<GpuUuid>, Hash)> {
        let mut set: Vec<(Option<GpuUuid>, Hash)> =
            self.gpus.iter().map(|g| (g.uuid.clone(), g.fingerprint().digest())).collect();
        set.sort_by(|a, b| {
            (a.0.as_ref().map(GpuUuid::as_str), a.1 .0).cmp(&(b.0.as_ref().map(GpuUuid::as_str), b.1 .0))
        });
        set
    }
}

/// A source of GPU facts. Implementations: [`crate::NvmlProbe`] (live) and
/// [`crate::FileProbe`] (recorded nvidia-smi output, re-read on every call).
/// What one GPU's attestation report is to be made over: the nonce, and the log checkpoint it
/// was derived from (`chipledger_domain::evidence::derived_nonce`), recorded with the report so
/// readers can recompute it. No checkpoint: the nonce is random (the agent has not yet seen the
/// log), and readers cannot tell when the report was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvidenceRequest {
    pub gpu: GpuUuid,
    pub nonce: [u8; 32],
    pub checkpoint: Option<String>,
}

pub trait GpuProbe: Send {
    /// Looks at the GPUs now. A fact the GPU or driver does not offer is absent in the facts
    /// (with the reason in `absent`), never an error.
    fn probe(&mut self) -> Result<ProbeReport, Error>;

    /// Vendor attestation evidence for these GPUs (confidential-computing reports, each over
    /// the nonce its request names), fetched only when a record is about to be signed. None by
    /// default.
    fn vendor_evidence(&mut self, requests: &[EvidenceRequest]) -> Vec<VendorEvidence> {
        let _ = requests;
        Vec::new()
    }
}
