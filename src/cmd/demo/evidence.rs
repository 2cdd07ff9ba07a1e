//! Scenes 1–3: the keys an admin enrolls (agents with their declared sites, landmarks at theirs), the attestations the agents sign from imported dumps,
//! and the acquisition records the admin signs.

use anyhow::{bail, Result};
use chipledger_agent::attest::{Attestor, AttestorConfig};
use chipledger_agent::smi::parse_dumps;
use chipledger_domain::country::Country;
use chipledger_domain::identify::HistoryRules;
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::location::Coord;
use chipledger_domain::records::{sign_record, Acquisition, HostFacts, KeyEnrollment, Role, Site, FORMAT_VERSION};
use chipledger_ledger::{Ledger, LedgerConfig};
use time::Date;

use super::hosts::Host;
use super::Story;

/// The keys scene 1 enrolls.
pub(super) struct Keys {
    /// One per host, in the order of the hosts.
    pub agents: Vec<SigningKey>,
    pub node: SigningKey,
    /// One per landmark, in `location::LANDMARKS` order.
    pub landmarks: Vec<SigningKey>,
}

/// Scene 1: an agent key for each host (bound to it) and one inference-node key, admin-signed.
pub(super) fn enroll(story: &mut Story, hosts: &[Host]) -> Result<Keys> {
    let mut agents = Vec::new();
    for h in hosts {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let site = match &h.site {
            Some(p) => Some(Site {
                at: Coord::parse(p.at)?,
                operator: p.operator.to_string(),
                country: Some(Country::parse(p.country)?),
                floor_ns: 0,
            }),
            None => None,
        };
        enroll_one(story, &key, Role::Agent, h.name, site)?;
        agents.push(key);
    }
    let node = SigningKey::generate(&mut rand_core::OsRng);
    enroll_one(story, &node, Role::Node, "node-01", None)?;
    let mut landmarks = Vec::new();
    for (name, at, operator) in super::location::LANDMARKS {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let site = Site { at: Coord::parse(at)?, operator: operator.to_string(), country: None, floor_ns: 0 };
        enroll_one(story, &key, Role::Landmark, name, Some(site))?;
        landmarks.push(key);
    }
    // Kept where `chipledger run` looks for it, so the data directory works after the demo.
    let path = story.dir.join("node-key.pem");
    chipledger_ledger::write_private_file(&path, node.to_pkcs8_pem()?.as_bytes())?;
    println!(
        "   enrolled {} agent keys (each with its host's declared site), 1 inference-node key and {} landmark keys at surveyed sites (admin-signed)",
        hosts.len(),
        landmarks.len()
    );
    Ok(Keys { agents, node, landmarks })
}

fn enroll_one(story: &mut Story, key: &SigningKey, role: Role, name: &str, site: Option<Site>) -> Result<()> {
    story.admin_counter += 1;
    let now = story.clock.now();
    let e = KeyEnrollment {
        format_version: FORMAT_VERSION,
        counter: story.admin_counter,
        issued_at: now,
        key_id: key.key_id(),
        verifier_key: VerifierKey::new(name, key.public_key())?.to_string(),
        role,
        host: Some(name.to_string()),
        valid_from: now,
        valid_until: None,
        site,
    };
    story.ledger.append(&[sign_record(&e, &story.admin)?.to_json()])?;
    Ok(())
}

/// Scene 2: each agent imports its dumps, identifies, signs, submits and checks the receipt.
pub(super) fn attest(story: &Story, hosts: &[Host], keys: &[SigningKey]) -> Result<()> {
    println!();
    println!("2. attestations (imported evidence)");
    for (h, key) in hosts.iter().zip(keys) {
        let key = SigningKey::from_pkcs8_pem(&key.to_pkcs8_pem()?)?;
        let files: Vec<(&str, &str)> = h.files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let report = parse_dumps(&files)?;
        let log = Ledger::open(&story.dir, LedgerConfig::default(), story.clock.clone())?;
        let mut attestor = Attestor::new(AttestorConfig {
            key,
            log: Box::new(log),
            log_key: story.info.log_verifier_key.clone(),
            state_dir: story.dir.join("agents").join(h.name),
            clock: story.clock.clone(),
            history_rules: HistoryRules::default(),
        })?;
        let host = HostFacts { hostname: h.name.to_string(), os: Some("simulated".into()), ..HostFacts::default() };
        let att = attestor.build(&report, host)?;
        attestor.sign_and_spool(&att)?;
        let flush = attestor.flush()?;
        let Some(accepted) = flush.accepted.first() else {
            bail!("the demo ledger did not accept {}'s attestation", h.name)
        };
        println!("   {:<12} {} → log index {}, receipt verified", h.name, h.what, accepted.receipt.index);
    }
    Ok(())
}

/// Scene 3: three acquisitions, before the first control, under a licence, and after the rule
/// without one.
pub(super) fn acquisitions(story: &mut Story) -> Result<()> {
    println!();
    println!("3. acquisition records");
    let acquisitions = [
        (
            "1650522003820",
            "A100-SXM4-80GB",
            "2022-06-01",
            "US",
            "CN",
            None,
            "shipped before the first control (26 Aug 2022)",
        ),
        (
            "1654423001593",
            "H100-SXM5-80GB",
            "2024-03-01",
            "US",
            "AE",
            Some("BIS licence D-123456 (simulated)"),
            "shipped under a licence",
        ),
        (
            "1651323018291",
            "H800-SXM5-80GB",
            "2024-02-01",
            "SG",
            "CN",
            None,
            "shipped after the Oct 2023 rule, no licence",
        ),
    ];
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    for (i, (serial, sku, date, from, to, licence, what)) in acquisitions.iter().enumerate() {
        story.admin_counter += 1;
        let a = Acquisition {
            format_version: FORMAT_VERSION,
            counter: story.admin_counter,
            recorded_at: story.clock.now(),
            serials: vec![serial.to_string()],
            sku: Some(sku.to_string()),
            supplier: "Example Distributor Ltd (simulated)".into(),
            invoice_reference: format!("INV-DEMO-{}", i + 1),
            invoice_digest: None,
            shipped_on: Date::parse(date, &fmt)?,
            ship_from: Country::parse(from)?,
            ship_to: Country::parse(to)?,
            end_user: "Example AI Lab (simulated)".into(),
            licence: licence.map(str::to_string),
            note: String::new(),
        };
        let r = story.ledger.append(&[sign_record(&a, &story.admin)?.to_json()])?;
        println!("   {sku} serial {serial}: {from} → {to} on {date}, {what} (index {})", r[0].index);
    }
    Ok(())
}
