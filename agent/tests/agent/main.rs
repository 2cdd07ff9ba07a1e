//! Tests of the agent: the import probe against real and edited nvidia-smi dumps, attestation
//! against a real local ledger, and the daemon with a recorded-output probe.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the point
#![allow(missing_debug_implementations)]

mod anomalies;
mod attest;
mod config;
mod daemon;
mod import;
mod probe_contract;
pub mod synth;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chipledger_agent::attest::{Attestor, AttestorConfig};
use chipledger_agent::{FileProbe, GpuProbe, ProbeReport};
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::identify::HistoryRules;
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::{AsOf, Clock, EntrySummary, InventoryGpu, LogClient, Receipt};
use chipledger_domain::merkle::Hash;
use chipledger_domain::records::{sign_record, HostFacts, KeyEnrollment, Role, FORMAT_VERSION};
use chipledger_ledger::Ledger;
use time::OffsetDateTime;

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/nvidia-smi").join(name)
}

pub const H800_TXT: &str = "h800-sxm5-80gb-liguodongiot-llm-action.txt";
pub const A100_XML: &str = "a100-sxm4-80gb-influxdata-telegraf.xml";
pub const H100_TXT: &str = "h100-sxm5-80gb-utkuozdemir-nvidia_gpu_exporter.txt";
pub const H100_NVLINK: &str = "h100-sxm5-80gb-nvlink-s-utkuozdemir-nvidia_gpu_exporter.txt";
pub const H100_CSV: &str = "h100-sxm5-80gb-utkuozdemir-nvidia_gpu_exporter.csv";

pub fn read(name: &str) -> String {
    std::fs::read_to_string(data(name)).unwrap()
}

/// Parses dumps given as (name, contents).
#[track_caller]
pub fn parse(files: &[(&str, &str)]) -> ProbeReport {
    chipledger_agent::smi::parse_dumps(files).unwrap()
}

/// Probes the shared dumps by file name.
#[track_caller]
pub fn probe_files(names: &[&str]) -> ProbeReport {
    FileProbe::new(names.iter().map(|n| data(n)).collect()).probe().unwrap()
}

/// An `nvidia-smi -q` dump of `n` H800s (see [`synth`]).
pub fn eight_gpu_text(n: usize) -> String {
    synth::hgx_text(&read(H800_TXT), n)
}

pub fn uuid(i: u32) -> GpuUuid {
    synth::uuid(i)
}

/// A clock tests move by hand; shared by the ledger and the agent.
#[derive(Debug)]
pub struct TestClock(pub Mutex<OffsetDateTime>);

impl TestClock {
    pub fn at(t: OffsetDateTime) -> Arc<TestClock> {
        Arc::new(TestClock(Mutex::new(t)))
    }
    pub fn advance(&self, d: time::Duration) {
        *self.0.lock().unwrap() += d;
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

/// The wall clock (daemon tests).
#[derive(Debug)]
pub struct WallClock;

impl Clock for WallClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A real ledger reached the way a network would reach it: it can be switched off.
#[derive(Clone)]
pub struct Reachable {
    pub ledger: Arc<Ledger>,
    pub up: Arc<AtomicBool>,
}

impl Reachable {
    fn check(&self) -> Result<(), chipledger_domain::Error> {
        if self.up.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(chipledger_domain::Error::Log("connection refused".into()))
        }
    }
}

impl LogClient for Reachable {
    fn submit(&self, envelopes: &[Vec<u8>]) -> Result<Vec<Receipt>, chipledger_domain::Error> {
        self.check()?;
        self.ledger.submit(envelopes)
    }
    fn checkpoint(&self) -> Result<String, chipledger_domain::Error> {
        self.check()?;
        LogClient::checkpoint(self.ledger.as_ref())
    }
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, chipledger_domain::Error> {
        self.check()?;
        LogClient::inclusion_proof(self.ledger.as_ref(), index, size)
    }
    fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, chipledger_domain::Error> {
        self.check()?;
        LogClient::consistency_proof(self.ledger.as_ref(), old, new)
    }
    fn inventory(&self, as_of: AsOf) -> Result<Vec<InventoryGpu>, chipledger_domain::Error> {
        self.check()?;
        LogClient::inventory(self.ledger.as_ref(), as_of)
    }
    fn history(&self, uuid: &GpuUuid, latest: Option<usize>) -> Result<Vec<EntrySummary>, chipledger_domain::Error> {
        self.check()?;
        self.ledger.history(uuid, latest)
    }
    fn inventory_by_serial(&self, serial: &str) -> Result<Vec<InventoryGpu>, chipledger_domain::Error> {
        self.check()?;
        LogClient::inventory_by_serial(self.ledger.as_ref(), serial)
    }
    fn entry(&self, index: u64) -> Result<EntrySummary, chipledger_domain::Error> {
        self.check()?;
        self.ledger.entry(index)
    }
    fn acquisitions(&self, serial: &str) -> Result<Vec<EntrySummary>, chipledger_domain::Error> {
        self.check()?;
        self.ledger.acquisitions(serial)
    }
    fn location_proofs(
        &self,
        host: Option<&str>,
        since: time::OffsetDateTime,
    ) -> Result<Vec<EntrySummary>, chipledger_domain::Error> {
        self.check()?;
        LogClient::location_proofs(self.ledger.as_ref(), host, since)
    }
    fn sites(&self) -> Result<Vec<chipledger_domain::log::EnrolledSite>, chipledger_domain::Error> {
        self.check()?;
        LogClient::sites(self.ledger.as_ref())
    }
}

/// A fresh ledger with an admin key, a clock, and a way to enroll agent keys.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub log: Reachable,
    pub admin: SigningKey,
    pub clock: Arc<dyn Clock>,
    admin_counter: u64,
}

impl Fleet {
    pub fn new(clock: Arc<dyn Clock>) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, info) =
            Ledger::init(&dir.path().join("ledger"), "test.example/log", clock.clone(), &mut rand_core::OsRng).unwrap();
        let admin = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&info.admin_key_path).unwrap()).unwrap();
        let log = Reachable { ledger: Arc::new(ledger), up: Arc::new(AtomicBool::new(true)) };
        Fleet { dir, log, admin, clock, admin_counter: 1 }
    }

    /// Enrolls an agent key for `host` and returns it.
    pub fn agent_key(&mut self, seed: u8, host: &str) -> SigningKey {
        let key = SigningKey::from_seed(&[seed; 32]);
        self.admin_counter += 1;
        let now = self.clock.now();
        let e = KeyEnrollment {
            format_version: FORMAT_VERSION,
            counter: self.admin_counter,
            issued_at: now,
            key_id: key.key_id(),
            verifier_key: VerifierKey::new(host, key.public_key()).unwrap().to_string(),
            role: Role::Agent,
            host: Some(host.to_string()),
            valid_from: now - time::Duration::days(1),
            valid_until: None,
            site: None,
        };
        self.log.ledger.append(&[sign_record(&e, &self.admin).unwrap().to_json()]).unwrap();
        key
    }

    /// An attestor for `key`, with its state in `<tmp>/<name>`.
    pub fn attestor(&self, key: SigningKey, name: &str) -> Attestor {
        Attestor::new(AttestorConfig {
            key,
            log: Box::new(self.log.clone()),
            log_key: self.log.ledger.verifier_key().clone(),
            state_dir: self.dir.path().join(name),
            clock: self.clock.clone(),
            history_rules: HistoryRules::default(),
        })
        .unwrap()
    }
}

pub fn host(name: &str) -> HostFacts {
    HostFacts { hostname: name.to_string(), machine_id: Some(format!("{:0>32}", name.len())), ..HostFacts::default() }
}
