//! Placement policy: which GPUs may run a workload. TOML, with a built-in default
//! (`policies/default.toml`); a file sets any subset of the keys and the rest keep the default.

use std::time::Duration;

use chipledger_domain::merkle::Hash;
use chipledger_domain::rules::VerdictKind;
use chipledger_domain::standing::{Evidence, ALL_EVIDENCE};
use serde::Deserialize;

use crate::Error;

/// The built-in policy's text (its digest is what reports cite).
pub const DEFAULT_POLICY: &str = include_str!("../policies/default.toml");

/// A parsed policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub name: String,
    pub max_attestation_age: Duration,
    pub require_live_probe: bool,
    /// The lowest evidence level a GPU may have (`vendor-signed`, `hardware-signed`,
    /// `hardware-verified`, …); `None` asks for none.
    pub require_evidence: Option<Evidence>,
    pub allowed_verdicts: Vec<VerdictKind>,
    /// Anomaly kinds (`nvlink-fewer`, …) tolerated; any other anomaly disqualifies a GPU.
    pub tolerated_anomalies: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub allowed_skus: Vec<String>,
    pub allowed_classes: Vec<String>,
    pub require_gpu_execution: bool,
    /// Scheduler hooks (the Slurm Prolog): let a job start when the ledger cannot be read. Off
    /// by default: they fail closed.
    pub allow_when_ledger_unreachable: bool,
    /// Where a GPU must be, by its host's location proofs.
    pub location: LocationRule,
    /// SHA-256 of the policy text the node loaded (the default's text when no file was given).
    pub digest: Hash,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    name: Option<String>,
    max_attestation_age: Option<String>,
    require_live_probe: Option<bool>,
    require_vendor_evidence: Option<bool>,
    require_evidence: Option<String>,
    allowed_verdicts: Option<Vec<String>>,
    tolerated_anomalies: Option<Vec<String>>,
    allowed_hosts: Option<Vec<String>>,
    allowed_skus: Option<Vec<String>>,
    allowed_classes: Option<Vec<String>>,
    require_gpu_execution: Option<bool>,
    allow_when_ledger_unreachable: Option<bool>,
    location: Option<LocationFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocationFile {
    require: Option<bool>,
    max_age: Option<String>,
    site: Option<String>,
    within_km: Option<f64>,
    countries: Option<Vec<String>>,
}

/// The `[location]` table: where a GPU must be, by its host's location proofs (signed round
/// trips to enrolled landmarks, judged by `domain::located`).
#[derive(Clone, Debug, PartialEq)]
pub struct LocationRule {
    /// A GPU needs a fresh proof whose verdict is `consistent` (also implied by `within` or
    /// `countries`).
    pub require: bool,
    /// How old a proof may be and still count.
    pub max_age: Duration,
    /// The region the proofs leave must lie within this many kilometres of this site.
    pub within: Option<(chipledger_domain::location::Coord, f64)>,
    /// The region must lie inside these countries (conservatively: every country it may touch).
    pub countries: std::collections::BTreeSet<chipledger_domain::country::Country>,
}

impl LocationRule {
    /// Whether placement checks location at all.
    pub fn required(&self) -> bool {
        self.require || self.within.is_some() || !self.countries.is_empty()
    }

    fn parse(file: LocationFile, bad: &dyn Fn(&str, String) -> Error) -> Result<LocationRule, Error> {
        let max_age = match &file.max_age {
            None => Duration::from_secs(chipledger_domain::located::DEFAULT_MAX_AGE_SECS),
            Some(t) => parse_duration(t).map_err(|m| bad("location.max_age", m))?,
        };
        if max_age.is_zero() || max_age > Duration::from_secs(30 * 86_400) {
            return Err(bad("location.max_age", "must be longer than 0s and at most 30d".into()));
        }
        let within = match (file.site.as_deref(), file.within_km) {
            (None, None) => None,
            (Some(site), Some(km)) => {
                let at =
                    chipledger_domain::location::Coord::parse(site).map_err(|e| bad("location.site", e.to_string()))?;
                if !km.is_finite() || km <= 0.0 || km > 20_100.0 {
                    return Err(bad("location.within_km", format!("{km} is not a distance in 0 < km <= 20,100")));
                }
                Some((at, km))
            }
            (Some(_), None) => {
                return Err(bad("location.within_km", "site needs within_km (the radius, in km)".into()))
            }
            (None, Some(_)) => return Err(bad("location.site", "within_km needs site (\"lat,lon\")".into())),
        };
        let mut countries = std::collections::BTreeSet::new();
        for c in file.countries.unwrap_or_default() {
            let country = chipledger_domain::country::Country::parse(&c)
                .map_err(|_| bad("location.countries", format!("{c:?} is not an ISO 3166-1 alpha-2 code")))?;
            countries.insert(country);
        }
        Ok(LocationRule { require: file.require.unwrap_or(false), max_age, within, countries })
    }
}
/// Anomaly kinds a policy may name.
pub const ANOMALY_KINDS: &[&str] = &[
    "unknown-pci-id",
    "unknown-subsystem",
    "name-mismatch",
    "gpu-part-number-mismatch",
    "board-part-number-mismatch",
    "inforom-board-mismatch",
    "memory-mismatch",
    "nvlink-excess",
    "nvlink-fewer",
    "vbios-changed",
    "identity-changed",
    "serial-under-two-uuids",
    "uuid-on-two-hosts",
    "moved-host",
    "landmark-disagreement",
    "location-contradicts-declared",
];

impl Policy {
    /// The built-in default.
    pub fn builtin() -> Policy {
        // Invariant: the embedded default parses (a unit test proves it).
        Policy::parse(DEFAULT_POLICY, "built-in default").unwrap_or_else(|e| unreachable!("{e}"))
    }

    /// Parses a policy file over the default. `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Policy, Error> {
        let bad =
            |key: &str, message: String| Error::Policy { origin: origin.to_string(), key: key.to_string(), message };
        let file: PolicyFile = toml::from_str(text).map_err(|e| Error::Policy {
            origin: origin.to_string(),
            key: chipledger_domain::encoding::config_error_key(text, e.message(), e.span())
                .unwrap_or_else(|| "(syntax)".into()),
            message: e.message().trim().to_string(),
        })?;
        let base: PolicyFile = if text == DEFAULT_POLICY {
            PolicyFile::default()
        } else {
            toml::from_str(DEFAULT_POLICY).map_err(|e| bad("(built-in default)", e.to_string()))?
        };
        let pick = |a: Option<Vec<String>>, b: Option<Vec<String>>| a.or(b).unwrap_or_default();
        let age_text = file.max_attestation_age.or(base.max_attestation_age).unwrap_or_else(|| "2h".into());
        let max_attestation_age = parse_duration(&age_text).map_err(|m| bad("max_attestation_age", m))?;
        let mut allowed_verdicts = Vec::new();
        for v in pick(file.allowed_verdicts, base.allowed_verdicts) {
            let kind: VerdictKind = serde_json::from_value(serde_json::Value::String(v.clone())).map_err(|_| {
                bad("allowed_verdicts", format!("{v:?} is not a verdict (lawful, lawful-under-licence, licence-required-none-recorded, no-acquisition-record, needs-review)"))
            })?;
            allowed_verdicts.push(kind);
        }
        let tolerated_anomalies = pick(file.tolerated_anomalies, base.tolerated_anomalies);
        for a in &tolerated_anomalies {
            if !ANOMALY_KINDS.contains(&a.as_str()) {
                return Err(bad(
                    "tolerated_anomalies",
                    format!("{a:?} is not an anomaly kind ({})", ANOMALY_KINDS.join(", ")),
                ));
            }
        }
        // `require_evidence` names the lowest level; `require_vendor_evidence = true` (the older
        // key) means `vendor-signed`. A file setting either overrides the default's.
        let require_evidence = match (file.require_evidence, file.require_vendor_evidence) {
            (Some(_), Some(_)) => {
                return Err(bad("require_evidence", "set require_evidence or require_vendor_evidence, not both".into()))
            }
            (Some(level), None) => Some(level),
            (None, Some(true)) => Some("vendor-signed".to_string()),
            (None, Some(false)) => None,
            (None, None) => match (base.require_evidence, base.require_vendor_evidence) {
                (Some(level), _) => Some(level),
                (None, Some(true)) => Some("vendor-signed".to_string()),
                _ => None,
            },
        };
        let require_evidence = match require_evidence.as_deref() {
            None | Some("none") => None,
            Some(level) => {
                Some(Evidence::parse(level).filter(|e| *e > Evidence::EvidenceInvalid).ok_or_else(|| {
                    let levels: Vec<&str> = ALL_EVIDENCE.iter().skip(1).map(|e| e.label()).collect();
                    bad("require_evidence", format!("{level:?} is not an evidence level (none, {})", levels.join(", ")))
                })?)
            }
        };
        let name = file.name.or(base.name).unwrap_or_else(|| "unnamed".into());
        if name.trim().is_empty() {
            return Err(bad("name", "must not be empty".into()));
        }
        let location = LocationRule::parse(file.location.or(base.location).unwrap_or_default(), &bad)?;
        Ok(Policy {
            name,
            location,
            max_attestation_age,
            require_live_probe: file.require_live_probe.or(base.require_live_probe).unwrap_or(true),
            require_evidence,
            allowed_verdicts,
            tolerated_anomalies,
            allowed_hosts: pick(file.allowed_hosts, base.allowed_hosts),
            allowed_skus: pick(file.allowed_skus, base.allowed_skus),
            allowed_classes: pick(file.allowed_classes, base.allowed_classes),
            require_gpu_execution: file.require_gpu_execution.or(base.require_gpu_execution).unwrap_or(false),
            allow_when_ledger_unreachable: file
                .allow_when_ledger_unreachable
                .or(base.allow_when_ledger_unreachable)
                .unwrap_or(false),
            digest: Hash::sha256(text.as_bytes()),
        })
    }
}

/// `90s`, `30m`, `2h`, `7d`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 30m, 2h or 7d"))?;
    let mult = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown unit {other:?} in {s:?}; use s, m, h or d")),
    };
    n.checked_mul(mult).map(Duration::from_secs).ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_builtin_and_demo_policies_parse() {
        let d = Policy::builtin();
        assert_eq!(d.name, "default");
        assert!(d.require_live_probe && d.tolerated_anomalies.is_empty());
        assert_eq!(d.max_attestation_age, Duration::from_secs(7200));
        let demo = Policy::parse(include_str!("../policies/demo.toml"), "demo.toml").unwrap();
        assert!(!demo.require_live_probe);
        assert_eq!(demo.allowed_verdicts, d.allowed_verdicts);
        assert_ne!(demo.digest, d.digest);
    }
}
