//! People's tokens for `chipledger serve`: server state beside the log, not in it. Only a
//! token's id, name, role, times and the SHA-256 of its secret are stored; the secret is shown
//! once, when the token is created. Revocation takes effect on the next request, in every process
//! that opens this data directory.

use chipledger_domain::auth::{hashes_equal, Token};
use chipledger_domain::records::Role;
use rand_core::CryptoRngCore;
use rusqlite::OptionalExtension;

use crate::{Error, Ledger};

/// A token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// What a token may be for: people are admins or auditors.
fn check_role(role: Role) -> Result<(), Error> {
    match role {
        Role::Admin | Role::Auditor => Ok(()),
        other => Err(Error::TokenRole { role: other.as_str() }),
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(TokenInfo, Vec<u8>)> {
    let role: String = r.get(2)?;
    let role = Role::parse(&role).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, format!("role {role:?}").into())
    })?;
    Ok((TokenInfo { id: r.get(0)?, name: r.get(1)?, role, created_at: r.get(3)?, revoked_at: r.get(4)? }, r.get(5)?))
}

const COLUMNS: &str = "id, name, role, created_at, revoked_at, secret_hash";

impl Ledger {
    /// Creates a token for a person; the returned [`Token`] is the only copy of its secret.
    pub fn create_token(
        &self,
        name: &str,
        role: Role,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(TokenInfo, Token), Error> {
        check_role(role)?;
        let name = name.trim();
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(Error::TokenName);
        }
        let token = Token::generate(rng);
        let now = self.now_unix();
        let w = self.writer_lock();
        w.conn.execute(
            "INSERT INTO tokens (id, name, role, created_at, revoked_at, secret_hash) VALUES (?1, ?2, ?3, ?4, NULL, ?5)",
            rusqlite::params![token.id(), name, role.as_str(), now, &token.secret_hash()[..]],
        )?;
        let info =
            TokenInfo { id: token.id().to_string(), name: name.to_string(), role, created_at: now, revoked_at: None };
        Ok((info, token))
    }

    /// Every token, oldest first, revoked ones included.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>, Error> {
        let conn = self.reader();
        let mut st = conn.prepare(&format!("SELECT {COLUMNS} FROM tokens ORDER BY created_at, id"))?;
        let rows = st.query_map([], row)?;
        Ok(rows.map(|r| r.map(|(info, _)| info)).collect::<Result<_, _>>()?)
    }

    /// Revokes a token by id; revoking twice is refused so a typo cannot pass for success.
    pub fn revoke_token(&self, id: &str) -> Result<TokenInfo, Error> {
        let now = self.now_unix();
        let w = self.writer_lock();
        let found = w.conn.query_row(&format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1"), [id], row).optional()?;
        let Some((mut info, _)) = found else {
            return Err(Error::NoSuchToken { id: id.chars().take(40).collect() });
        };
        if info.revoked_at.is_some() {
            return Err(Error::TokenAlreadyRevoked { id: info.id });
        }
        w.conn.execute("UPDATE tokens SET revoked_at = ?1 WHERE id = ?2", rusqlite::params![now, id])?;
        info.revoked_at = Some(now);
        Ok(info)
    }

    /// The live token `token` is, if any: unknown, revoked and wrong-secret tokens all give `None`.
    pub fn authenticate_token(&self, token: &Token) -> Result<Option<TokenInfo>, Error> {
        let conn = self.credentials_reader();
        let found =
            conn.query_row(&format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1"), [token.id()], row).optional()?;
        Ok(found.and_then(|(info, stored)| {
            let stored: [u8; 32] = stored.try_into().ok()?;
            (hashes_equal(&stored, &token.secret_hash()) && info.revoked_at.is_none()).then_some(info)
        }))
    }

    /// A live token by id (for sessions, which remember the id only).
    pub fn live_token(&self, id: &str) -> Result<Option<TokenInfo>, Error> {
        let conn = self.credentials_reader();
        let found = conn.query_row(&format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1"), [id], row).optional()?;
        Ok(found.map(|(info, _)| info).filter(|i| i.revoked_at.is_none()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is the point
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use chipledger_domain::log::FixedClock;
    use chipledger_domain::records::Role;

    use crate::Ledger;

    /// Credential checks read through a connection of their own: with every read connection
    /// held by long reads, a token is still checked at once (it once queued behind them).
    #[test]
    fn a_login_never_waits_behind_long_reads() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FixedClock(time::macros::datetime!(2026-12-01 00:00 UTC)));
        let (ledger, _) = Ledger::init(dir.path(), "t.example/log", clock, &mut rand_core::OsRng).unwrap();
        let (_, token) = ledger.create_token("alice", Role::Auditor, &mut rand_core::OsRng).unwrap();
        let ledger = Arc::new(ledger);
        let held: Vec<_> = ledger.readers.iter().map(|r| r.lock().unwrap()).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let checker = ledger.clone();
        std::thread::spawn(move || {
            let parsed = chipledger_domain::auth::Token::parse(&token.reveal()).unwrap();
            tx.send(checker.authenticate_token(&parsed).map(|t| t.is_some())).unwrap();
        });
        let answer = rx.recv_timeout(Duration::from_secs(10)).expect("the token check waited behind the readers");
        assert!(answer.unwrap());
        drop(held);
    }
}
