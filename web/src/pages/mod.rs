//! The auditor dashboard: server-rendered pages (askama), exports, the evidence bundle and the
//! admin's acquisition form. Pages need a person (token or session); the form needs an admin and
//! the session's CSRF token. Everything works without JavaScript; the charts and a GPU's location
//! map are inline SVG.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chipledger_domain::records::Role;

use crate::error::ApiError;
use crate::identity::Principal;
use crate::state::AppState;

pub(crate) mod acquisition;
pub(crate) mod bundle;
pub(crate) mod fleet;
pub(crate) mod gpu;
pub(crate) mod log;
pub(crate) mod login;
pub(crate) mod runs;

/// The signed-in person, for the page header.
#[derive(Debug, Clone)]
pub(crate) struct Chrome {
    pub name: String,
    pub role: String,
    pub is_admin: bool,
    pub csrf: String,
}

pub(crate) fn render(t: &impl Template, status: StatusCode) -> Response {
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

pub(crate) fn message(s: &AppState, chrome: Option<Chrome>, status: StatusCode, title: &str, msg: &str) -> Response {
    let page = MessagePage { chrome, origin: s.ledger.origin().to_string(), title: title.into(), message: msg.into() };
    render(&page, status)
}

/// The person behind a page request, or the response that sends anyone else away: anonymous
/// callers to the login page, keys to a 403.
pub(crate) fn page_access(s: &AppState, p: &Principal, uri: &Uri) -> Result<Chrome, Box<Response>> {
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

pub(crate) fn attachment(body: Vec<u8>, content_type: &'static str, filename: &str) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../assets/style.css"),
    )
        .into_response()
}
