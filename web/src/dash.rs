//! The auditor dashboard: server-rendered pages (askama), exports, the evidence bundle and the
//! admin's acquisition form. Pages need a person (token or session); the form needs an admin and
//! the session's CSRF token. Everything works without JavaScript; the charts are inline SVG.

use std::cmp::Ordering;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;
use chipledger_domain::catalog::Catalog;
use chipledger_domain::country::Country;
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::identify::Severity;
use chipledger_domain::records::{sign_record, Acquisition, Role, FORMAT_VERSION};
use chipledger_domain::rules::Verdict;
use serde::{Deserialize, Serialize};

use crate::api::{blocking, ledger_error, ApiError, AppState};
use crate::auth::{check_csrf, Principal, SESSION_COOKIE};
use crate::views::{self, FleetRow, RunRow, RunView, TimelineItem};

/// Rows per fleet page.
const PER_PAGE: usize = 500;

/// The most entries a whole-log bundle may hold when downloaded from the dashboard.
const MAX_WHOLE_LOG_BUNDLE: u64 = 50_000;

/// The signed-in person, for the page header.
#[derive(Debug, Clone)]
pub(crate) struct Chrome {
    pub name: String,
    pub role: String,
    pub is_admin: bool,
    pub csrf: String,
}

fn render(t: &impl Template, status: StatusCode) -> Response {
    match t.render() {
        Ok(html) => (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page");
            ApiError::internal("the page could not be rendered").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    chrome: Option<Chrome>,
    origin: String,
    title: String,
    message: String,
}

fn message(s: &AppState, chrome: Option<Chrome>, status: StatusCode, title: &str, msg: &str) -> Response {
    let page = MessagePage { chrome, origin: s.ledger.origin().to_string(), title: title.into(), message: msg.into() };
    render(&page, status)
}

/// The person behind a page request, or the response that sends anyone else away: anonymous
/// callers to the login page, keys to a 403.
fn page_access(s: &AppState, p: &Principal, uri: &Uri) -> Result<Chrome, Box<Response>> {
    match p {
        Principal::Person { name, role, csrf, .. } => Ok(Chrome {
            name: name.clone(),
            role: role.as_str().to_string(),
            is_admin: *role == Role::Admin,
            csrf: csrf.clone().unwrap_or_default(),
        }),
        Principal::Anonymous => {
            let next = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let q = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
            Err(Box::new(Redirect::to(&format!("/login?{q}")).into_response()))
        }
        Principal::Key { .. } => Err(Box::new(message(
            s,
            None,
            StatusCode::FORBIDDEN,
            "Not for keys",
            "Keys append and read the log; the dashboard is for people with a token.",
        ))),
    }
}

// ---- login / logout --------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Option<Chrome>,
    origin: String,
    error: Option<String>,
    next: String,
}

#[derive(Deserialize, Default)]
pub(crate) struct NextQuery {
    #[serde(default)]
    next: String,
}

/// Where to go after logging in: a path on this server, or `/`. Browsers drop tabs, CR and LF
/// from a URL and read a backslash as `/`, so `/\t/evil.example` would leave the site: only visible
/// ASCII without a backslash is kept, and never a second leading slash.
pub(crate) fn safe_next(next: &str) -> String {
    let visible = next.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'\\');
    if visible && next.starts_with('/') && !next.starts_with("//") && next.len() <= 2048 {
        next.to_string()
    } else {
        "/".to_string()
    }
}

pub(crate) async fn login_page(State(s): State<AppState>, Query(q): Query<NextQuery>) -> Response {
    let page = LoginPage { chrome: None, origin: s.ledger.origin().into(), error: None, next: safe_next(&q.next) };
    render(&page, StatusCode::OK)
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: String,
}

pub(crate) async fn login(State(s): State<AppState>, Form(f): Form<LoginForm>) -> Response {
    let next = safe_next(&f.next);
    let fail = |s: &AppState, msg: &str| {
        let page =
            LoginPage { chrome: None, origin: s.ledger.origin().into(), error: Some(msg.into()), next: next.clone() };
        render(&page, StatusCode::UNAUTHORIZED)
    };
    let Ok(token) = chipledger_domain::auth::Token::parse(&f.token) else {
        return fail(&s, "That is not a chipledger token (clt_<id>_<secret>).");
    };
    let ledger = s.ledger.clone();
    let info = match blocking(move || ledger.authenticate_token(&token).map_err(ledger_error)).await {
        Ok(Some(i)) => i,
        Ok(None) => return fail(&s, "The token is not valid: unknown, revoked, or mistyped."),
        Err(e) => return e.into_response(),
    };
    let (id, _) = s.sessions.create(&info.id);
    tracing::info!(token = %info.id, role = info.role.as_str(), "dashboard login");
    let secure = if s.config.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        s.config.session_ttl.as_secs()
    );
    let mut r = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: Option<String>,
}

pub(crate) async fn logout(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: axum::http::HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(e) = check_csrf(&p, f.csrf.as_deref()) {
        return e.into_response();
    }
    if let Some(id) = crate::auth::cookie(&headers, SESSION_COOKIE) {
        s.sessions.remove(id);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("chipledger_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    r
}

// ---- fleet -----------------------------------------------------------------------------------

/// The fleet list's filter, sort and page; exports take the same parameters.
#[derive(Deserialize, Serialize, Default, Clone, Debug)]
pub(crate) struct FleetQuery {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub q: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sku: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub class: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub verdict: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub anomalies: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sort: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<usize>,
}

impl FleetQuery {
    fn encode(&self) -> String {
        serde_urlencoded::to_string(self).unwrap_or_default()
    }

    fn matches(&self, r: &FleetRow) -> bool {
        let q = self.q.trim().to_ascii_lowercase();
        (q.is_empty()
            || r.serial.to_ascii_lowercase().contains(&q)
            || r.uuid.to_ascii_lowercase().contains(&q)
            || r.host.to_ascii_lowercase().contains(&q))
            && (self.sku.is_empty() || r.sku == self.sku)
            && (self.class.is_empty() || r.class_2023 == self.class)
            && (self.verdict.is_empty() || r.verdict == self.verdict)
            && (self.anomalies != "yes" || !r.anomalies.is_empty())
    }

    fn compare(&self, a: &FleetRow, b: &FleetRow) -> Ordering {
        let primary = match self.sort.as_str() {
            "sku" => a.sku.cmp(&b.sku),
            "serial" => a.serial.cmp(&b.serial),
            "uuid" => a.uuid.cmp(&b.uuid),
            "attested" => a.observed_at.cmp(&b.observed_at),
            "class" => a.class_2023.cmp(&b.class_2023),
            "verdict" => a.verdict.cmp(&b.verdict),
            "anomalies" => a.anomalies.len().cmp(&b.anomalies.len()),
            _ => a.host.cmp(&b.host),
        };
        let o = primary.then_with(|| a.host.cmp(&b.host)).then_with(|| a.uuid.cmp(&b.uuid));
        if self.dir == "desc" {
            o.reverse()
        } else {
            o
        }
    }

    /// The matching rows, sorted: the whole list, across pages.
    pub(crate) fn select<'a>(&self, rows: &'a [FleetRow]) -> Vec<&'a FleetRow> {
        let mut out: Vec<&FleetRow> = rows.iter().filter(|r| self.matches(r)).collect();
        out.sort_by(|a, b| self.compare(a, b));
        out
    }
}

struct Bar {
    label: String,
    count: usize,
    width: usize,
    y: usize,
}

struct Chart {
    title: String,
    height: usize,
    bars: Vec<Bar>,
}

fn chart(title: &str, rows: &[&FleetRow], key: impl Fn(&FleetRow) -> &str) -> Chart {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for r in rows {
        *counts.entry(key(r)).or_default() += 1;
    }
    let max = counts.values().copied().max().unwrap_or(1).max(1);
    let bars: Vec<Bar> = counts
        .into_iter()
        .enumerate()
        .map(|(i, (label, count))| Bar {
            label: label.to_string(),
            count,
            width: (count * 200).div_ceil(max),
            y: i * 20,
        })
        .collect();
    Chart { title: title.into(), height: bars.len() * 20 + 4, bars }
}

struct Header {
    title: &'static str,
    link: String,
    arrow: &'static str,
}

struct ShownRow<'a> {
    row: &'a FleetRow,
    age: String,
    stale: bool,
    css: &'static str,
}

#[derive(Template)]
#[template(path = "fleet.html")]
struct FleetPage<'a> {
    chrome: Option<Chrome>,
    origin: String,
    size: u64,
    q: FleetQuery,
    query: String,
    skus: Vec<String>,
    classes: Vec<String>,
    verdicts: Vec<String>,
    charts: Vec<Chart>,
    headers: Vec<Header>,
    rows: Vec<ShownRow<'a>>,
    total: usize,
    first: usize,
    last: usize,
    prev: Option<String>,
    next: Option<String>,
}

fn distinct(rows: &[FleetRow], key: impl Fn(&FleetRow) -> &str) -> Vec<String> {
    let set: std::collections::BTreeSet<&str> = rows.iter().map(key).collect();
    set.into_iter().map(str::to_string).collect()
}

/// Renders the fleet page for `q`.
pub(crate) fn fleet_html(s: &AppState, chrome: Option<Chrome>, q: FleetQuery) -> Result<String, ApiError> {
    let snap = s.fleet.get(&s.ledger)?;
    let now = s.ledger.now();
    let max_age = s.config.fresh_for;
    let selected = q.select(&snap.rows);
    let total = selected.len();
    let pages = total.div_ceil(PER_PAGE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let start = (page - 1) * PER_PAGE;
    let shown: Vec<ShownRow> = selected
        .iter()
        .skip(start)
        .take(PER_PAGE)
        .map(|r| ShownRow {
            row: r,
            age: views::age(now, r.observed_at),
            stale: now - r.observed_at > max_age,
            css: match r.worst {
                Some(Severity::Danger) => "danger",
                Some(Severity::Warning) => "warning",
                _ => "",
            },
        })
        .collect();
    let with_page = |p: usize| FleetQuery { page: Some(p), ..q.clone() }.encode();
    let export = FleetQuery { page: None, ..q.clone() };
    let columns = [
        ("Host", "host"),
        ("SKU", "sku"),
        ("Serial", "serial"),
        ("UUID", "uuid"),
        ("Last attested", "attested"),
        ("Source", "source"),
        ("Class (Oct 2023)", "class"),
        ("Acquisition", "verdict"),
        ("Anomalies", "anomalies"),
    ];
    let current = if q.sort.is_empty() { "host" } else { q.sort.as_str() };
    let headers = columns
        .iter()
        .map(|(title, key)| {
            let (dir, arrow) = match (*key == current, q.dir == "desc") {
                (true, false) => ("desc", " ▲"),
                (true, true) => ("asc", " ▼"),
                (false, _) => ("asc", ""),
            };
            let link = FleetQuery { sort: key.to_string(), dir: dir.into(), page: None, ..q.clone() }.encode();
            Header { title, link, arrow }
        })
        .collect();
    let page_html = FleetPage {
        chrome,
        origin: s.ledger.origin().into(),
        size: snap.size,
        query: export.encode(),
        skus: distinct(&snap.rows, |r| &r.sku),
        classes: distinct(&snap.rows, |r| &r.class_2023),
        verdicts: distinct(&snap.rows, |r| &r.verdict),
        charts: vec![
            chart("GPUs by SKU", &selected, |r| &r.sku),
            chart("GPUs by export class (Oct 2023)", &selected, |r| &r.class_2023),
        ],
        headers,
        total,
        first: start + 1,
        last: start + shown.len(),
        rows: shown,
        prev: (page > 1).then(|| with_page(page - 1)),
        next: (page < pages).then(|| with_page(page + 1)),
        q,
    };
    page_html.render().map_err(|e| {
        tracing::error!(error = %e, "rendering the fleet");
        ApiError::internal("the page could not be rendered")
    })
}

pub(crate) async fn fleet(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    uri: Uri,
    Query(q): Query<FleetQuery>,
) -> Response {
    let chrome = match page_access(&s, &p, &uri) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let st = s.clone();
    match blocking(move || fleet_html(&st, Some(chrome), q)).await {
        Ok(html) => ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(e) => e.into_response(),
    }
}

fn attachment(body: Vec<u8>, content_type: &'static str, filename: &str) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) async fn fleet_csv(s: State<AppState>, p: Extension<Principal>, q: Query<FleetQuery>) -> Response {
    fleet_export(s, p, q, false).await
}

pub(crate) async fn fleet_json(s: State<AppState>, p: Extension<Principal>, q: Query<FleetQuery>) -> Response {
    fleet_export(s, p, q, true).await
}

async fn fleet_export(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<FleetQuery>,
    json: bool,
) -> Response {
    if let Err(e) = p.person() {
        return e.into_response();
    }
    let st = s.clone();
    let result = blocking(move || {
        let snap = st.fleet.get(&st.ledger)?;
        let rows = q.select(&snap.rows);
        match json {
            true => serde_json::to_vec_pretty(&rows)
                .map(|b| (b, "application/json", format!("fleet-{}.json", snap.size)))
                .map_err(|e| ApiError::internal(e.to_string())),
            false => {
                let mut w = csv::Writer::from_writer(Vec::new());
                let mut out =
                    w.write_record(chipledger_domain::fleet::CSV_HEADER).map_err(|e| ApiError::internal(e.to_string()));
                for r in &rows {
                    out =
                        out.and_then(|_| w.write_record(r.csv_record()).map_err(|e| ApiError::internal(e.to_string())));
                }
                out?;
                let bytes = w.into_inner().map_err(|e| ApiError::internal(e.to_string()))?;
                Ok((bytes, "text/csv; charset=utf-8", format!("fleet-{}.csv", snap.size)))
            }
        }
    })
    .await;
    match result {
        Ok((bytes, ct, name)) => attachment(bytes, ct, &name),
        Err(e) => e.into_response(),
    }
}

// ---- one GPU ---------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "gpu.html")]
struct GpuPage {
    chrome: Option<Chrome>,
    origin: String,
    uuid: String,
    row: Option<FleetRow>,
    verdict: Option<Verdict>,
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
        let row = snap.rows.iter().find(|r| r.uuid == uuid.as_str()).cloned();
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

// ---- runs ------------------------------------------------------------------------------------

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

// ---- log status ------------------------------------------------------------------------------

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
}

pub(crate) async fn log_status(State(s): State<AppState>, Extension(p): Extension<Principal>, uri: Uri) -> Response {
    let chrome = match page_access(&s, &p, &uri) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let st = s.clone();
    let result = blocking(move || {
        let (size, checkpoint) = st.ledger.checkpoint().map_err(ledger_error)?;
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
        })
    })
    .await;
    match result {
        Ok(page) => render(&page, StatusCode::OK),
        Err(e) => e.into_response(),
    }
}

// ---- evidence bundle -------------------------------------------------------------------------

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

// ---- acquisition form (admin) ----------------------------------------------------------------

#[derive(Deserialize, Default, Debug)]
pub(crate) struct AcquisitionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    serials: String,
    #[serde(default)]
    sku: String,
    #[serde(default)]
    supplier: String,
    #[serde(default)]
    invoice_reference: String,
    #[serde(default)]
    shipped_on: String,
    #[serde(default)]
    ship_from: String,
    #[serde(default)]
    ship_to: String,
    #[serde(default)]
    end_user: String,
    #[serde(default)]
    licence: String,
    #[serde(default)]
    note: String,
}

#[derive(Template)]
#[template(path = "acquisition.html")]
struct AcquisitionPage {
    chrome: Option<Chrome>,
    origin: String,
    csrf: String,
    skus: Vec<String>,
    error: Option<String>,
    f: AcquisitionForm,
}

fn acquisition_page(s: &AppState, chrome: Chrome, f: AcquisitionForm, error: Option<String>) -> Response {
    let skus = Catalog::embedded().map(|c| c.skus.iter().map(|s| s.sku.clone()).collect()).unwrap_or_default();
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = AcquisitionPage {
        csrf: chrome.csrf.clone(),
        chrome: Some(chrome),
        origin: s.ledger.origin().into(),
        skus,
        error,
        f,
    };
    render(&page, status)
}

pub(crate) async fn acquisition_form(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    uri: Uri,
) -> Response {
    let chrome = match page_access(&s, &p, &uri) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if let Err(e) = p.admin() {
        return message(&s, Some(chrome), e.status(), "Admins only", e.message());
    }
    acquisition_page(&s, chrome, AcquisitionForm::default(), None)
}

/// Checks the form and builds the record; the error names the field.
fn acquisition_record(f: &AcquisitionForm, counter: u64, now: time::OffsetDateTime) -> Result<Acquisition, String> {
    let serials: Vec<String> = f
        .serials
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if serials.is_empty() {
        return Err("Serial numbers: give at least one.".into());
    }
    let required = |v: &str, name: &str| -> Result<String, String> {
        let v = v.trim();
        if v.is_empty() {
            Err(format!("{name}: required."))
        } else if v.len() > 500 {
            Err(format!("{name}: at most 500 characters."))
        } else {
            Ok(v.to_string())
        }
    };
    let sku = match f.sku.trim() {
        "" => None,
        s => Some(
            Catalog::embedded()
                .and_then(|c| c.sku(s))
                .map(|s| s.sku.clone())
                .map_err(|_| format!("SKU: {s:?} is not in the catalog."))?,
        ),
    };
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let shipped_on = time::Date::parse(f.shipped_on.trim(), &fmt)
        .map_err(|_| format!("Shipped on: {:?} is not a date (YYYY-MM-DD).", f.shipped_on))?;
    let country = |v: &str, name: &str| {
        Country::parse(&v.trim().to_ascii_uppercase())
            .map_err(|_| format!("{name}: {v:?} is not an ISO 3166-1 alpha-2 code (e.g. US, CN, SG)."))
    };
    Ok(Acquisition {
        format_version: FORMAT_VERSION,
        counter,
        recorded_at: now,
        serials,
        sku,
        supplier: required(&f.supplier, "Supplier")?,
        invoice_reference: required(&f.invoice_reference, "Invoice reference")?,
        invoice_digest: None,
        shipped_on,
        ship_from: country(&f.ship_from, "Shipped from")?,
        ship_to: country(&f.ship_to, "Shipped to")?,
        end_user: required(&f.end_user, "End user")?,
        licence: Some(f.licence.trim().to_string()).filter(|l| !l.is_empty()),
        note: f.note.trim().to_string(),
    })
}

pub(crate) async fn record_acquisition(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    uri: Uri,
    Form(f): Form<AcquisitionForm>,
) -> Response {
    if let Err(e) = p.admin() {
        return e.into_response();
    }
    if let Err(e) = check_csrf(&p, Some(&f.csrf)) {
        return e.into_response();
    }
    let chrome = match page_access(&s, &p, &uri) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let Some(admin) = s.admin_key.clone() else {
        return acquisition_page(
            &s,
            chrome,
            f,
            Some("This server has no admin key in its data directory; record acquisitions with the CLI.".into()),
        );
    };
    let st = s.clone();
    let (f, outcome) = match blocking(move || {
        // One admin append at a time, so two forms cannot take the same counter.
        let _one = st.admin_lock.lock().unwrap_or_else(|p| p.into_inner());
        let counter = match st.ledger.active_key(admin.key_id().as_str()) {
            Ok(Some(k)) if k.role == Role::Admin => k.last_counter + 1,
            Ok(_) => return Ok((f, Err("This server's admin key is not an active admin key of the log.".to_string()))),
            Err(e) => return Err(ledger_error(e)),
        };
        let record = match acquisition_record(&f, counter, st.ledger.now()) {
            Ok(r) => r,
            Err(msg) => return Ok((f, Err(msg))),
        };
        let env = sign_record(&record, &admin).map_err(|e| ApiError::internal(e.to_string()))?;
        match st.ledger.append(&[env.to_json()]) {
            Ok(r) => Ok((f, Ok((r[0].index, record.serials[0].clone())))),
            Err(chipledger_ledger::Error::Rejected { reason, .. }) => {
                Ok((f, Err(format!("The log refused it: {reason}"))))
            }
            Err(e) => Err(ledger_error(e)),
        }
    })
    .await
    {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    match outcome {
        Ok((index, serial)) => {
            tracing::info!(index, "acquisition recorded from the dashboard");
            let q = serde_urlencoded::to_string([("q", serial.as_str())]).unwrap_or_default();
            Redirect::to(&format!("/?{q}")).into_response()
        }
        Err(msg) => acquisition_page(&s, chrome, f, Some(msg)),
    }
}

pub(crate) async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../assets/style.css"),
    )
        .into_response()
}
