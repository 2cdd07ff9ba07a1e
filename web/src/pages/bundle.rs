//! The evidence bundle download: entries with their inclusion proofs and the checkpoint, for a
//! GPU, a host or the whole (bounded) log.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chipledger_domain::fingerprint::GpuUuid;
use serde::Deserialize;

use super::attachment;
use crate::error::{ledger_error, ApiError};
use crate::identity::Principal;
use crate::state::{blocking, AppState};

/// The most entries a whole-log bundle may hold when downloaded from the dashboard.
const MAX_WHOLE_LOG_BUNDLE: u64 = 50_000;

#[derive(Deserialize)]
pub(crate) struct BundleQuery {
    gpu: Option<String>,
    host: Option<String>,
}

pub(crate) async fn bundle(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<BundleQuery>,
) -> Response {
    if let Err(e) = p.person() {
        return e.into_response();
    }
    let gpu = match q.gpu.as_deref().filter(|g| !g.is_empty()).map(GpuUuid::parse).transpose() {
        Ok(g) => g,
        Err(e) => return ApiError::new(StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let host = q.host.filter(|h| !h.is_empty());
    // A bundle carries a proof per entry: the whole of a large log is a job for the CLI. A
    // host's bundle is cut from a scan of the whole log, so it is bounded alike; a GPU's by the
    // length of its history.
    if gpu.is_none() && s.ledger.size() > MAX_WHOLE_LOG_BUNDLE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the log holds {} entries, too many for one download or one host's scan: bundle a GPU (?gpu=), or run \
                 `chipledger ledger export` on the server",
                s.ledger.size()
            ),
        )
        .into_response();
    }
    let name = match (&gpu, &host) {
        (Some(g), _) => format!("chipledger-bundle-{g}.json"),
        (None, Some(h)) => format!("chipledger-bundle-{}.json", h.replace(|c: char| !c.is_ascii_alphanumeric(), "_")),
        (None, None) => "chipledger-bundle.json".into(),
    };
    let sel = chipledger_ledger::bundle::Selection { gpu, host, since: None, until: None };
    let ledger = s.ledger.clone();
    match blocking(move || {
        if let Some(g) = &sel.gpu {
            let filter = chipledger_ledger::EntryFilter {
                gpu: Some(g.clone()),
                limit: Some(MAX_WHOLE_LOG_BUNDLE + 1),
                ..Default::default()
            };
            if ledger.entries(&filter).map_err(ledger_error)?.len() as u64 > MAX_WHOLE_LOG_BUNDLE {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "this GPU's history holds more than {MAX_WHOLE_LOG_BUNDLE} entries, too many for one \
                         download: run `chipledger ledger export --gpu … --since …` on the server"
                    ),
                ));
            }
        }
        let b = ledger.export(&sel).map_err(ledger_error)?;
        serde_json::to_vec_pretty(&b).map_err(|e| ApiError::internal(e.to_string()))
    })
    .await
    {
        Ok(bytes) => attachment(bytes, "application/json", &name),
        Err(e) => e.into_response(),
    }
}
