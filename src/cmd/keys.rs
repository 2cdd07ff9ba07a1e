//! `chipledger keys …`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use chipledger_domain::keys::{KeyId, SigningKey, VerifierKey};
use chipledger_domain::records::{sign_record, KeyEnrollment, KeyRevocation, Role, Site, FORMAT_VERSION};
use chipledger_ledger::{Ledger, ADMIN_KEY_FILE};
use time::OffsetDateTime;

use crate::datadir;
use crate::output::{self, Format};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create an Ed25519 key: writes the private key as PKCS#8 PEM (mode 0600, never
    /// overwriting) and prints its C2SP verifier key.
    Generate {
        /// The key's name in signed notes (no spaces or '+'), e.g. a host or log name.
        #[arg(long)]
        name: String,
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Enroll a key in the ledger for one role (signed with the admin key).
    Enroll {
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// A label for the key (a host name for agents and nodes).
        #[arg(long)]
        name: String,
        /// The key's C2SP verifier key, as `keys generate` or `agent enroll` printed it.
        #[arg(long)]
        key: String,
        /// How many days the enrollment is valid (default: no end).
        #[arg(long)]
        valid_days: Option<i64>,
        /// The key holder's site, "LAT,LON" in degrees: a landmark's surveyed coordinates
        /// (required for `--role landmark`), or the site an agent's host is declared at (what
        /// location proofs are compared with).
        #[arg(long, value_parser = parse_coord, requires = "operator")]
        site: Option<chipledger_domain::location::Coord>,
        /// Who runs the site (a landmark's operator, a data centre's).
        #[arg(long, requires = "site")]
        operator: Option<String>,
        /// The site's country (ISO 3166-1 alpha-2), as declared.
        #[arg(long, requires = "site", value_parser = parse_country)]
        country: Option<chipledger_domain::country::Country>,
        /// For a landmark: the answer-processing time (ns) its operator measured and you have
        /// verified; its proofs may subtract at most this from a round trip (default 0).
        #[arg(long, requires = "site", default_value_t = 0)]
        floor_ns: u64,
        /// The admin private key (default: the data directory's admin-key.pem).
        #[arg(long)]
        admin_key: Option<PathBuf>,
    },
    /// Revoke an enrolled key (signed with the admin key).
    Revoke {
        /// The key id (64 hex digits) or its verifier key.
        key: String,
        #[arg(long, default_value = "revoked by an administrator")]
        reason: String,
        #[arg(long)]
        admin_key: Option<PathBuf>,
    },
    /// List the key registry.
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// `--role`: agent, node, auditor, admin or landmark.
fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("unknown role {s:?}; one of agent, node, auditor, admin, landmark"))
}

/// `--country CC`.
fn parse_country(s: &str) -> Result<chipledger_domain::country::Country, String> {
    chipledger_domain::country::Country::parse(s).map_err(|e| e.to_string())
}

/// `--site LAT,LON`.
pub fn parse_coord(s: &str) -> Result<chipledger_domain::location::Coord, String> {
    chipledger_domain::location::Coord::parse(s).map_err(|e| e.to_string())
}

pub fn run(data_dir: Option<PathBuf>, cmd: Command) -> Result<()> {
    match cmd {
        Command::Generate { name, out } => {
            chipledger_domain::keys::check_key_name(&name)?;
            let key = SigningKey::generate(&mut rand_core::OsRng);
            let vkey = VerifierKey::new(&name, key.public_key())?;
            write_private(&out, key.to_pkcs8_pem()?.as_bytes())?;
            println!("{vkey}");
            eprintln!("private key written to {} (mode 0600); key id {}", out.display(), key.key_id());
            Ok(())
        }
        Command::Enroll { role, name, key, valid_days, site, operator, country, floor_ns, admin_key } => {
            if floor_ns > 0 && role != Role::Landmark {
                bail!("--floor-ns is a landmark's: the most its proofs may subtract from a round trip");
            }
            let site = match (site, operator) {
                (Some(at), Some(operator)) => Some(Site { at, operator, country, floor_ns }),
                _ if role == Role::Landmark => {
                    bail!("a landmark is enrolled with its surveyed site: --site LAT,LON --operator WHO")
                }
                _ => None,
            };
            let ledger = datadir::open(data_dir)?;
            let vkey = VerifierKey::parse(&key)?;
            let (admin, counter) = admin_signer(&ledger, admin_key)?;
            let now = OffsetDateTime::now_utc();
            let enrollment = KeyEnrollment {
                format_version: FORMAT_VERSION,
                counter,
                issued_at: now,
                key_id: vkey.public_key().key_id(),
                verifier_key: vkey.to_string(),
                role,
                host: Some(name),
                valid_from: now,
                valid_until: valid_days.map(|d| now + time::Duration::days(d)),
                site,
            };
            let receipts = ledger.append(&[sign_record(&enrollment, &admin)?.to_json()])?;
            println!("enrolled key {} as {} at index {}", enrollment.key_id, role.as_str(), receipts[0].index);
            Ok(())
        }
        Command::Revoke { key, reason, admin_key } => {
            let ledger = datadir::open(data_dir)?;
            let key_id = match VerifierKey::parse(&key) {
                Ok(v) => v.public_key().key_id(),
                Err(_) => {
                    KeyId::parse(&key).with_context(|| format!("{key:?} is neither a key id nor a verifier key"))?
                }
            };
            let (admin, counter) = admin_signer(&ledger, admin_key)?;
            let rev = KeyRevocation {
                format_version: FORMAT_VERSION,
                counter,
                issued_at: OffsetDateTime::now_utc(),
                key_id,
                reason,
            };
            let receipts = ledger.append(&[sign_record(&rev, &admin)?.to_json()])?;
            println!("revoked key {} at index {}", rev.key_id, receipts[0].index);
            Ok(())
        }
        Command::List { format } => {
            let ledger = datadir::open(data_dir)?;
            let keys = ledger.keys()?;
            match format {
                Format::Json => output::print_json(&keys),
                Format::Csv => bail!("--format csv is not offered here; use json"),
                Format::Table => {
                    let mut t =
                        output::table(&["key id", "role", "name/host", "enrolled at", "revoked at", "last counter"]);
                    for k in keys {
                        t.add_row(vec![
                            output::short(&k.key_id),
                            k.role.as_str().to_string(),
                            k.host.unwrap_or_default(),
                            k.enrolled_at.to_string(),
                            k.revoked_at.map(|r| r.to_string()).unwrap_or_default(),
                            k.last_counter.to_string(),
                        ]);
                    }
                    println!("{t}");
                    Ok(())
                }
            }
        }
    }
}

/// The admin key and its next counter.
pub fn admin_signer(ledger: &Ledger, path: Option<PathBuf>) -> Result<(SigningKey, u64)> {
    let path = path.unwrap_or_else(|| ledger.dir().join(ADMIN_KEY_FILE));
    let pem = std::fs::read_to_string(&path).with_context(|| format!("reading the admin key {}", path.display()))?;
    let key =
        SigningKey::from_pkcs8_pem_owned(pem).with_context(|| format!("reading the admin key {}", path.display()))?;
    let id = key.key_id();
    let entry = ledger.keys()?.into_iter().find(|k| k.key_id == id.as_str());
    match entry {
        Some(k) if k.role == Role::Admin && k.revoked_at.is_none() => Ok((key, k.last_counter + 1)),
        Some(_) => bail!("the key in {} is not an active admin key of this ledger", path.display()),
        None => bail!("the key in {} is not enrolled in this ledger", path.display()),
    }
}

/// Creates `path` with mode 0600 before any secret byte is written; refuses to overwrite.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    if path.exists() {
        bail!("{} already exists; refusing to overwrite a key", path.display());
    }
    chipledger_ledger::write_private_file(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
