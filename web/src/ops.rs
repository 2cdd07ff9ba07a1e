//! Operations: `/metrics` (Prometheus text format), `/healthz`, `/readyz`, and the periodic
//! audit whose result the log page and the metrics report.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use crate::error::{ledger_error, ApiError};
use crate::identity::Principal;
use crate::state::{blocking, AppState};

/// A Prometheus label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The metrics text: identity once per GPU on `chipledger_gpu_info`, everything else keyed by
/// `uuid`, base units.
pub(crate) fn metrics_text(s: &AppState) -> Result<String, ApiError> {
    let snap = s.fleet.get(&s.ledger)?;
    let now = s.ledger.now();
    let mut out = String::with_capacity(256 * snap.rows.len() + 1024);
    out.push_str("# HELP chipledger_gpu_info A GPU in the fleet, with its identity and standing as labels.\n");
    out.push_str("# TYPE chipledger_gpu_info gauge\n");
    for r in &snap.rows {
        let _ = writeln!(
            out,
            "chipledger_gpu_info{{uuid=\"{}\",host=\"{}\",sku=\"{}\",serial=\"{}\",source=\"{}\",evidence=\"{}\",class_oct_2023=\"{}\",verdict=\"{}\"}} 1",
            label(&r.uuid),
            label(&r.host),
            label(&r.sku),
            label(&r.serial),
            label(&r.source),
            label(&r.evidence),
            label(&r.class_2023),
            label(&r.verdict)
        );
    }
    type Value<'a> = &'a dyn Fn(&crate::views::FleetRow) -> String;
    let per_gpu: [(&str, &str, Value); 3] = [
        (
            "chipledger_gpu_last_attested_timestamp_seconds",
            "When the GPU's latest attestation observed it (unix seconds).",
            &|r| r.observed_at.unix_timestamp().to_string(),
        ),
        ("chipledger_gpu_attestation_age_seconds", "Age of the GPU's latest attestation.", &|r| {
            (now - r.observed_at).whole_seconds().to_string()
        }),
        ("chipledger_gpu_anomalies", "Anomalies on the GPU's latest attestation.", &|r| r.anomalies.len().to_string()),
    ];
    for (name, help, value) in per_gpu {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for r in &snap.rows {
            let _ = writeln!(out, "{name}{{uuid=\"{}\"}} {}", label(&r.uuid), value(r));
        }
    }
    let last_append = s.ledger.last_append_at().map_err(ledger_error)?;
    let _ = writeln!(out, "# HELP chipledger_log_size Entries in the log.\n# TYPE chipledger_log_size gauge");
    let _ = writeln!(out, "chipledger_log_size {}", s.ledger.size());
    let _ = writeln!(
        out,
        "# HELP chipledger_log_last_append_timestamp_seconds When the latest checkpoint was signed.\n# TYPE chipledger_log_last_append_timestamp_seconds gauge"
    );
    let _ = writeln!(out, "chipledger_log_last_append_timestamp_seconds {}", last_append.unwrap_or(0));
    let witnesses = s.witnessing.snapshot();
    if !witnesses.is_empty() {
        let size = s.ledger.size();
        let _ = writeln!(
            out,
            "# HELP chipledger_witness_cosigned_size The size of the latest checkpoint each witness cosigned.\n# TYPE chipledger_witness_cosigned_size gauge"
        );
        for (name, p) in &witnesses {
            let _ = writeln!(
                out,
                "chipledger_witness_cosigned_size{{witness=\"{}\"}} {}",
                label(name),
                p.cosigned.unwrap_or(0)
            );
        }
        let _ = writeln!(
            out,
            "# HELP chipledger_witness_lag_entries Entries the log holds past each witness's latest cosigned checkpoint.\n# TYPE chipledger_witness_lag_entries gauge"
        );
        for (name, p) in &witnesses {
            let lag = size.saturating_sub(p.cosigned.unwrap_or(0));
            let _ = writeln!(out, "chipledger_witness_lag_entries{{witness=\"{}\"}} {lag}", label(name));
        }
        let _ = writeln!(
            out,
            "# HELP chipledger_witness_up 1 when the last submission to the witness succeeded.\n# TYPE chipledger_witness_up gauge"
        );
        for (name, p) in &witnesses {
            let _ =
                writeln!(out, "chipledger_witness_up{{witness=\"{}\"}} {}", label(name), u8::from(p.error.is_none()));
        }
    }
    if let Some(a) = s.audit.snapshot() {
        let _ = writeln!(
            out,
            "# HELP chipledger_log_last_audit_timestamp_seconds When this server last audited the whole log.\n# TYPE chipledger_log_last_audit_timestamp_seconds gauge"
        );
        let _ = writeln!(out, "chipledger_log_last_audit_timestamp_seconds {}", a.at.unix_timestamp());
        let _ = writeln!(
            out,
            "# HELP chipledger_log_audit_ok 1 when the last audit found the log intact.\n# TYPE chipledger_log_audit_ok gauge"
        );
        let _ = writeln!(out, "chipledger_log_audit_ok {}", u8::from(a.problem.is_none()));
    }
    Ok(out)
}

pub(crate) async fn metrics(State(s): State<AppState>, Extension(p): Extension<Principal>) -> Response {
    if let Err(e) = p.person() {
        return e.into_response();
    }
    let st = s.clone();
    match blocking(move || metrics_text(&st)).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn readyz(State(s): State<AppState>) -> Response {
    // A probe takes the writer's lock: probes within a second share one check, so anonymous
    // callers cannot queue behind appends by the thousand.
    // One check in flight at most: a probe arriving meanwhile answers with the last result
    // (a slow commit must not pile probes up on the writer's lock).
    let recent = *s.ready.lock().unwrap_or_else(|p| p.into_inner());
    let fresh = recent.filter(|(at, _)| at.elapsed() < std::time::Duration::from_secs(1));
    let writable = match fresh {
        Some((_, writable)) => writable,
        None if s.ready_checking.swap(true, std::sync::atomic::Ordering::AcqRel) => {
            recent.is_some_and(|(_, writable)| writable)
        }
        None => {
            let ledger = s.ledger.clone();
            let writable = blocking(move || ledger.check_writable().map_err(ledger_error)).await.is_ok();
            *s.ready.lock().unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), writable));
            s.ready_checking.store(false, std::sync::atomic::Ordering::Release);
            writable
        }
    };
    if writable {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "the ledger is not writable\n").into_response()
    }
}
