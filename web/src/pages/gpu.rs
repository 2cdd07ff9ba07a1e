//! One GPU's page: identity, classification under each rule version, where its host's location
//! proofs put it (with the map), and its timeline.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::rules::Verdict;

use super::{message, page_access, render, Chrome};
use crate::error::ApiError;
use crate::identity::Principal;
use crate::locations::{self, GpuLocation};
use crate::state::{blocking, AppState};
use crate::views::{self, FleetRow, TimelineItem};

#[derive(Template)]
#[template(path = "gpu.html")]
struct GpuPage {
    chrome: Option<Chrome>,
    origin: String,
    uuid: String,
    row: Option<FleetRow>,
    verdict: Option<Verdict>,
    location: Option<GpuLocation>,
    classes: Vec<(String, String, String)>,
    timeline: Vec<TimelineItem>,
    /// The timeline shows only the latest records of a GPU with a long history.
    truncated: bool,
}

pub(crate) async fn gpu(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    uri: Uri,
    Path(uuid): Path<String>,
) -> Response {
    let chrome = match page_access(&s, &p, &uri) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let Ok(uuid) = GpuUuid::parse(&uuid) else {
        return message(&s, Some(chrome), StatusCode::BAD_REQUEST, "No such GPU", "That is not a GPU UUID.");
    };
    let st = s.clone();
    let c = chrome.clone();
    let result = blocking(move || {
        let snap = st.fleet.get(&st.ledger)?;
        let (row, location) = match snap.gpu(uuid.as_str()) {
            Some((row, licensed)) => {
                let now = st.ledger.now();
                let facts = st.locations.facts(&st.ledger, snap.size, now)?;
                let (row, location) = locations::gpu_location(&facts, row, licensed, now)?;
                (Some(row), Some(location))
            }
            None => (None, None),
        };
        let verdict = snap.verdicts.get(uuid.as_str()).cloned();
        let (timeline, truncated) = views::timeline(&st.ledger, &uuid, row.as_ref().map(|r| r.serial.as_str()))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let classes = row.as_ref().map(|r| views::classifications(&r.sku)).unwrap_or_default();
        Ok(GpuPage {
            chrome: Some(c),
            origin: st.ledger.origin().into(),
            uuid: uuid.as_str().to_string(),
            row,
            verdict,
            location,
            classes,
            timeline,
            truncated,
        })
    })
    .await;
    match result {
        Ok(page) if page.row.is_none() && page.timeline.is_empty() => {
            message(&s, Some(chrome), StatusCode::NOT_FOUND, "No such GPU", "The log holds no record of this GPU.")
        }
        Ok(page) => render(&page, StatusCode::OK),
        Err(e) => e.into_response(),
    }
}
