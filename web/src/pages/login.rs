//! Logging in and out: a person's token makes a browser session (cookie, CSRF token); where to
//! go after logging in is kept on this server.

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use serde::Deserialize;

use super::{render, Chrome};
use crate::error::ledger_error;
use crate::identity::{check_csrf, Principal, SESSION_COOKIE};
use crate::state::{blocking, AppState};

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
    if let Some(id) = crate::identity::cookie(&headers, SESSION_COOKIE) {
        s.sessions.remove(id);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("chipledger_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    r
}
