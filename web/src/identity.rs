//! Who is asking ([`Principal`]) and what each may read ([`Scope`]); browser sessions, the
//! session cookie and the CSRF check of form posts. The middleware that establishes a principal is
//! `auth`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, StatusCode};
use chipledger_domain::records::Role;
use rand_core::RngCore;

use crate::error::ApiError;

pub(crate) const SESSION_COOKIE: &str = "chipledger_session";

/// Who is asking.
#[derive(Clone, Debug)]
pub(crate) enum Principal {
    Anonymous,
    /// A person, by token or by a session made from one. `csrf` is the session's form token;
    /// requests with a bearer token carry no ambient credential and need none.
    Person {
        token_id: String,
        name: String,
        role: Role,
        csrf: Option<String>,
    },
    /// An enrolled agent, node, admin or auditor key that signed this request; `host` is the
    /// host an agent or node key was enrolled for.
    Key {
        key_id: String,
        role: Role,
        host: Option<String>,
    },
}

/// What a principal may read of the log beyond checkpoints, tiles and proofs: each role only
/// what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// People (any role) and admin or auditor keys: every record.
    Everything,
    /// An agent key: a GPU's attestations (to compare a new one with), and which GPUs report a
    /// serial. `host` is the host it was enrolled for.
    Agent { host: String },
    /// A node key: what placement reads — the inventory, attestations, acquisitions, and GPU
    /// histories (where an admin's resolution of a shared serial is).
    Node,
}

impl Principal {
    /// The rate-limit bucket and the name request logs use (never a secret).
    pub(crate) fn label(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".into(),
            Principal::Person { token_id, role, .. } => format!("token:{token_id}:{}", role.as_str()),
            Principal::Key { key_id, role, .. } => format!("key:{}:{}", &key_id[..16], role.as_str()),
        }
    }

    /// Reads of the log: anyone with a credential.
    /// What this principal may read (after [`Principal::may_read`]).
    pub(crate) fn scope(&self) -> Scope {
        match self {
            Principal::Key { role: Role::Agent, host, .. } => Scope::Agent { host: host.clone().unwrap_or_default() },
            // A landmark submits its proofs and checks their receipts; it reads no fleet.
            Principal::Key { role: Role::Landmark, host, .. } => {
                Scope::Agent { host: host.clone().unwrap_or_default() }
            }
            Principal::Key { role: Role::Node, .. } => Scope::Node,
            _ => Scope::Everything,
        }
    }

    /// Refuses what this principal's scope does not cover, saying what it may read instead.
    pub(crate) fn may_read_all(&self, what: &str) -> Result<(), ApiError> {
        match self.scope() {
            Scope::Everything => Ok(()),
            Scope::Agent { .. } => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "agent keys do not read {what}: they read checkpoints, tiles and proofs, a GPU's attestations \
                     (/api/v1/gpus/<uuid>/history) and which GPUs report a serial (/api/v1/inventory?serial=)"
                ),
            )),
            Scope::Node => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "node keys do not read {what}: they read checkpoints, tiles and proofs, the inventory, \
                     attestation and acquisition entries, acquisitions by serial, and GPU histories"
                ),
            )),
        }
    }

    pub(crate) fn may_read(&self) -> Result<(), ApiError> {
        match self {
            Principal::Anonymous => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this needs a credential: a person's token (Authorization: Bearer clt_…, from `chipledger tokens \
                 create`), a dashboard session (log in at /login), or a request signed by an enrolled key",
            )),
            _ => Ok(()),
        }
    }

    /// Dashboard pages, exports and metrics: people only.
    pub(crate) fn person(&self) -> Result<Role, ApiError> {
        match self {
            Principal::Person { role, .. } => Ok(*role),
            Principal::Key { .. } => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "keys append and read the log; the dashboard, exports and metrics are for people with a token",
            )),
            Principal::Anonymous => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this needs a person's token (Authorization: Bearer clt_…) or a dashboard session (log in at /login)",
            )),
        }
    }

    pub(crate) fn admin(&self) -> Result<(), ApiError> {
        match self.person()? {
            Role::Admin => Ok(()),
            _ => Err(ApiError::new(StatusCode::FORBIDDEN, "only an admin may do this; auditors read and export")),
        }
    }
}

/// Browser sessions, in memory: a restart logs everyone out.
#[derive(Debug)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    ttl: Duration,
}

#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub token_id: String,
    pub csrf: String,
    expires: Instant,
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

impl Sessions {
    pub(crate) fn new(ttl: Duration) -> Sessions {
        Sessions { map: Mutex::new(HashMap::new()), ttl }
    }

    /// A new session for a token; returns (session id, csrf token).
    pub(crate) fn create(&self, token_id: &str) -> (String, String) {
        let id = random_hex();
        let csrf = random_hex();
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| s.expires > now);
        map.insert(id.clone(), Session { token_id: token_id.to_string(), csrf: csrf.clone(), expires: now + self.ttl });
        (id, csrf)
    }

    pub(crate) fn get(&self, id: &str) -> Option<Session> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    pub(crate) fn remove(&self, id: &str) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Compares a form's CSRF token with the session's, for form posts made with a session cookie.
pub(crate) fn check_csrf(principal: &Principal, submitted: Option<&str>) -> Result<(), ApiError> {
    match principal {
        Principal::Person { csrf: Some(expected), .. } => {
            let ok =
                submitted.is_some_and(|s| chipledger_domain::auth::constant_time_eq(s.as_bytes(), expected.as_bytes()));
            if ok {
                Ok(())
            } else {
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "the form's CSRF token is missing or stale: reload the page and submit again",
                ))
            }
        }
        _ => Ok(()),
    }
}
