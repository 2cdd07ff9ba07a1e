//! The log's JSON API under `/api/v1/` (append, entries, proofs, histories, acquisitions,
//! inventory, runs) and the C2SP tlog-tiles reads (`/checkpoint`, `/tile/…`).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chipledger_client::wire::{Hashes, Problem};
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::log::{AsOf, LogClient};
use chipledger_domain::records::RecordKind;
use chipledger_ledger::Error as LedgerError;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{domain_error, ledger_error, problem, ApiError};
use crate::identity::{Principal, Scope};
use crate::limits::Peer;
use crate::state::{blocking, AppState};

pub(crate) async fn append(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Response {
    // Each envelope carries its own signature, so the caller's credential vouches for none of
    // them: every caller pays for the bytes it makes the server parse — by principal, and a
    // caller that proved none by address.
    let bucket = match &p {
        Principal::Anonymous => peer.0.clone(),
        other => other.label(),
    };
    if let Err(wait) = s.append_bytes.take_n(&bucket, body.len() as f64) {
        let mut r = problem(StatusCode::TOO_MANY_REQUESTS, "too many envelope bytes from this caller; slow down");
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let envelopes: Vec<Box<RawValue>> = match serde_json::from_slice::<Vec<Box<RawValue>>>(&body) {
        Ok(v) => v,
        Err(e) => match serde_json::from_slice::<Box<RawValue>>(&body) {
            Ok(one) if one.get().trim_start().starts_with('{') => vec![one],
            _ => {
                return problem(StatusCode::BAD_REQUEST, format!("the body is not a JSON array of DSSE envelopes: {e}"))
            }
        },
    };
    if envelopes.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "no envelopes in the request");
    }
    if envelopes.len() > s.config.max_batch {
        return problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} envelopes; at most {} per request", envelopes.len(), s.config.max_batch),
        );
    }
    // Each envelope is stored and hashed exactly as it appears in the request.
    let raw: Vec<Vec<u8>> = envelopes.iter().map(|e| e.get().as_bytes().to_vec()).collect();
    let ledger = s.ledger.clone();
    match blocking(move || Ok(ledger.append(&raw))).await {
        Ok(Ok(receipts)) => Json(receipts).into_response(),
        // Why an envelope was refused names keys, their enrolment and their last counters: a
        // caller that proved no identity learns which envelope and what kind of problem, the
        // server log the rest.
        Ok(Err(LedgerError::Rejected { position, reason })) if matches!(p, Principal::Anonymous) => {
            tracing::info!(position, %reason, "an anonymous append was refused");
            let status = match reason {
                chipledger_ledger::Rejection::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let body = Problem {
                error: format!(
                    "envelope {position} was refused: {}; sign the request with an enrolled key for the details",
                    reason.for_anyone()
                ),
                position: Some(position),
            };
            (status, Json(body)).into_response()
        }
        Ok(Err(e)) => ledger_error(e).into_response(),
        Err(r) => r.into_response(),
    }
}

pub(crate) async fn list_unsupported() -> Response {
    problem(StatusCode::METHOD_NOT_ALLOWED, "POST envelopes here; read one entry at /api/v1/entries/<index>")
}

pub(crate) async fn checkpoint(State(s): State<AppState>) -> Response {
    let ledger = s.ledger.clone();
    // With the witnesses' cosignatures it has: readers that need a quorum check it.
    match blocking(move || ledger.cosigned_checkpoint().map_err(ledger_error)).await {
        Ok((_, note)) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "public, no-cache")], note)
                .into_response()
        }
        Err(r) => r.into_response(),
    }
}

/// `GET /log-keys`: the log's key rotations with inclusion proofs in the latest checkpoint —
/// public, so a reader pinning a retired key can follow the announcement it signed.
pub(crate) async fn log_keys(State(s): State<AppState>) -> Response {
    let ledger = s.ledger.clone();
    let result = blocking(move || -> Result<chipledger_client::wire::LogKeys, ApiError> {
        let (size, checkpoint) = ledger.cosigned_checkpoint().map_err(ledger_error)?;
        let mut rotations = Vec::new();
        for (index, _) in ledger.rotation_records().map_err(ledger_error)? {
            if index >= size {
                continue;
            }
            let envelope = String::from_utf8(ledger.envelope(index).map_err(ledger_error)?)
                .map_err(|_| ApiError::internal("a stored envelope is not UTF-8"))?;
            let inclusion_proof = ledger.inclusion_proof(index, size).map_err(ledger_error)?;
            rotations.push(chipledger_client::wire::PublishedRotation { index, envelope, inclusion_proof });
        }
        Ok(chipledger_client::wire::LogKeys { checkpoint, rotations })
    })
    .await;
    match result {
        Ok(body) => ([(header::CACHE_CONTROL, "public, no-cache")], axum::Json(body)).into_response(),
        Err(r) => r.into_response(),
    }
}

fn tile_response(bytes: Vec<u8>, full: bool, public: bool) -> Response {
    // Full tiles never change; partial ones grow until they are full. Hash tiles are public: any
    // cache may keep them. Entry bundles need a credential: only the caller's own cache may.
    let cache = match (public, full) {
        (true, true) => "public, max-age=31536000, immutable",
        (true, false) => "public, no-cache",
        (false, true) => "private, max-age=31536000, immutable",
        (false, false) => "private, no-cache",
    };
    let mut r = bytes.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

const BAD_TILE: &str = "a tile is /tile/<L>/<N> or /tile/<L>/<N>.p/<W> with 1 ≤ W ≤ 255, N in the C2SP form \
                        (x001/x234/067) or plain decimal";

pub(crate) async fn serve_tile(s: AppState, level: Option<u8>, path: String) -> Response {
    let Some((index, width)) = chipledger_domain::tiles::parse_tile_index_path(&path) else {
        return problem(StatusCode::BAD_REQUEST, BAD_TILE);
    };
    let ledger = s.ledger.clone();
    let result = blocking(move || {
        match level {
            Some(l) => ledger.tile(l, index, width),
            None => ledger.entry_bundle(index, width),
        }
        .map_err(ledger_error)
    })
    .await;
    match result {
        Ok(b) => tile_response(b, width == 256, level.is_some()),
        Err(r) => r.into_response(),
    }
}

pub(crate) async fn tile(State(s): State<AppState>, Path((level, path)): Path<(u8, String)>) -> Response {
    serve_tile(s, Some(level), path).await
}

pub(crate) async fn entry_bundle(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(path): Path<String>,
) -> Response {
    if let Err(e) = p.may_read_all("entry bundles (every record)") {
        return e.into_response();
    }
    serve_tile(s, None, path).await
}

pub(crate) async fn entry(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(index): Path<u64>,
) -> Response {
    let scope = p.scope();
    if let Scope::Agent { .. } = scope {
        return p.may_read_all("entries by index").into_response();
    }
    let ledger = s.ledger.clone();
    match blocking(move || LogClient::entry(ledger.as_ref(), index).map_err(domain_error)).await {
        // A node reads the attestations and acquisitions placement judges, nothing else.
        Ok(e) if scope == Scope::Node && !matches!(e.kind, RecordKind::GpuAttestation | RecordKind::Acquisition) => {
            p.may_read_all(&format!("{} entries", e.kind.predicate_type())).into_response()
        }
        Ok(e) => Json(e).into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct InclusionQuery {
    index: u64,
    size: Option<u64>,
}

pub(crate) async fn inclusion(State(s): State<AppState>, Query(q): Query<InclusionQuery>) -> Response {
    let ledger = s.ledger.clone();
    match blocking(move || {
        let size = q.size.unwrap_or_else(|| ledger.size());
        ledger.inclusion_proof(q.index, size).map_err(ledger_error)
    })
    .await
    {
        Ok(hashes) => Json(Hashes { hashes }).into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct ConsistencyQuery {
    old: u64,
    new: Option<u64>,
}

pub(crate) async fn consistency(State(s): State<AppState>, Query(q): Query<ConsistencyQuery>) -> Response {
    let ledger = s.ledger.clone();
    match blocking(move || {
        let new = q.new.unwrap_or_else(|| ledger.size());
        ledger.consistency_proof(q.old, new).map_err(ledger_error)
    })
    .await
    {
        Ok(hashes) => Json(Hashes { hashes }).into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct HistoryQuery {
    latest: Option<usize>,
    after: Option<u64>,
}

/// The most entries `?latest=` asks of a GPU's history at once (as many as a page).
const MAX_HISTORY: usize = 1_000;
/// A page of a whole history: at most this many entries…
const HISTORY_PAGE: u64 = 1_000;
/// …and no more envelope bytes than this past its first entry (entries are up to 64 KiB each).
const HISTORY_PAGE_BYTES: usize = 8 << 20;

pub(crate) async fn history(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(uuid): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let uuid = match GpuUuid::parse(&uuid) {
        Ok(u) => u,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if q.latest.is_some_and(|n| n == 0 || n > MAX_HISTORY) {
        return problem(StatusCode::BAD_REQUEST, format!("latest is 1 to {MAX_HISTORY} entries"));
    }
    if q.latest.is_some() && q.after.is_some() {
        return problem(StatusCode::BAD_REQUEST, "ask for the latest entries or for those after an index, not both");
    }
    let scope = p.scope();
    let ledger = s.ledger.clone();
    let path_uuid = uuid.clone();
    let (latest, after) = (q.latest, q.after);
    let page = blocking(move || scoped_history(&ledger, &uuid, &scope, latest, after)).await;
    let (v, next) = match page {
        Ok(page) => page,
        Err(r) => return r.into_response(),
    };
    let mut r = Json(v).into_response();
    if let Some(last) = next {
        let link = format!("</api/v1/gpus/{path_uuid}/history?after={last}>; rel=\"next\"");
        if let Ok(v) = HeaderValue::from_str(&link) {
            r.headers_mut().insert(header::LINK, v);
        }
    }
    r
}

/// What `scope` reads of a GPU's history — the newest `latest` entries, or a page after the
/// index `after` — and the cursor of the next page, if any. An agent reads the GPU's
/// attestations (every host's: a GPU seen on two hosts, or moved, is what it compares a new
/// one with); a node also the admin's resolutions of serials; neither its runs or other notes.
/// Each kind is selected in the query, before any limit: entries a caller may not read (a
/// flood of runs naming the GPU) can neither push the ones it may out of its window nor show
/// through a page's cursor. Without `latest`, the whole history in pages, never silently cut.
#[allow(clippy::type_complexity)]
fn scoped_history(
    ledger: &chipledger_ledger::Ledger,
    uuid: &GpuUuid,
    scope: &Scope,
    latest: Option<usize>,
    after: Option<u64>,
) -> Result<(Vec<chipledger_domain::log::EntrySummary>, Option<u64>), ApiError> {
    let kinds: &[Option<RecordKind>] = match scope {
        Scope::Everything => &[None],
        Scope::Agent { .. } => &[Some(RecordKind::GpuAttestation)],
        Scope::Node => &[Some(RecordKind::GpuAttestation), Some(RecordKind::Annotation)],
    };
    let readable = |e: &chipledger_domain::log::EntrySummary| match scope {
        Scope::Node => is_attestation(e) || is_resolution(e),
        _ => true,
    };
    let filter = |kind: Option<RecordKind>| chipledger_ledger::EntryFilter {
        gpu: Some(uuid.clone()),
        kind,
        ..Default::default()
    };
    if let Some(n) = latest {
        let mut rows = Vec::new();
        for kind in kinds {
            let f = chipledger_ledger::EntryFilter { last: Some(n as u64), ..filter(*kind) };
            rows.extend(ledger.entries(&f).map_err(ledger_error)?.into_iter().filter(readable));
        }
        rows.sort_by_key(|e| e.index);
        let surplus = rows.len().saturating_sub(n);
        rows.drain(..surplus);
        return Ok((rows, None));
    }
    // Indexes past i64 are past any log: clamped, not wrapped.
    let from = after.map_or(0, |a| a.saturating_add(1)).min(i64::MAX as u64);
    let mut rows = Vec::new();
    // Where every kind's rows are known complete: below the last of any kind that filled a page.
    let mut complete_to: Option<u64> = None;
    for kind in kinds {
        let f = chipledger_ledger::EntryFilter { from: Some(from), limit: Some(HISTORY_PAGE + 1), ..filter(*kind) };
        let mut v = ledger.entries(&f).map_err(ledger_error)?;
        if v.len() as u64 > HISTORY_PAGE {
            v.truncate(HISTORY_PAGE as usize);
            let last = v.last().map_or(from, |e| e.index);
            complete_to = Some(complete_to.map_or(last, |c| c.min(last)));
        }
        rows.extend(v);
    }
    rows.sort_by_key(|e| e.index);
    if let Some(c) = complete_to {
        rows.retain(|e| e.index <= c);
    }
    rows.retain(readable);
    let mut bytes = 0;
    let cut = rows.iter().position(|e| {
        bytes += e.envelope.len();
        bytes > HISTORY_PAGE_BYTES
    });
    let next = match cut.map(|at| at.max(1)) {
        Some(at) if at < rows.len() => {
            rows.truncate(at);
            rows.last().map(|e| e.index)
        }
        _ => complete_to,
    };
    Ok((rows, next))
}

fn is_attestation(e: &chipledger_domain::log::EntrySummary) -> bool {
    e.kind == RecordKind::GpuAttestation
}

/// Whether an entry is an annotation resolving which GPU holds a serial.
fn is_resolution(e: &chipledger_domain::log::EntrySummary) -> bool {
    e.kind == RecordKind::Annotation
        && chipledger_domain::dsse::Envelope::from_json(e.envelope.as_bytes())
            .and_then(|env| env.payload_bytes())
            .and_then(|p| chipledger_domain::records::Record::from_payload(&p))
            .is_ok_and(
                |r| matches!(r, chipledger_domain::records::Record::Annotation(a) if a.resolves_serial.is_some()),
            )
}

#[derive(Deserialize)]
pub(crate) struct SerialQuery {
    serial: String,
}

pub(crate) async fn acquisitions(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<SerialQuery>,
) -> Response {
    if matches!(p.scope(), Scope::Agent { .. }) {
        return p.may_read_all("acquisition records").into_response();
    }
    let ledger = s.ledger.clone();
    match blocking(move || LogClient::acquisitions(ledger.as_ref(), &q.serial).map_err(domain_error)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct RunsQuery {
    limit: Option<u64>,
}

/// The newest run reports (default 100, at most 1,000), newest first.
pub(crate) async fn runs(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<RunsQuery>,
) -> Response {
    if let Err(e) = p.may_read_all("run reports") {
        return e.into_response();
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let ledger = s.ledger.clone();
    match blocking(move || crate::views::runs(&ledger, limit).map_err(ledger_error)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct InventoryQuery {
    size: Option<u64>,
    time: Option<String>,
    serial: Option<String>,
}

pub(crate) async fn inventory(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<InventoryQuery>,
) -> Response {
    if matches!(p.scope(), Scope::Agent { .. }) && q.serial.is_none() {
        return p.may_read_all("the whole inventory").into_response();
    }
    if let Some(serial) = q.serial {
        if q.size.is_some() || q.time.is_some() {
            return problem(StatusCode::BAD_REQUEST, "serial reads the latest state; give it without size or time");
        }
        let ledger = s.ledger.clone();
        return match blocking(move || ledger.inventory_by_serial(&serial).map_err(ledger_error)).await {
            Ok(v) => Json(v).into_response(),
            Err(r) => r.into_response(),
        };
    }
    let as_of = match (q.size, q.time) {
        (Some(n), None) => AsOf::Size(n),
        (None, Some(t)) => match time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339) {
            Ok(t) => AsOf::Time(t),
            Err(e) => return problem(StatusCode::BAD_REQUEST, format!("time {t:?} is not RFC 3339: {e}")),
        },
        (None, None) => AsOf::Latest,
        (Some(_), Some(_)) => return problem(StatusCode::BAD_REQUEST, "give size or time, not both"),
    };
    let ledger = s.ledger.clone();
    match blocking(move || ledger.inventory(as_of).map_err(ledger_error)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct LocationQuery {
    host: Option<String>,
    /// RFC 3339: only proofs appended at or after it (default: all).
    since: Option<String>,
}

/// How far back one read of location proofs may reach (a policy's `max_age` is at most 30 days).
const MAX_LOCATION_WINDOW_DAYS: i64 = 31;

/// Agents (and landmarks) do not read where hosts are.
fn may_read_locations(p: &Principal) -> Result<(), ApiError> {
    match p.scope() {
        Scope::Agent { .. } => p.may_read_all("location proofs or enrolled sites"),
        Scope::Everything | Scope::Node => Ok(()),
    }
}

/// The location proofs of one host (or every host), appended since a time, in log order: the
/// newest `MAX_LOCATION_PROOFS`.
pub(crate) async fn location_proofs(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<LocationQuery>,
) -> Response {
    if let Err(e) = may_read_locations(&p) {
        return e.into_response();
    }
    // Readers want recent proofs: a window bounds what one request makes the server read.
    let earliest = s.ledger.now() - time::Duration::days(MAX_LOCATION_WINDOW_DAYS);
    let since = match q.since {
        None => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("give since (RFC 3339, within the last {MAX_LOCATION_WINDOW_DAYS} days)"),
            )
        }
        Some(t) => match time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339) {
            Ok(t) if t >= earliest => t,
            Ok(_) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    format!("since {t:?} is more than {MAX_LOCATION_WINDOW_DAYS} days ago"),
                )
            }
            Err(e) => return problem(StatusCode::BAD_REQUEST, format!("since {t:?} is not RFC 3339: {e}")),
        },
    };
    if let Some(h) = &q.host {
        if let Err(reason) = chipledger_domain::location_proof::check_name("host", h) {
            return problem(StatusCode::BAD_REQUEST, reason);
        }
    }
    let ledger = s.ledger.clone();
    match blocking(move || LogClient::location_proofs(ledger.as_ref(), q.host.as_deref(), since).map_err(domain_error))
        .await
    {
        Ok(v) => Json(v).into_response(),
        Err(r) => r.into_response(),
    }
}

/// The enrolled keys with a site: landmarks and the hosts that declared one.
pub(crate) async fn sites(State(s): State<AppState>, Extension(p): Extension<Principal>) -> Response {
    if let Err(e) = may_read_locations(&p) {
        return e.into_response();
    }
    let ledger = s.ledger.clone();
    match blocking(move || LogClient::sites(ledger.as_ref()).map_err(domain_error)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r.into_response(),
    }
}
