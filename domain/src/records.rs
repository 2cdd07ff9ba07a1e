//! Records: in-toto Statement v1 carrying one of chipledger's typed predicates.
//!
//! A *record* is a signed statement (a DSSE envelope whose payload is a [`Statement`]). Each
//! predicate has a URI under [`PREDICATE_NAMESPACE`], a `format_version`, the role allowed to sign
//! it, a per-key `counter` (strictly increasing per signing key) and the time it was made.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::country::Country;
use crate::dsse::{Envelope, PAYLOAD_TYPE_IN_TOTO};
use crate::fingerprint::{Fingerprint, GpuFacts, GpuUuid};
use crate::identify::{Identification, Severity};
use crate::keys::{KeyId, SigningKey};
use crate::merkle::Hash;
use crate::Error;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_NAMESPACE: &str = "https://chipledger.dev/predicates/";
/// The format version every predicate written by this build carries.
pub const FORMAT_VERSION: u32 = 1;

/// The largest signed envelope a log entry may be, in bytes: a C2SP entry bundle gives each
/// entry a 2-byte length. Signers check it before spooling; the log refuses anything larger.
pub const MAX_ENTRY_BYTES: usize = 65_535;

/// in-toto Statement v1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    pub fn sha256(name: impl Into<String>, digest: &Hash) -> Subject {
        Subject { name: name.into(), digest: BTreeMap::from([("sha256".to_string(), digest.to_hex())]) }
    }
}

/// Who may sign what.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Agent,
    Node,
    Admin,
    Auditor,
    /// An independently run signer at surveyed coordinates that times hosts' answers
    /// (`location-proof/v1`).
    Landmark,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "agent" => Some(Role::Agent),
            "node" => Some(Role::Node),
            "admin" => Some(Role::Admin),
            "auditor" => Some(Role::Auditor),
            "landmark" => Some(Role::Landmark),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Node => "node",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Landmark => "landmark",
        }
    }

    /// Whether a key of this role may sign records of `kind`.
    pub fn may_sign(self, kind: RecordKind) -> bool {
        matches!(
            (self, kind),
            (
                Role::Admin,
                RecordKind::KeyEnrollment
                    | RecordKind::KeyRevocation
                    | RecordKind::Acquisition
                    | RecordKind::Annotation
                    | RecordKind::LogKeyRotation
            ) | (Role::Auditor, RecordKind::Annotation)
                | (Role::Agent, RecordKind::GpuAttestation)
                | (Role::Node, RecordKind::RunProvenance | RecordKind::SchedulerJob | RecordKind::ServingBatch)
                | (Role::Landmark, RecordKind::LocationProof)
        )
    }
}

/// The kinds of record, one per predicate type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordKind {
    KeyEnrollment,
    KeyRevocation,
    GpuAttestation,
    Acquisition,
    RunProvenance,
    Annotation,
    SchedulerJob,
    LogKeyRotation,
    ServingBatch,
    LocationProof,
}

impl RecordKind {
    pub const ALL: [RecordKind; 10] = [
        RecordKind::KeyEnrollment,
        RecordKind::KeyRevocation,
        RecordKind::GpuAttestation,
        RecordKind::Acquisition,
        RecordKind::RunProvenance,
        RecordKind::Annotation,
        RecordKind::SchedulerJob,
        RecordKind::LogKeyRotation,
        RecordKind::ServingBatch,
        RecordKind::LocationProof,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            RecordKind::KeyEnrollment => "key-enrollment",
            RecordKind::KeyRevocation => "key-revocation",
            RecordKind::GpuAttestation => "gpu-attestation",
            RecordKind::Acquisition => "acquisition",
            RecordKind::RunProvenance => "run-provenance",
            RecordKind::Annotation => "annotation",
            RecordKind::SchedulerJob => "scheduler-job",
            RecordKind::LogKeyRotation => "log-key-rotation",
            RecordKind::ServingBatch => "serving-batch",
            RecordKind::LocationProof => "location-proof",
        }
    }

    /// The predicate type URI, e.g. `https://chipledger.dev/predicates/gpu-attestation/v1`.
    pub fn predicate_type(self) -> String {
        format!("{PREDICATE_NAMESPACE}{}/v1", self.slug())
    }

    pub fn from_predicate_type(uri: &str) -> Option<RecordKind> {
        let slug = uri.strip_prefix(PREDICATE_NAMESPACE)?.strip_suffix("/v1")?;
        RecordKind::ALL.into_iter().find(|k| k.slug() == slug)
    }
}

/// A typed predicate.
pub trait Predicate: Serialize + DeserializeOwned {
    const KIND: RecordKind;
    fn subjects(&self) -> Vec<Subject>;
    /// What makes a well-formed predicate of this kind malformed although it parses: a value it
    /// states that its own facts contradict (checked wherever a record is read).
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Where a GPU's facts came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeSource {
    /// A live NVML probe on the host.
    Nvml,
    /// An imported `nvidia-smi -q -x` dump: evidence, not a live attestation.
    NvidiaSmiXml,
    /// An imported `nvidia-smi -q` text dump: evidence, not a live attestation.
    NvidiaSmiText,
}

impl ProbeSource {
    pub fn is_live(self) -> bool {
        self == ProbeSource::Nvml
    }

    /// The name records, views and exports give it (its serde form).
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeSource::Nvml => "nvml",
            ProbeSource::NvidiaSmiXml => "nvidia-smi-xml",
            ProbeSource::NvidiaSmiText => "nvidia-smi-text",
        }
    }
}

/// Facts about the host, from sysinfo and /etc.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
}

/// Driver stack versions at probe time (host software, outside the fingerprint).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nvml_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_driver_version: Option<String>,
}

/// One GPU inside an attestation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttestedGpu {
    pub uuid: GpuUuid,
    pub facts: GpuFacts,
    pub fingerprint: Fingerprint,
    pub fingerprint_digest: Hash,
    pub identification: Identification,
}

impl AttestedGpu {
    pub fn new(uuid: GpuUuid, facts: GpuFacts, identification: Identification) -> AttestedGpu {
        let fingerprint = facts.fingerprint();
        let fingerprint_digest = fingerprint.digest();
        AttestedGpu { uuid, facts, fingerprint, fingerprint_digest, identification }
    }
}

/// Vendor attestation evidence (nvtrust / NVML confidential-computing report), opaque here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorEvidence {
    pub gpu: GpuUuid,
    /// e.g. `nvml-cc-attestation-report`, `nvml-cc-certificate-chain`.
    pub kind: String,
    /// Standard base64 of the blob.
    pub blob: String,
    pub digest: Hash,
    /// The nonce the report was requested with, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The signed log checkpoint the nonce was derived from (`evidence::derived_nonce`): the
    /// report is then no older than that checkpoint. Absent when the nonce was random or is the
    /// report's own (an import): its freshness is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce_checkpoint: Option<String>,
}

/// `gpu-attestation/v1`: an agent's signed account of the GPUs in one host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuAttestation {
    pub format_version: u32,
    pub counter: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub observed_at: OffsetDateTime,
    pub source: ProbeSource,
    pub host: HostFacts,
    pub driver: DriverFacts,
    pub gpus: Vec<AttestedGpu>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vendor_evidence: Vec<VendorEvidence>,
}

impl Predicate for GpuAttestation {
    const KIND: RecordKind = RecordKind::GpuAttestation;
    fn subjects(&self) -> Vec<Subject> {
        self.gpus.iter().map(|g| Subject::sha256(format!("gpu:{}", g.uuid), &g.fingerprint_digest)).collect()
    }

    /// Each GPU's UUID is the one in its facts, its fingerprint the one its facts give and its
    /// digest that fingerprint's; no GPU twice.
    fn check(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for g in &self.gpus {
            if g.facts.uuid.as_ref() != Some(&g.uuid) {
                return Err(format!("GPU {}: its facts give the UUID {:?}", g.uuid, g.facts.uuid));
            }
            if !seen.insert(&g.uuid) {
                return Err(format!("GPU {} is attested twice in one record", g.uuid));
            }
            let fingerprint = g.facts.fingerprint();
            if fingerprint != g.fingerprint {
                return Err(format!("GPU {}: the stated fingerprint is not the one its facts give", g.uuid));
            }
            let digest = fingerprint.digest();
            if digest != g.fingerprint_digest {
                return Err(format!(
                    "GPU {}: the stated fingerprint digest {} is not the digest of its facts ({digest})",
                    g.uuid, g.fingerprint_digest
                ));
            }
        }
        Ok(())
    }
}

/// `acquisition/v1`: how and where GPUs were bought and shipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acquisition {
    pub format_version: u32,
    pub counter: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    pub serials: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    pub supplier: String,
    pub invoice_reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_digest: Option<Hash>,
    pub shipped_on: Date,
    pub ship_from: Country,
    pub ship_to: Country,
    pub end_user: String,
    /// Licence, NAC or ACA reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl Predicate for Acquisition {
    const KIND: RecordKind = RecordKind::Acquisition;
    fn subjects(&self) -> Vec<Subject> {
        self.serials.iter().map(|s| Subject::sha256(format!("serial:{s}"), &Hash::sha256(s.as_bytes()))).collect()
    }
}

/// `key-enrollment/v1`: an admin makes a key usable for one role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyEnrollment {
    pub format_version: u32,
    pub counter: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    pub key_id: KeyId,
    /// The C2SP verifier key (`name+hash+base64`).
    pub verifier_key: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub valid_from: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub valid_until: Option<OffsetDateTime>,
    /// Where the key's holder is: a landmark's surveyed coordinates (required), or the site an
    /// admin declares for an agent's host (what location proofs are compared with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<Site>,
}

/// A place an admin vouches for at enrollment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// Latitude and longitude in degrees (WGS 84), `"lat,lon"`.
    pub at: crate::location::Coord,
    /// Who runs the place (a landmark's operator, a data centre's).
    pub operator: String,
    /// The country it is in, as declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<Country>,
    /// A landmark's answer-processing floor the admin has verified, in nanoseconds: the most its
    /// proofs may subtract from a round trip (0: none, the larger, conservative disk).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub floor_ns: u64,
}

/// The largest answer-processing floor an enrollment may approve: 1 ms.
pub const MAX_FLOOR_NS: u64 = 1_000_000;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Predicate for KeyEnrollment {
    const KIND: RecordKind = RecordKind::KeyEnrollment;

    /// A landmark names itself (`host`) and its surveyed site; only agents and landmarks have a
    /// site.
    fn check(&self) -> Result<(), String> {
        if self.role == Role::Landmark {
            if self.host.as_deref().is_none_or(|h| h.trim().is_empty()) {
                return Err("a landmark key must name the landmark (its host)".into());
            }
            if self.site.is_none() {
                return Err("a landmark key must carry its surveyed site (coordinates and operator)".into());
            }
        }
        if let Some(site) = &self.site {
            if !matches!(self.role, Role::Agent | Role::Landmark) {
                return Err(format!("a {} key has no site", self.role.as_str()));
            }
            let op = site.operator.trim();
            if op.is_empty() || op.len() > 200 || op.chars().any(char::is_control) {
                return Err("a site's operator must be 1 to 200 characters, none a control character".into());
            }
            if !site.at.lat.is_finite() || !site.at.lon.is_finite() {
                return Err("a site's coordinates must be finite".into());
            }
            // A floor is a landmark's, and at most a millisecond (150 km of radius): answers
            // are signed in tens of microseconds.
            if site.floor_ns > 0 && self.role != Role::Landmark {
                return Err("only a landmark's site has an approved floor".into());
            }
            if site.floor_ns > MAX_FLOOR_NS {
                return Err(format!("an approved floor is at most {MAX_FLOOR_NS} ns"));
            }
        }
        Ok(())
    }

    fn subjects(&self) -> Vec<Subject> {
        vec![Subject {
            name: format!("key:{}", self.key_id),
            digest: BTreeMap::from([("sha256".into(), self.key_id.0.clone())]),
        }]
    }
}

/// `key-revocation/v1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRevocation {
    pub format_version: u32,
    pub counter: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    pub key_id: KeyId,
    pub reason: String,
}

impl Predicate for KeyRevocation {
    const KIND: RecordKind = RecordKind::KeyRevocation;
    fn subjects(&self) -> Vec<Subject> {
        vec![Subject {
            name: format!("key:{}", self.key_id),
            digest: BTreeMap::from([("sha256".into(), self.key_id.0.clone())]),
        }]
    }
}

/// What an annotation is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnnotationTarget {
    Entry { index: u64, leaf_hash: Hash },
    Gpu { uuid: GpuUuid },
}

/// `annotation/v1`: an admin's or auditor's journal note.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotation {
    pub format_version: u32,
    pub counter: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub written_at: OffsetDateTime,
    pub target: AnnotationTarget,
    pub severity: Severity,
    pub text: String,
    /// An admin's resolution of a serial reported under several UUIDs: the target GPU is the one
    /// that holds it (and inherits its acquisition); the others do not. Only admin keys may sign
    /// an annotation that carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolves_serial: Option<String>,
    /// An admin's settlement of the target GPU's history: its moves, second hosts and fact
    /// changes so far are reviewed, and its trail starts over from its current host and facts
    /// (`domain::trail::Trail::settle`). Only admin keys may sign an annotation that carries it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub settles_history: bool,
}

impl Predicate for Annotation {
    const KIND: RecordKind = RecordKind::Annotation;

    /// A resolution names a GPU: its target.
    fn check(&self) -> Result<(), String> {
        match (&self.resolves_serial, &self.target) {
            (Some(s), _) if s.trim().is_empty() => Err("resolves_serial is empty".into()),
            (Some(_), AnnotationTarget::Entry { .. }) => {
                Err("an annotation that resolves a serial must target the GPU that holds it".into())
            }
            _ if self.settles_history && matches!(self.target, AnnotationTarget::Entry { .. }) => {
                Err("an annotation that settles a history must target its GPU".into())
            }
            _ => Ok(()),
        }
    }
    fn subjects(&self) -> Vec<Subject> {
        match &self.target {
            AnnotationTarget::Entry { index, leaf_hash } => vec![Subject::sha256(format!("entry:{index}"), leaf_hash)],
            AnnotationTarget::Gpu { uuid } => {
                vec![Subject::sha256(format!("gpu:{uuid}"), &Hash::sha256(uuid.as_str().as_bytes()))]
            }
        }
    }
}

/// A GPU the scheduler did not choose, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedGpu {
    pub uuid: GpuUuid,
    pub host: String,
    pub reason: String,
}

/// Evidence that the attestation of a GPU used by a run is in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationRef {
    pub log_index: u64,
    pub leaf_hash: Hash,
    pub inclusion_proof: Vec<Hash>,
    pub age_seconds: i64,
}

impl AttestationRef {
    /// Checks the inclusion proof against the placement's `checkpoint`.
    pub fn verify(&self, checkpoint: &crate::note::Checkpoint) -> Result<(), Error> {
        crate::merkle::verify_inclusion(
            self.log_index,
            checkpoint.size,
            &self.leaf_hash,
            &self.inclusion_proof,
            &checkpoint.root,
        )
    }
}

/// A GPU a run used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunGpu {
    pub uuid: GpuUuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    pub sku: Option<String>,
    /// The 2023 classification label, e.g. `3A090.a.1`.
    pub classification: String,
    pub acquisition_verdict: String,
    pub attestation: AttestationRef,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelFile {
    pub path: String,
    pub sha256: Hash,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub temperature: f64,
    pub top_p: f64,
    pub seed: u64,
    pub max_tokens: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTimings {
    pub load_ms: u64,
    pub prefill_ms: u64,
    pub decode_ms: u64,
}

/// `run-provenance/v1`: a node's signed account of one inference run (SLSA-provenance shaped).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunProvenance {
    pub format_version: u32,
    pub counter: u64,
    pub run_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    pub node_key_id: KeyId,
    pub node_host: String,
    pub policy_name: String,
    pub policy_digest: Hash,
    pub gpus: Vec<RunGpu>,
    pub rejected: Vec<RejectedGpu>,
    /// The signed checkpoint the inclusion proofs are against, verbatim.
    pub checkpoint: String,
    pub model_name: String,
    pub model_files: Vec<ModelFile>,
    pub prompt_digest: Hash,
    pub output_digest: Hash,
    pub sampling: Sampling,
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    pub timings: RunTimings,
    /// The execution backend actually used, e.g. `cpu` or `cuda:0`.
    pub backend: String,
}

impl Predicate for RunProvenance {
    const KIND: RecordKind = RecordKind::RunProvenance;
    fn subjects(&self) -> Vec<Subject> {
        vec![Subject::sha256(format!("run:{}", self.run_id), &self.output_digest)]
    }
}

/// `scheduler-job/v1`: a cluster scheduler's job on one node, as the node's chipledger hook saw
/// it — at its start (the Slurm Prolog: the GPUs allocated to it, each with the attestation and
/// standing it qualified on) and at its end (the Epilog: the exit state). Signed by a key
/// enrolled with role `node` for the node's host (it reads what judging takes: the inventory,
/// acquisitions); the log refuses one naming another host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerJob {
    pub format_version: u32,
    pub counter: u64,
    /// `slurm` (the only scheduler whose jobs are recorded so far).
    pub scheduler: String,
    pub cluster: String,
    pub job_id: String,
    pub phase: JobPhase,
    /// When the hook ran.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    /// The attested host name of the node (the name its GPUs are attested under).
    pub host: String,
    /// The scheduler's name for the node, when it differs from `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    pub policy_name: String,
    pub policy_digest: Hash,
    /// The job's GPUs on this node (empty for a job without GPUs).
    pub gpus: Vec<JobGpu>,
    /// The scheduler's final state and exit code (`COMPLETED 0:0`), at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_state: Option<String>,
    /// At the end: the log index of the job's start record on this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_index: Option<u64>,
}

/// When in a job's life a [`SchedulerJob`] was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobPhase {
    Start,
    End,
}

/// One GPU of a job: the device the scheduler allocated and what it qualified on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobGpu {
    /// The scheduler's device index on the node (Slurm's GRES `IDX`).
    pub device_index: u32,
    pub uuid: GpuUuid,
    /// The attestation the decision read, by log index and leaf hash.
    pub attestation_index: u64,
    pub attestation_leaf: Hash,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<String>,
    pub acquisition_verdict: String,
    /// `vendor-signed`, `self-reported` or `imported`.
    pub evidence: String,
}

/// Bounds on what one job record may name (a node holds at most this many GPUs).
pub const MAX_JOB_GPUS: usize = 1024;
const MAX_JOB_TEXT: usize = 256;

impl Predicate for SchedulerJob {
    const KIND: RecordKind = RecordKind::SchedulerJob;

    fn check(&self) -> Result<(), String> {
        for (what, v) in
            [("scheduler", &self.scheduler), ("cluster", &self.cluster), ("job_id", &self.job_id), ("host", &self.host)]
        {
            if v.trim().is_empty() || v.len() > MAX_JOB_TEXT {
                return Err(format!("{what} must be 1 to {MAX_JOB_TEXT} bytes"));
            }
        }
        for v in [&self.node, &self.user, &self.partition, &self.exit_state].into_iter().flatten() {
            if v.len() > MAX_JOB_TEXT {
                return Err(format!("a field is longer than {MAX_JOB_TEXT} bytes"));
            }
        }
        if self.gpus.len() > MAX_JOB_GPUS {
            return Err(format!("{} GPUs; a node holds at most {MAX_JOB_GPUS}", self.gpus.len()));
        }
        match (self.phase, &self.exit_state, self.start_index) {
            (JobPhase::Start, Some(_), _) => Err("a job's start has no exit state".into()),
            (JobPhase::Start, _, Some(_)) => Err("a job's start has no start_index".into()),
            _ => Ok(()),
        }
    }
    fn subjects(&self) -> Vec<Subject> {
        let name = format!("job:{}/{}/{}", self.scheduler, self.cluster, self.job_id);
        let digest = Hash::sha256(name.as_bytes());
        vec![Subject::sha256(name, &digest)]
    }
}

/// Any record, typed.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    KeyEnrollment(KeyEnrollment),
    KeyRevocation(KeyRevocation),
    GpuAttestation(GpuAttestation),
    Acquisition(Acquisition),
    RunProvenance(Box<RunProvenance>),
    SchedulerJob(Box<SchedulerJob>),
    LogKeyRotation(Box<crate::rotation::LogKeyRotation>),
    Annotation(Annotation),
    ServingBatch(Box<crate::serving::ServingBatch>),
    LocationProof(Box<crate::location_proof::LocationProof>),
}

impl Record {
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::KeyEnrollment(_) => RecordKind::KeyEnrollment,
            Record::KeyRevocation(_) => RecordKind::KeyRevocation,
            Record::GpuAttestation(_) => RecordKind::GpuAttestation,
            Record::Acquisition(_) => RecordKind::Acquisition,
            Record::RunProvenance(_) => RecordKind::RunProvenance,
            Record::Annotation(_) => RecordKind::Annotation,
            Record::SchedulerJob(_) => RecordKind::SchedulerJob,
            Record::LogKeyRotation(_) => RecordKind::LogKeyRotation,
            Record::ServingBatch(_) => RecordKind::ServingBatch,
            Record::LocationProof(_) => RecordKind::LocationProof,
        }
    }

    /// The signer's per-key counter.
    pub fn counter(&self) -> u64 {
        match self {
            Record::KeyEnrollment(r) => r.counter,
            Record::KeyRevocation(r) => r.counter,
            Record::GpuAttestation(r) => r.counter,
            Record::Acquisition(r) => r.counter,
            Record::RunProvenance(r) => r.counter,
            Record::Annotation(r) => r.counter,
            Record::SchedulerJob(r) => r.counter,
            Record::LogKeyRotation(r) => r.counter,
            Record::ServingBatch(r) => r.counter,
            Record::LocationProof(r) => r.counter,
        }
    }

    /// When the signer says the record was made (checked against the log's clock).
    pub fn made_at(&self) -> OffsetDateTime {
        match self {
            Record::KeyEnrollment(r) => r.issued_at,
            Record::KeyRevocation(r) => r.issued_at,
            Record::GpuAttestation(r) => r.observed_at,
            Record::Acquisition(r) => r.recorded_at,
            Record::RunProvenance(r) => r.finished_at,
            Record::Annotation(r) => r.written_at,
            Record::SchedulerJob(r) => r.recorded_at,
            Record::LogKeyRotation(r) => r.issued_at,
            Record::ServingBatch(r) => r.closed_at,
            Record::LocationProof(r) => r.measured_at,
        }
    }

    /// Reads the typed predicate out of an in-memory statement, with the checks of
    /// [`Record::from_payload`] (type, version, subjects), which it shares.
    pub fn from_statement(st: &Statement) -> Result<Record, Error> {
        let bytes = serde_json::to_vec(st).map_err(|e| Error::Json { what: "statement", message: e.to_string() })?;
        Record::from_payload(&bytes)
    }

    /// Parses statement JSON bytes (a verified envelope's payload) into a typed record, with the
    /// checks of type, format version and subjects, in one pass over the predicate.
    pub fn from_payload(payload: &[u8]) -> Result<Record, Error> {
        #[derive(Deserialize)]
        struct Raw<'a> {
            #[serde(rename = "_type")]
            type_: String,
            subject: Vec<Subject>,
            #[serde(rename = "predicateType")]
            predicate_type: String,
            #[serde(borrow)]
            predicate: &'a serde_json::value::RawValue,
        }
        #[derive(Deserialize)]
        struct Version {
            format_version: Option<u64>,
        }
        fn typed<P: Predicate>(raw: &Raw<'_>, bad: &dyn Fn(String) -> Error) -> Result<P, Error> {
            let p: P = serde_json::from_str(raw.predicate.get()).map_err(|e| bad(e.to_string()))?;
            if p.subjects() != raw.subject {
                return Err(bad("the subjects do not match the predicate".into()));
            }
            p.check().map_err(bad)?;
            Ok(p)
        }
        let raw: Raw<'_> = serde_json::from_slice(payload)
            .map_err(|e| Error::Json { what: "in-toto statement", message: e.to_string() })?;
        if raw.type_ != STATEMENT_TYPE {
            return Err(Error::Statement { reason: format!("_type is {:?}, expected {STATEMENT_TYPE}", raw.type_) });
        }
        let kind = RecordKind::from_predicate_type(&raw.predicate_type)
            .ok_or_else(|| Error::Statement { reason: format!("unknown predicateType {:?}", raw.predicate_type) })?;
        let bad = |reason: String| Error::Record { predicate_type: raw.predicate_type.clone(), reason };
        let version: Version = serde_json::from_str(raw.predicate.get()).map_err(|e| bad(e.to_string()))?;
        if version.format_version != Some(u64::from(FORMAT_VERSION)) {
            return Err(bad(format!(
                "format_version is {:?}, this build reads {FORMAT_VERSION}",
                version.format_version
            )));
        }
        Ok(match kind {
            RecordKind::KeyEnrollment => Record::KeyEnrollment(typed(&raw, &bad)?),
            RecordKind::KeyRevocation => Record::KeyRevocation(typed(&raw, &bad)?),
            RecordKind::GpuAttestation => Record::GpuAttestation(typed(&raw, &bad)?),
            RecordKind::Acquisition => Record::Acquisition(typed(&raw, &bad)?),
            RecordKind::RunProvenance => Record::RunProvenance(Box::new(typed(&raw, &bad)?)),
            RecordKind::Annotation => Record::Annotation(typed(&raw, &bad)?),
            RecordKind::SchedulerJob => Record::SchedulerJob(Box::new(typed(&raw, &bad)?)),
            RecordKind::LogKeyRotation => Record::LogKeyRotation(Box::new(typed(&raw, &bad)?)),
            RecordKind::ServingBatch => Record::ServingBatch(Box::new(typed(&raw, &bad)?)),
            RecordKind::LocationProof => Record::LocationProof(Box::new(typed(&raw, &bad)?)),
        })
    }
}

/// Wraps a predicate in a statement.
pub fn statement<P: Predicate>(predicate: &P) -> Result<Statement, Error> {
    let value =
        serde_json::to_value(predicate).map_err(|e| Error::Json { what: "predicate", message: e.to_string() })?;
    Ok(Statement {
        type_: STATEMENT_TYPE.to_string(),
        subject: predicate.subjects(),
        predicate_type: P::KIND.predicate_type(),
        predicate: value,
    })
}

/// Serializes a predicate as a statement and signs it into a DSSE envelope.
pub fn sign_record<P: Predicate>(predicate: &P, key: &SigningKey) -> Result<Envelope, Error> {
    let st = statement(predicate)?;
    let payload = serde_json::to_vec(&st).map_err(|e| Error::Json { what: "statement", message: e.to_string() })?;
    Ok(Envelope::sign(PAYLOAD_TYPE_IN_TOTO, &payload, key))
}
