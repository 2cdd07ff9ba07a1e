//! `chipledger tokens`: people's credentials for `chipledger serve` (the dashboard, exports,
//! metrics and log reads). Stored hashed beside the log; the secret is printed once.

use std::path::PathBuf;

use anyhow::Result;
use chipledger_domain::records::Role;

use crate::datadir;
use crate::output::{self, Format};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a token for a person and print it once.
    Create {
        /// Who holds it, e.g. "alice, external audit".
        #[arg(long)]
        name: String,
        /// auditor: read and export. admin: also record acquisitions from the dashboard.
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Revoke a token by id; sessions made with it end on their next request.
    Revoke { id: String },
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "admin" => Ok(Role::Admin),
        "auditor" => Ok(Role::Auditor),
        other => Err(format!("{other:?}: a person's token is `admin` or `auditor`")),
    }
}

pub fn run(data_dir: Option<PathBuf>, cmd: Command) -> Result<()> {
    let ledger = datadir::open(data_dir)?;
    match cmd {
        Command::Create { name, role } => {
            let (info, token) = ledger.create_token(&name, role, &mut rand_core::OsRng)?;
            eprintln!(
                "created {} token {} for {:?}; it is shown once, keep it secret:",
                role.as_str(),
                info.id,
                info.name
            );
            println!("{}", token.reveal());
        }
        Command::List { format } => {
            let tokens = ledger.tokens()?;
            match format {
                Format::Json => output::print_json(&tokens)?,
                _ => {
                    let mut t = output::table(&["id", "name", "role", "created (UTC)", "status"]);
                    for k in &tokens {
                        let when = |s: i64| {
                            time::OffsetDateTime::from_unix_timestamp(s)
                                .ok()
                                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                                .unwrap_or_default()
                        };
                        t.add_row(vec![
                            k.id.clone(),
                            k.name.clone(),
                            k.role.as_str().to_string(),
                            when(k.created_at),
                            k.revoked_at.map(|r| format!("revoked {}", when(r))).unwrap_or_else(|| "active".into()),
                        ]);
                    }
                    println!("{t}");
                }
            }
        }
        Command::Revoke { id } => {
            let info = ledger.revoke_token(id.trim())?;
            println!("revoked token {} ({:?}, {})", info.id, info.name, info.role.as_str());
        }
    }
    Ok(())
}
