//! The periodic audit's last outcome, which the log page and the metrics report.

use std::sync::Mutex;

use chipledger_ledger::Ledger;
use time::OffsetDateTime;

/// The last audit's outcome.
#[derive(Debug, Default)]
pub(crate) struct AuditStatus(Mutex<Option<AuditResult>>);

#[derive(Debug, Clone)]
pub(crate) struct AuditResult {
    pub at: OffsetDateTime,
    pub entries: u64,
    pub problem: Option<String>,
}

impl AuditStatus {
    /// Runs a full audit now and records its outcome.
    pub(crate) fn run(&self, ledger: &Ledger) {
        let at = ledger.now();
        let result = match ledger.audit(&mut |_, _| {}) {
            Ok(r) => {
                if let Some(p) = &r.problem {
                    tracing::error!(problem = %p, "the audit found a problem in the log");
                } else {
                    tracing::info!(entries = r.entries, "audit passed");
                }
                AuditResult { at, entries: r.entries, problem: r.problem.map(|p| p.to_string()) }
            }
            Err(e) => {
                tracing::error!(error = %e, "the audit could not run");
                AuditResult { at, entries: 0, problem: Some(format!("the audit could not run: {e}")) }
            }
        };
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
    }

    pub(crate) fn describe(&self) -> String {
        match self.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            None => "not yet run by this server (run `chipledger ledger verify`)".into(),
            Some(r) => match &r.problem {
                None => format!("{}: passed, {} entries", crate::views::rfc3339(r.at), r.entries),
                Some(p) => format!("{}: FAILED — {p}", crate::views::rfc3339(r.at)),
            },
        }
    }

    pub(crate) fn snapshot(&self) -> Option<AuditResult> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
