//! A fleet-scale ledger for benchmarks (web's `fleet`, the root's `slurm`): `hosts` eight-GPU
//! H800 hosts named `hgx-0000`…, each with its own agent key enrolled by the admin and attested
//! through the real Attestor from `board` (a synthetic eight-GPU dump made of the shipped one;
//! each host's GPUs get their own UUIDs and serials). Included by path; not a crate. Host `h`'s
//! agent key is [`agent_key`]`(h)`, so a benchmark can make it answer (a landmark's challenge).

use std::path::Path;
use std::sync::Arc;

use chipledger_agent::attest::{Attestor, AttestorConfig};
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::Clock;
use chipledger_domain::records::{sign_record, HostFacts, KeyEnrollment, Role, FORMAT_VERSION};
use chipledger_ledger::{InitInfo, Ledger, LedgerConfig, SystemClock};

/// The built ledger's init info and its admin key.
pub struct Built {
    pub info: InitInfo,
    pub admin: SigningKey,
}

/// Host `h`'s agent key (derived from `h`: benchmark data, not a secret).
pub fn agent_key(h: usize) -> SigningKey {
    let mut seed = [0x5a; 32];
    seed[..8].copy_from_slice(&(h as u64).to_le_bytes());
    SigningKey::from_seed(&seed)
}

/// `hgx-0000`, …
pub fn host_name(h: usize) -> String {
    format!("hgx-{h:04}")
}

/// An admin-signed enrollment of `key` for `role` on host `name`.
pub fn enrollment(admin: &SigningKey, counter: u64, key: &SigningKey, role: Role, name: &str) -> Vec<u8> {
    let now = SystemClock.now();
    let e = KeyEnrollment {
        format_version: FORMAT_VERSION,
        counter,
        issued_at: now,
        key_id: key.key_id(),
        verifier_key: VerifierKey::new(name, key.public_key()).unwrap().to_string(),
        role,
        host: Some(name.to_string()),
        valid_from: now - time::Duration::days(1),
        valid_until: None,
        site: None,
    };
    sign_record(&e, admin).unwrap().to_json()
}

/// Host `h` attests its eight GPUs with its enrolled agent `key`, through the real Attestor.
pub fn attest_host(dir: &Path, info: &InitInfo, board: &str, h: usize, key: SigningKey) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let dump = board
        .replace("-79a8-0000000000", &format!("-{h:04x}-0000000000"))
        .replace("16513230182", &format!("9{h:06}0182"));
    let report = chipledger_agent::smi::parse_dumps(&[("hgx.txt", &dump)]).unwrap();
    let log = Ledger::open(dir, LedgerConfig::default(), clock.clone()).unwrap();
    let mut a = Attestor::new(AttestorConfig {
        key,
        log: Box::new(log),
        log_key: info.log_verifier_key.clone(),
        state_dir: dir.join("agents").join(h.to_string()),
        clock,
        history_rules: Default::default(),
    })
    .unwrap();
    let att = a.build(&report, HostFacts { hostname: host_name(h), ..HostFacts::default() }).unwrap();
    a.sign_and_spool(&att).unwrap();
    assert_eq!(a.flush().unwrap().accepted.len(), 1);
}

/// Builds the ledger in `dir`; `extra` keys are enrolled after the agents' (counters follow the
/// host number, then the extra keys), each with its role and host name.
pub fn build(dir: &Path, hosts: usize, board: &str, extra: &[(&SigningKey, Role, &str)]) -> Built {
    let (ledger, info) = Ledger::init(dir, "bench.example/log", Arc::new(SystemClock), &mut rand_core::OsRng).unwrap();
    let admin = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&info.admin_key_path).unwrap()).unwrap();
    let keys: Vec<SigningKey> = (0..hosts).map(agent_key).collect();
    let mut enrollments: Vec<Vec<u8>> =
        keys.iter().enumerate().map(|(h, k)| enrollment(&admin, 2 + h as u64, k, Role::Agent, &host_name(h))).collect();
    for (i, (k, role, name)) in extra.iter().enumerate() {
        enrollments.push(enrollment(&admin, 2 + (hosts + i) as u64, k, *role, name));
    }
    for chunk in enrollments.chunks(500) {
        ledger.append(chunk).unwrap();
    }
    for (h, key) in keys.into_iter().enumerate() {
        attest_host(dir, &info, board, h, key);
    }
    Built { info, admin }
}
