//! The admin's acquisition form: what an admin enters is signed with the data directory's admin
//! key and appended, after the session's CSRF check.

use askama::Template;
use axum::extract::{Form, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use chipledger_domain::catalog::Catalog;
use chipledger_domain::country::Country;
use chipledger_domain::records::{sign_record, Acquisition, Role, FORMAT_VERSION};
use serde::Deserialize;

use super::{message, page_access, render, Chrome};
use crate::error::{ledger_error, ApiError};
use crate::identity::{check_csrf, Principal};
use crate::state::{blocking, AppState};

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
