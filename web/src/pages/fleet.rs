//! The fleet page: every GPU with its export classification and verdicts, filtered, sorted and
//! paged, with charts; its CSV and JSON exports take the same query.

use std::cmp::Ordering;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use chipledger_domain::identify::Severity;
use serde::{Deserialize, Serialize};

use super::{attachment, page_access, Chrome};
use crate::error::ApiError;
use crate::identity::Principal;
use crate::locations;
use crate::state::{blocking, AppState};
use crate::views::{self, FleetRow};

/// Rows per fleet page.
const PER_PAGE: usize = 500;

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
    /// A location verdict (`contradicts-declared`, …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub location: String,
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
            && (self.location.is_empty() || verdict_of(&r.location) == self.location)
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
            "location" => a.location.cmp(&b.location),
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
    location_css: &'static str,
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
    locations: Vec<String>,
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

/// The verdict of a location column's value: `consistent` of `consistent (host-key)`.
fn verdict_of(location: &str) -> &str {
    location.split(' ').next().unwrap_or_default()
}

/// The fleet at the latest checkpoint, each GPU's location judged now: the checkpoint's size and
/// the rows.
fn located(s: &AppState) -> Result<(u64, std::sync::Arc<Vec<FleetRow>>), ApiError> {
    let snap = s.fleet.get(&s.ledger)?;
    Ok((snap.size, s.locations.rows(&s.ledger, &snap, s.ledger.now())?))
}

/// Renders the fleet page for `q`.
pub(crate) fn fleet_html(s: &AppState, chrome: Option<Chrome>, q: FleetQuery) -> Result<String, ApiError> {
    let (size, rows) = located(s)?;
    let now = s.ledger.now();
    let max_age = s.config.fresh_for;
    let selected = q.select(&rows);
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
            location_css: locations::css(&r.location),
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
        ("Location", "location"),
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
        size,
        query: export.encode(),
        skus: distinct(&rows, |r| &r.sku),
        classes: distinct(&rows, |r| &r.class_2023),
        verdicts: distinct(&rows, |r| &r.verdict),
        locations: distinct(&rows, |r| verdict_of(&r.location)),
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
        let (size, all) = located(&st)?;
        let rows = q.select(&all);
        match json {
            true => serde_json::to_vec_pretty(&rows)
                .map(|b| (b, "application/json", format!("fleet-{size}.json")))
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
                Ok((bytes, "text/csv; charset=utf-8", format!("fleet-{size}.csv")))
            }
        }
    })
    .await;
    match result {
        Ok((bytes, ct, name)) => attachment(bytes, ct, &name),
        Err(e) => e.into_response(),
    }
}
