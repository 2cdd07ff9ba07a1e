//! Scene 7: the provenance report verified offline, and the whole ledger audited.

use anyhow::{bail, Result};
use chipledger_inference::report;

use super::inference::{Fleet, Run};
use super::Story;
use crate::output;

pub(super) fn report_and_ledger(story: &Story, fleet: &Fleet, run: &Run) -> Result<()> {
    let Run { record, file, .. } = run;
    println!();
    println!("7. provenance report {} (log index {})", record.run_id, file.receipt.index);
    println!("   executed on: {} — placed on:", record.backend);
    for gpu in &record.gpus {
        println!(
            "   {} (inclusion proof against checkpoint {})",
            output::run_gpu(gpu),
            fleet.plan.fleet.checkpoint.size
        );
    }
    println!(
        "   {} GPU(s) rejected with reasons; policy {:?} digest {}",
        record.rejected.len(),
        record.policy_name,
        output::short(&record.policy_digest.to_hex())
    );
    let verified = report::verify(file, Some(&story.info.log_verifier_key), Some(&fleet.tiny_dir))?;
    println!(
        "   report verified offline: signature, checkpoints, {} attestation proof(s), prompt/output digests, {} model files",
        verified.gpus_checked, verified.model_files_checked
    );
    let audit = story.ledger.audit(&mut |_, _| {})?;
    if let Some(p) = &audit.problem {
        bail!("the demo ledger does not verify: {p:?}");
    }
    println!(
        "   ledger verified: {} entries, {} signatures, {} checkpoints; root {}",
        audit.entries,
        audit.signatures_checked,
        audit.checkpoints,
        audit.root.to_hex()
    );
    Ok(())
}
