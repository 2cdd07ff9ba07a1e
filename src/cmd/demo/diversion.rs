//! Scene 8: the diversion report an auditor files — the events the Chip Security Act names,
//! each with the log entries it rests on — written from the demo ledger and verified offline.

use anyhow::{Context, Result};
use chipledger_domain::located::DEFAULT_MAX_AGE_SECS;
use chipledger_ledger::diversion::{verify_diversion_report, DiversionOptions};

use super::Story;

pub(super) fn report(story: &Story) -> Result<()> {
    println!();
    println!("8. diversion report (chipledger report diversion): chips elsewhere than declared or licensed, tampering");
    let options = DiversionOptions { now: story.clock.now(), since: None, max_age_secs: DEFAULT_MAX_AGE_SECS };
    let report = story.ledger.diversion_report(&options).context("writing the diversion report")?;
    let path = story.dir.join("diversion-report.json");
    let bytes = serde_json::to_vec_pretty(&report)?;
    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    for e in &report.events {
        let signal = e.signal.as_deref().map(|s| format!(" [{s}]")).unwrap_or_default();
        println!("   {} {} {}{signal}: {}", e.kind.label(), e.host, e.uuid, e.reason);
    }
    let verified = verify_diversion_report(&bytes, Some(&story.info.log_verifier_key))?;
    println!(
        "   {} event(s) in {}: verified offline against checkpoint {} ({} entries with inclusion proofs, events recomputed)",
        verified.events.len(),
        path.display(),
        verified.tree_size,
        verified.entries
    );
    Ok(())
}
