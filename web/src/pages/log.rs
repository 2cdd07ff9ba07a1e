//! The log page: size, key, the checkpoint with its cosignatures, the last audit, the witnesses
//! and how far behind each is, and the enrolled keys.

use askama::Template;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::{page_access, render, Chrome};
use crate::error::ledger_error;
use crate::identity::Principal;
use crate::state::{blocking, AppState};

#[derive(Template)]
#[template(path = "log.html")]
struct LogPage {
    chrome: Option<Chrome>,
    origin: String,
    size: u64,
    log_key: String,
    audit: String,
    checkpoint: String,
    keys: Vec<(String, String, String, u64, String)>,
    /// Witnesses: name, URL, latest cosigned size, lag in entries, status.
    witnesses: Vec<(String, String, String, u64, String)>,
}

pub(crate) async fn log_status(State(s): State<AppState>, Extension(p): Extension<Principal>, uri: Uri) -> Response {
    let chrome = match page_access(&s, &p, &uri) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let st = s.clone();
    let result = blocking(move || {
        let (size, checkpoint) = st.ledger.cosigned_checkpoint().map_err(ledger_error)?;
        let witnesses = st
            .witnessing
            .snapshot()
            .into_iter()
            .map(|(name, p)| {
                let cosigned = p.cosigned.map_or_else(|| "nothing yet".to_string(), |c| c.to_string());
                let lag = size.saturating_sub(p.cosigned.unwrap_or(0));
                let status = p.error.map_or_else(|| "ok".to_string(), |e| format!("failing: {e}"));
                (name, p.url, cosigned, lag, status)
            })
            .collect();
        let keys = st
            .ledger
            .keys()
            .map_err(ledger_error)?
            .into_iter()
            .map(|k| {
                let status = match k.revoked_at {
                    Some(i) => format!("revoked at entry {i}"),
                    None => "active".into(),
                };
                (k.key_id, k.role.as_str().to_string(), k.host.unwrap_or_default(), k.enrolled_at, status)
            })
            .collect();
        Ok(LogPage {
            chrome: Some(chrome),
            origin: st.ledger.origin().into(),
            size,
            log_key: st.ledger.verifier_key().to_string(),
            audit: st.audit.describe(),
            checkpoint,
            keys,
            witnesses,
        })
    })
    .await;
    match result {
        Ok(page) => render(&page, StatusCode::OK),
        Err(e) => e.into_response(),
    }
}
