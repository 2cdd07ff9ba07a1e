//! The runs page and one run's provenance with its checks.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::{attachment, message, page_access, render, Chrome};
use crate::error::{ledger_error, ApiError};
use crate::identity::Principal;
use crate::state::{blocking, AppState};
use crate::views::{self, RunRow, RunView};

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    chrome: Option<Chrome>,
    origin: String,
    runs: Vec<RunRow>,
}

pub(crate) async fn runs(State(s): State<AppState>, Extension(p): Extension<Principal>, uri: Uri) -> Response {
    let chrome = match page_access(&s, &p, &uri) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let ledger = s.ledger.clone();
    match blocking(move || views::runs(&ledger, 500).map_err(ledger_error)).await {
        Ok(runs) => render(&RunsPage { chrome: Some(chrome), origin: s.ledger.origin().into(), runs }, StatusCode::OK),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn runs_json(State(s): State<AppState>, Extension(p): Extension<Principal>) -> Response {
    if let Err(e) = p.person() {
        return e.into_response();
    }
    let ledger = s.ledger.clone();
    match blocking(move || views::runs(&ledger, 500).map_err(ledger_error)).await {
        Ok(runs) => match serde_json::to_vec_pretty(&runs) {
            Ok(b) => attachment(b, "application/json", "runs.json"),
            Err(e) => ApiError::internal(e.to_string()).into_response(),
        },
        Err(e) => e.into_response(),
    }
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    chrome: Option<Chrome>,
    origin: String,
    v: RunView,
}

pub(crate) async fn run(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    uri: Uri,
    Path(index): Path<String>,
) -> Response {
    let chrome = match page_access(&s, &p, &uri) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let Ok(index) = index.parse::<u64>() else {
        return message(&s, Some(chrome), StatusCode::BAD_REQUEST, "No such run", "A run is named by its log index.");
    };
    let ledger = s.ledger.clone();
    match blocking(move || views::run_view(&ledger, index).map_err(|e| ApiError::internal(e.to_string()))).await {
        Ok(Some(v)) => render(&RunPage { chrome: Some(chrome), origin: s.ledger.origin().into(), v }, StatusCode::OK),
        Ok(None) => message(&s, Some(chrome), StatusCode::NOT_FOUND, "No such run", "No run report at that log index."),
        Err(e) => e.into_response(),
    }
}
