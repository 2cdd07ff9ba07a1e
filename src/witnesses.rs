//! `--witness VKEY… --quorum K`: the witness policy a reader applies to a checkpoint.

use anyhow::{bail, Context, Result};
use chipledger_domain::cosignature::{WitnessKey, WitnessPolicy};
use chipledger_domain::note::Note;

/// The arguments every command that reads a checkpoint takes.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// A witness whose cosignature counts (its C2SP verifier key, cosignature/v1, as `chipledger
    /// witness vkey` prints it); repeatable.
    #[arg(long = "witness", value_name = "VKEY")]
    pub witnesses: Vec<String>,
    /// How many of the witnesses must have cosigned the checkpoint (default: all given).
    #[arg(long, requires = "witnesses")]
    pub quorum: Option<usize>,
}

impl PolicyArgs {
    /// The policy, or `None` when no witness was given.
    pub fn policy(&self) -> Result<Option<WitnessPolicy>> {
        if self.witnesses.is_empty() {
            return Ok(None);
        }
        let keys = self
            .witnesses
            .iter()
            .map(|v| WitnessKey::parse(v).with_context(|| format!("--witness {v}")))
            .collect::<Result<Vec<_>>>()?;
        let quorum = self.quorum.unwrap_or(keys.len());
        Ok(Some(WitnessPolicy::new(keys, quorum)?))
    }
}

/// Applies `policy` to a signed checkpoint note: which witnesses cosigned it, or why it fails.
pub fn check(policy: &WitnessPolicy, checkpoint: &[u8]) -> Result<Vec<(String, u64)>> {
    let note = Note::parse(checkpoint).context("the checkpoint is not a signed note")?;
    match policy.check(&note) {
        Ok(cosigned) => Ok(cosigned),
        Err(e) => bail!("the checkpoint fails the witness policy: {e}"),
    }
}

/// `--witness NAME=VKEY@URL` (or `VKEY@URL`) for `serve`: a witness to submit checkpoints to.
pub fn target(spec: &str) -> Result<chipledger_web::WitnessTarget> {
    let (key, url) = spec.split_once('@').with_context(|| format!("--witness {spec}: expected [NAME=]VKEY@URL"))?;
    let (name, vkey) = match key.split_once('=') {
        // A vkey's base64 may end in '='; a name before it has no '+'.
        Some((name, vkey)) if !name.contains('+') => (Some(name), vkey),
        _ => (None, key),
    };
    let key = WitnessKey::parse(vkey).with_context(|| format!("--witness {spec}: the verifier key"))?;
    if let Some(n) = name {
        if n != key.name() {
            bail!("--witness {spec}: the name {n:?} is not the verifier key's ({:?})", key.name());
        }
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("--witness {spec}: the URL must start with http:// or https://");
    }
    Ok(chipledger_web::WitnessTarget { key, url: url.to_string() })
}
