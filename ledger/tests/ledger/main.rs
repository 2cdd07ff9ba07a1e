//! Tests of the ledger through its public API and through the real SQLite file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the point

mod append;
mod registry;
mod rotation;
mod signatures;
mod tamper;
mod tokens;
mod trust;

use std::path::Path;
use std::sync::Arc;

use chipledger_domain::catalog::Catalog;
use chipledger_domain::country::Country;
use chipledger_domain::fingerprint::{GpuFacts, GpuUuid, NvLink};
use chipledger_domain::identify::{identify, Severity};
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::FixedClock;
use chipledger_domain::records::{
    sign_record, Acquisition, Annotation, AnnotationTarget, AttestedGpu, DriverFacts, GpuAttestation, HostFacts,
    KeyEnrollment, KeyRevocation, ProbeSource, Role, FORMAT_VERSION,
};
use chipledger_ledger::{Ledger, LedgerConfig};
use rand_chacha::rand_core::SeedableRng;
use time::macros::datetime;
use time::OffsetDateTime;

pub const NOW: OffsetDateTime = datetime!(2026-11-29 09:00 UTC);

/// A fresh ledger in a temporary directory, with its admin key.
#[allow(missing_debug_implementations)]
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub ledger: Ledger,
    pub admin: SigningKey,
    pub admin_counter: u64,
}

#[allow(clippy::new_without_default)]
impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let (ledger, info) = Ledger::init(dir.path(), "test.example/log", Arc::new(FixedClock(NOW)), &mut rng).unwrap();
        let admin = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&info.admin_key_path).unwrap()).unwrap();
        Fixture { dir, ledger, admin, admin_counter: 1 }
    }

    pub fn reopen(&mut self) {
        self.reopen_at(NOW);
    }

    /// Reopens the log with its clock at `now`.
    pub fn reopen_at(&mut self, now: OffsetDateTime) {
        let dir = self.dir.path().to_path_buf();
        self.ledger = Ledger::open(&dir, LedgerConfig::default(), Arc::new(FixedClock(now))).unwrap();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Enrolls a new key of `role`, returning it.
    pub fn enroll(&mut self, seed: u8, role: Role, host: Option<&str>) -> SigningKey {
        let key = SigningKey::from_seed(&[seed; 32]);
        let env = self.enrollment(&key, role, host);
        self.ledger.append(&[env]).unwrap();
        key
    }

    pub fn enrollment(&mut self, key: &SigningKey, role: Role, host: Option<&str>) -> Vec<u8> {
        self.admin_counter += 1;
        let e = KeyEnrollment {
            format_version: FORMAT_VERSION,
            counter: self.admin_counter,
            issued_at: NOW,
            key_id: key.key_id(),
            verifier_key: VerifierKey::new(host.unwrap_or("key"), key.public_key()).unwrap().to_string(),
            role,
            host: host.map(str::to_string),
            valid_from: NOW - time::Duration::days(10),
            valid_until: None,
            site: None,
        };
        sign_record(&e, &self.admin).unwrap().to_json()
    }

    pub fn revocation(&mut self, key: &SigningKey) -> Vec<u8> {
        self.admin_counter += 1;
        let r = KeyRevocation {
            format_version: FORMAT_VERSION,
            counter: self.admin_counter,
            issued_at: NOW,
            key_id: key.key_id(),
            reason: "host decommissioned".into(),
        };
        sign_record(&r, &self.admin).unwrap().to_json()
    }

    pub fn acquisition(&mut self, serial: &str) -> Vec<u8> {
        self.admin_counter += 1;
        let a = Acquisition {
            format_version: FORMAT_VERSION,
            counter: self.admin_counter,
            recorded_at: NOW,
            serials: vec![serial.into()],
            sku: Some("H800-SXM5-80GB".into()),
            supplier: "Example Distribution".into(),
            invoice_reference: "INV-1".into(),
            invoice_digest: None,
            shipped_on: time::macros::date!(2023 - 03 - 15),
            ship_from: Country::parse("TW").unwrap(),
            ship_to: Country::parse("CN").unwrap(),
            end_user: "Example Lab".into(),
            licence: None,
            note: String::new(),
        };
        sign_record(&a, &self.admin).unwrap().to_json()
    }
}

pub fn h800(uuid: &str, serial: &str) -> GpuFacts {
    GpuFacts {
        uuid: Some(GpuUuid::parse(uuid).unwrap()),
        serial: Some(serial.into()),
        name: Some("NVIDIA H800".into()),
        pci_device_id: Some(0x2324),
        pci_subsystem_id: Some(0x17a6_10de),
        board_part_number: Some("692-2G520-0205-000".into()),
        vbios_version: Some("96.00.51.00.0E".into()),
        memory_total_bytes: Some(81559 << 20),
        nvlinks: Some(
            (0..8)
                .map(|i| NvLink { index: i, active: true, version: Some(6), speed_gbs: None, remote_bus_id: None })
                .collect(),
        ),
        ..Default::default()
    }
}

/// An attestation of `gpus` on `host`, signed by `agent` with `counter`.
pub fn attestation(agent: &SigningKey, counter: u64, host: &str, gpus: &[GpuFacts], at: OffsetDateTime) -> Vec<u8> {
    let catalog = Catalog::embedded().unwrap();
    let a = GpuAttestation {
        format_version: FORMAT_VERSION,
        counter,
        observed_at: at,
        source: ProbeSource::NvidiaSmiText,
        host: HostFacts { hostname: host.into(), ..Default::default() },
        driver: DriverFacts::default(),
        gpus: gpus.iter().map(|f| AttestedGpu::new(f.uuid.clone().unwrap(), f.clone(), identify(catalog, f))).collect(),
        vendor_evidence: vec![],
    };
    sign_record(&a, agent).unwrap().to_json()
}

/// A small record (~400 bytes as an envelope) signed by an auditor or admin key.
pub fn annotation(key: &SigningKey, counter: u64, text: &str) -> Vec<u8> {
    let a = Annotation {
        format_version: FORMAT_VERSION,
        counter,
        written_at: NOW,
        target: AnnotationTarget::Gpu { uuid: GpuUuid::parse("GPU-34bf77d1-c686-6821-79a8-32d326c5039c").unwrap() },
        severity: Severity::Info,
        text: text.into(),
        resolves_serial: None,
        settles_history: false,
    };
    sign_record(&a, key).unwrap().to_json()
}

/// Runs SQL on the log's file through a connection of its own, as an outside writer would.
pub fn sql(f: &Fixture, statement: &str) {
    let conn = rusqlite::Connection::open(f.path().join(chipledger_ledger::DB_FILE)).unwrap();
    conn.execute_batch(statement).unwrap();
}
