//! Export classification per US rule version, and the acquisition verdict.
//!
//! Follows `docs/export-rules.md` §0–§3. All figures are catalog datasheet values, never measured
//! clocks ("have or are programmable to have"). Whether a part is "designed or marketed for
//! datacenters" is a human judgement: it comes in as [`Datacenter`], and every output says so.
//! This is a technical aid, not legal advice.
//!
//! ```text
//! 2022 (87 FR 62186): controlled = TPP >= 4800 && aggregate I/O (NVLink + PCIe) >= 600 GB/s
//! 2023 (88 FR 73458, incl. 89 FR 23876):
//!   !datacenter && TPP < 4800                    -> not 3A090 (Note 2)
//!   TPP >= 4800                                  -> 3A090.a.1 (NAC/ACA-eligible if !datacenter)
//!   TPP >= 1600 && PD >= 5.92                    -> 3A090.a.2
//!   2400 <= TPP < 4800 && 1.6 <= PD < 5.92       -> 3A090.b.1
//!   TPP >= 1600 && 3.2 <= PD < 5.92              -> 3A090.b.2
//!   else                                         -> not 3A090
//! Jan 2026 (91 FR 1684): 3A090 && TPP < 21000 && DRAM BW < 6500 GB/s -> case-by-case (China, Macau)
//! Notices: Aug 2022 (A100/H100 and equivalents → China incl. HK, Russia);
//!          Apr 2025 (H20 and ICs matching its memory or interconnect bandwidth → China, HK, Macau, D:5)
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{macros::date, Date};

use crate::catalog::{Datacenter, Sku};
use crate::country::{self, Country, CountryGroup};

/// The rule versions chipledger classifies under, oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleVersion {
    /// 26 Aug 2022 is-informed letter to NVIDIA (A100, H100, and equivalents).
    Aug2022Notice,
    /// 7 Oct 2022 interim final rule.
    Oct2022,
    /// 17 Oct 2023 AC/S interim final rule, with the 4 Apr 2024 corrections.
    Oct2023,
    /// 9/14 Apr 2025 is-informed letter to NVIDIA (H20 and equivalents).
    Apr2025H20Notice,
    /// 15 Jan 2026 final rule: China/Macau licence review policy.
    Jan2026China,
}

impl RuleVersion {
    pub const ALL: [RuleVersion; 5] = [
        RuleVersion::Aug2022Notice,
        RuleVersion::Oct2022,
        RuleVersion::Oct2023,
        RuleVersion::Apr2025H20Notice,
        RuleVersion::Jan2026China,
    ];

    /// A short stable id, used in JSON and tables.
    pub fn id(self) -> &'static str {
        match self {
            RuleVersion::Aug2022Notice => "2022-08-notice",
            RuleVersion::Oct2022 => "2022-10",
            RuleVersion::Oct2023 => "2023-10",
            RuleVersion::Apr2025H20Notice => "2025-04-h20-notice",
            RuleVersion::Jan2026China => "2026-01",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            RuleVersion::Aug2022Notice => "Aug 2022 NVIDIA is-informed letter (A100/H100)",
            RuleVersion::Oct2022 => "Oct 2022 advanced computing IFR",
            RuleVersion::Oct2023 => "Oct 2023 AC/S IFR (incl. Apr 2024 corrections)",
            RuleVersion::Apr2025H20Notice => "Apr 2025 NVIDIA is-informed letter (H20)",
            RuleVersion::Jan2026China => "Jan 2026 China/Macau review policy",
        }
    }

    pub fn citation(self) -> &'static str {
        match self {
            RuleVersion::Aug2022Notice => "NVIDIA Form 8-K, 26 Aug 2022 (USG is-informed letter)",
            RuleVersion::Oct2022 => "87 FR 62186, FR Doc 2022-21658 (7 Oct 2022); Macau: 88 FR 2821 (18 Jan 2023)",
            RuleVersion::Oct2023 => {
                "88 FR 73458, FR Doc 2023-23055 (effective 17 Nov 2023); 89 FR 23876, FR Doc 2024-07004 (4 Apr 2024)"
            }
            RuleVersion::Apr2025H20Notice => "NVIDIA Form 8-K, 15 Apr 2025 (USG is-informed letter of 9 Apr 2025)",
            RuleVersion::Jan2026China => "91 FR 1684, FR Doc 2026-00789 (effective 15 Jan 2026)",
        }
    }

    /// The day the rule (or notice) took effect.
    pub fn effective(self) -> Date {
        match self {
            RuleVersion::Aug2022Notice => date!(2022 - 08 - 26),
            RuleVersion::Oct2022 => date!(2022 - 10 - 07),
            RuleVersion::Oct2023 => OCT2023_EFFECTIVE,
            RuleVersion::Apr2025H20Notice => date!(2025 - 04 - 09),
            RuleVersion::Jan2026China => date!(2026 - 01 - 15),
        }
    }
}

impl fmt::Display for RuleVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

const OCT2023_EFFECTIVE: Date = date!(2023 - 11 - 17);
/// NVIDIA's 8-K says the USG made the TPP ≥ 4800 datacenter part effective on this day.
const OCT2023_IMMEDIATE: Date = date!(2023 - 10 - 23);
const MACAU_INTO_2022_RULE: Date = date!(2023 - 01 - 18);
const ACA_SPLIT: Date = date!(2024 - 04 - 04);

/// The outcome of one rule for one SKU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bucket {
    /// 2022: 3A090 (both the TPP and the I/O tests met).
    Controlled,
    /// 2022: not 3A090.
    NotControlled,
    #[serde(rename = "3A090.a.1")]
    A1,
    #[serde(rename = "3A090.a.2")]
    A2,
    #[serde(rename = "3A090.b.1")]
    B1,
    #[serde(rename = "3A090.b.2")]
    B2,
    /// 2023: not 3A090.
    #[serde(rename = "not-3a090")]
    Not3a090,
    /// 2023 Note 2: not designed or marketed for datacenters and TPP < 4800.
    Note2Exempt,
    /// A company-specific notice names this SKU (or it matches the notice's test).
    NoticeApplies,
    NoticeDoesNotApply,
    /// Jan 2026: China/Macau licence applications reviewed case by case.
    CaseByCase,
    /// Jan 2026: China/Macau licence applications keep a presumption of denial.
    PresumptionOfDenial,
    /// The rule does not concern this SKU.
    NotApplicable,
    /// A figure the rule needs is missing or a human judgement is open.
    NeedsReview,
}

impl Bucket {
    pub fn label(&self) -> &'static str {
        match self {
            Bucket::Controlled => "3A090 (controlled)",
            Bucket::NotControlled => "not 3A090",
            Bucket::A1 => "3A090.a.1",
            Bucket::A2 => "3A090.a.2",
            Bucket::B1 => "3A090.b.1",
            Bucket::B2 => "3A090.b.2",
            Bucket::Not3a090 => "not 3A090",
            Bucket::Note2Exempt => "not 3A090 (Note 2)",
            Bucket::NoticeApplies => "licence required (notice)",
            Bucket::NoticeDoesNotApply => "not named",
            Bucket::CaseByCase => "case-by-case",
            Bucket::PresumptionOfDenial => "presumption of denial",
            Bucket::NotApplicable => "n/a",
            Bucket::NeedsReview => "needs review",
        }
    }

    /// Whether this bucket is a 2023 3A090 classification.
    pub fn is_3a090_2023(&self) -> bool {
        matches!(self, Bucket::A1 | Bucket::A2 | Bucket::B1 | Bucket::B2)
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One SKU under one rule version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub rule: RuleVersion,
    pub bucket: Bucket,
    pub tpp: Option<f64>,
    pub performance_density: Option<f64>,
    /// Why, in one sentence with the numbers.
    pub basis: String,
    pub citation: String,
    /// Inputs a person supplied or must confirm (e.g. "datacenter: yes (catalog default)").
    pub human_inputs: Vec<String>,
    /// Catalog fields this result leans on that are flagged UNCERTAIN.
    pub uncertain_inputs: Vec<String>,
    /// NAC/ACA eligibility or other notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<String>,
}

/// Where a datacenter judgement came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JudgementSource {
    Catalog,
    Operator,
}

/// The "designed or marketed for datacenters" input, with who gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatacenterJudgement {
    pub value: Datacenter,
    pub source: JudgementSource,
}

impl DatacenterJudgement {
    pub fn catalog_default(sku: &Sku) -> DatacenterJudgement {
        DatacenterJudgement { value: sku.datacenter_default(), source: JudgementSource::Catalog }
    }

    fn describe(&self) -> String {
        let v = match self.value {
            Datacenter::Yes => "yes",
            Datacenter::No => "no",
            Datacenter::Unknown => "undecided",
        };
        let s = match self.source {
            JudgementSource::Catalog => "catalog default, a human judgement",
            JudgementSource::Operator => "given by the operator",
        };
        format!("designed or marketed for datacenters: {v} ({s})")
    }
}

/// Classifies `sku` under every rule version, oldest first.
pub fn classify_all(sku: &Sku, datacenter: DatacenterJudgement) -> Vec<Classification> {
    RuleVersion::ALL.iter().map(|r| classify(sku, *r, datacenter)).collect()
}

/// Classifies `sku` under one rule version.
pub fn classify(sku: &Sku, rule: RuleVersion, dc: DatacenterJudgement) -> Classification {
    let tpp = sku.tpp;
    let pd = sku.performance_density;
    let mut c = Classification {
        rule,
        bucket: Bucket::NeedsReview,
        tpp,
        performance_density: pd,
        basis: String::new(),
        citation: rule.citation().to_string(),
        human_inputs: vec![],
        uncertain_inputs: vec![],
        exception: None,
    };
    let lean_on = |field: &str, c: &mut Classification| {
        if sku.is_uncertain(field) {
            c.uncertain_inputs.push(field.to_string());
        }
    };
    match rule {
        RuleVersion::Oct2022 | RuleVersion::Aug2022Notice => {
            lean_on("tpp", &mut c);
            lean_on("nvlink_bidirectional_gbs", &mut c);
            // Without a known PCIe link, NVLink alone is a lower bound on the aggregate I/O.
            let io = sku.aggregate_io_gbs().or(sku.nvlink_bidirectional_gbs.filter(|n| *n >= 600.0));
            let controlled = match (tpp, io) {
                (Some(t), Some(io)) => {
                    let yes = t >= 4800.0 && io >= 600.0;
                    c.basis = format!(
                        "TPP {} {} 4800 and aggregate I/O {} GB/s (NVLink {} + PCIe {}) {} 600",
                        fmt_num(t),
                        if t >= 4800.0 { "≥" } else { "<" },
                        fmt_num(io),
                        fmt_num(sku.nvlink_bidirectional_gbs.unwrap_or(0.0)),
                        sku.pcie_host_gbs().map_or("unknown".to_string(), fmt_num),
                        if io >= 600.0 { "≥" } else { "<" },
                    );
                    Some(yes)
                }
                (Some(t), None) if t < 4800.0 => {
                    c.basis = format!("TPP {} < 4800 (I/O not needed)", fmt_num(t));
                    Some(false)
                }
                _ => {
                    c.basis = "TPP or interconnect bandwidth unknown in the catalog".into();
                    None
                }
            };
            if rule == RuleVersion::Oct2022 {
                c.bucket = match controlled {
                    Some(true) => Bucket::Controlled,
                    Some(false) => Bucket::NotControlled,
                    None => Bucket::NeedsReview,
                };
            } else {
                let named = sku.sku.starts_with("A100") || sku.sku.starts_with("H100");
                c.bucket = match (named, controlled) {
                    (true, _) => Bucket::NoticeApplies,
                    (false, Some(true)) => Bucket::NoticeApplies,
                    (false, Some(false)) => Bucket::NoticeDoesNotApply,
                    (false, None) => Bucket::NeedsReview,
                };
                c.basis = if named {
                    format!("{} is named in the letter", sku.sku)
                } else {
                    format!("letter covers ICs reaching A100-level performance and I/O: {}", c.basis)
                };
            }
        }
        RuleVersion::Oct2023 => {
            lean_on("tpp", &mut c);
            lean_on("performance_density", &mut c);
            c.human_inputs.push(dc.describe());
            c.bucket = classify_2023(tpp, pd, dc.value, &mut c.basis);
            if c.bucket == Bucket::A1 && dc.value == Datacenter::No {
                c.exception = Some(
                    "NAC (D:5, Macau; notification) / ACA (D:1, D:4 from 4 Apr 2024): not designed for datacenters"
                        .into(),
                );
            }
            if c.bucket.is_3a090_2023() && matches!(c.bucket, Bucket::B1 | Bucket::B2) && dc.value == Datacenter::Yes {
                c.exception = Some("NAC (D:5, Macau; notification) / ACA (D:1, D:4 from 4 Apr 2024)".into());
            }
        }
        RuleVersion::Jan2026China => {
            lean_on("tpp", &mut c);
            lean_on("memory_bandwidth_gbs", &mut c);
            c.human_inputs.push(dc.describe());
            let mut b2023 = String::new();
            let base = classify_2023(tpp, pd, dc.value, &mut b2023);
            c.bucket = match (base.is_3a090_2023(), base == Bucket::NeedsReview, tpp, sku.memory_bandwidth_gbs) {
                (_, true, _, _) => {
                    c.basis = format!("the 2023 classification needs review: {b2023}");
                    Bucket::NeedsReview
                }
                (false, _, _, _) => {
                    c.basis = "not 3A090 under the 2023 parameters, so the review policy does not concern it".into();
                    Bucket::NotApplicable
                }
                (true, _, Some(t), Some(bw)) => {
                    let ok = t < 21000.0 && bw < 6500.0;
                    c.basis = format!(
                        "TPP {} {} 21000 and DRAM bandwidth {} GB/s {} 6500",
                        fmt_num(t),
                        if t < 21000.0 { "<" } else { "≥" },
                        fmt_num(bw),
                        if bw < 6500.0 { "<" } else { "≥" }
                    );
                    if ok {
                        Bucket::CaseByCase
                    } else {
                        Bucket::PresumptionOfDenial
                    }
                }
                (true, _, _, _) => {
                    c.basis = "TPP or DRAM bandwidth unknown in the catalog".into();
                    Bucket::NeedsReview
                }
            };
        }
        RuleVersion::Apr2025H20Notice => {
            lean_on("memory_bandwidth_gbs", &mut c);
            let named = sku.sku.starts_with("H20") && !sku.sku.starts_with("H200");
            let mut b2023 = String::new();
            let base = classify_2023(tpp, pd, dc.value, &mut b2023);
            let bw_match = sku.memory_bandwidth_gbs.is_some_and(|b| b >= 4000.0)
                || sku.nvlink_bidirectional_gbs.is_some_and(|b| b >= 900.0);
            c.bucket = if named {
                c.basis = format!("{} is named in the letter", sku.sku);
                Bucket::NoticeApplies
            } else if base.is_3a090_2023() {
                c.basis = "already 3A090 under the 2023 rule; the letter adds nothing".into();
                Bucket::NotApplicable
            } else if bw_match {
                c.basis = "not 3A090 but reaches H20's memory (4000 GB/s) or interconnect (900 GB/s) bandwidth".into();
                Bucket::NoticeApplies
            } else {
                c.basis = "below H20's memory and interconnect bandwidth".into();
                Bucket::NoticeDoesNotApply
            };
        }
    }
    c
}

fn classify_2023(tpp: Option<f64>, pd: Option<f64>, dc: Datacenter, basis: &mut String) -> Bucket {
    let Some(t) = tpp else {
        *basis = "TPP unknown in the catalog".into();
        return Bucket::NeedsReview;
    };
    if t < 4800.0 && dc == Datacenter::No {
        *basis = format!("TPP {} < 4800 and not designed or marketed for datacenters", fmt_num(t));
        return Bucket::Note2Exempt;
    }
    if t >= 4800.0 {
        *basis = format!("TPP {} ≥ 4800", fmt_num(t));
        return Bucket::A1;
    }
    if dc == Datacenter::Unknown && t >= 1600.0 {
        *basis = format!("TPP {} < 4800: Note 2 turns on the datacenter judgement, which is open", fmt_num(t));
        return Bucket::NeedsReview;
    }
    let Some(p) = pd else {
        if t < 1600.0 {
            *basis = format!("TPP {} < 1600", fmt_num(t));
            return Bucket::Not3a090;
        }
        *basis = format!("TPP {} with performance density unknown (die area not published)", fmt_num(t));
        return Bucket::NeedsReview;
    };
    if t >= 1600.0 && p >= 5.92 {
        *basis = format!("TPP {} ≥ 1600 and PD {} ≥ 5.92", fmt_num(t), fmt_num(p));
        return Bucket::A2;
    }
    if (2400.0..4800.0).contains(&t) && (1.6..5.92).contains(&p) {
        *basis = format!("2400 ≤ TPP {} < 4800 and 1.6 ≤ PD {} < 5.92", fmt_num(t), fmt_num(p));
        return Bucket::B1;
    }
    if t >= 1600.0 && (3.2..5.92).contains(&p) {
        *basis = format!("TPP {} ≥ 1600 and 3.2 ≤ PD {} < 5.92", fmt_num(t), fmt_num(p));
        return Bucket::B2;
    }
    *basis = format!("TPP {} and PD {} below every 3A090 threshold", fmt_num(t), fmt_num(p));
    Bucket::Not3a090
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The acquisition facts a verdict needs (from an `acquisition/v1` record or the command line).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shipment {
    pub shipped_on: Date,
    pub ship_to: Country,
    /// Licence, NAC or ACA reference, when one was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence: Option<String>,
}

/// The five verdicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    Lawful,
    LawfulUnderLicence,
    LicenceRequiredNoneRecorded,
    NoAcquisitionRecord,
    NeedsReview,
}

impl VerdictKind {
    pub fn label(self) -> &'static str {
        match self {
            VerdictKind::Lawful => "lawful",
            VerdictKind::LawfulUnderLicence => "lawful-under-licence",
            VerdictKind::LicenceRequiredNoneRecorded => "licence-required-none-recorded",
            VerdictKind::NoAcquisitionRecord => "no-acquisition-record",
            VerdictKind::NeedsReview => "needs-review",
        }
    }
}

impl fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Was this chip lawful to ship where it went, when it went?
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub verdict: VerdictKind,
    pub reason: String,
    /// The rules in force on the ship date that the verdict rests on.
    pub rules: Vec<RuleVersion>,
    pub citations: Vec<String>,
    /// Facts a person supplied or must confirm.
    pub human_inputs: Vec<String>,
}

/// What one rule asks for a shipment.
#[derive(Debug)]
struct Requirement {
    rule: RuleVersion,
    /// `true` = a licence exception with notification (NAC) suffices.
    nac: bool,
    why: String,
}

/// The verdict for `sku` shipped as `shipment` (or no record), under the rules in force that day.
pub fn verdict(sku: Option<&Sku>, dc: Option<DatacenterJudgement>, shipment: Option<&Shipment>) -> Verdict {
    let Some(s) = shipment else {
        return Verdict {
            verdict: VerdictKind::NoAcquisitionRecord,
            reason: "no acquisition record: ship date, destination and licence are unknown".into(),
            rules: vec![],
            citations: vec![],
            human_inputs: vec![],
        };
    };
    let mut human_inputs = vec![
        "end user, end use and party headquarters (D:5/Macau-headquartered parties need a licence anywhere, §744.23(a)(3)) are not assessed".to_string(),
    ];
    let Some(sku) = sku else {
        return Verdict {
            verdict: VerdictKind::NeedsReview,
            reason: "the GPU's SKU is unknown, so no rule can be applied".into(),
            rules: vec![],
            citations: vec![],
            human_inputs,
        };
    };
    let dc = dc.unwrap_or_else(|| DatacenterJudgement::catalog_default(sku));
    human_inputs.insert(0, dc.describe());
    let on = s.shipped_on;
    let to = s.ship_to;
    let dest = country::treated_as(to);
    let groups = country::groups(to, on);
    let dest_desc = if to == dest {
        format!("{} ({})", to, to.name())
    } else {
        format!("{} ({}, treated as {} under the EAR)", to, to.name(), dest)
    };

    let mut reqs: Vec<Requirement> = Vec::new();
    let mut review: Vec<String> = Vec::new();
    let mut rules_used: Vec<RuleVersion> = Vec::new();

    // Aug 2022 letter: China (incl. HK) and Russia, until the Oct 2022 rule codified it.
    if on >= RuleVersion::Aug2022Notice.effective() && on < RuleVersion::Oct2022.effective() {
        rules_used.push(RuleVersion::Aug2022Notice);
        if dest == country::CHINA || dest == country::RUSSIA {
            let c = classify(sku, RuleVersion::Aug2022Notice, dc);
            match c.bucket {
                Bucket::NoticeApplies => reqs.push(Requirement {
                    rule: RuleVersion::Aug2022Notice,
                    nac: false,
                    why: format!("the Aug 2022 letter requires a licence for {} to {}", sku.sku, dest_desc),
                }),
                Bucket::NeedsReview => review.push(format!("Aug 2022 letter: {}", c.basis)),
                _ => {}
            }
        }
    }
    // Oct 2022 rule: China (+ Macau from 18 Jan 2023), until the Oct 2023 rule replaced it.
    if on >= RuleVersion::Oct2022.effective() && on < OCT2023_EFFECTIVE {
        rules_used.push(RuleVersion::Oct2022);
        let in_scope = dest == country::CHINA || (dest == country::MACAU && on >= MACAU_INTO_2022_RULE);
        if in_scope {
            let c = classify(sku, RuleVersion::Oct2022, dc);
            match c.bucket {
                Bucket::Controlled => reqs.push(Requirement {
                    rule: RuleVersion::Oct2022,
                    nac: false,
                    why: format!(
                        "{} is 3A090 under the Oct 2022 rule ({}) and {} needs a licence",
                        sku.sku, c.basis, dest_desc
                    ),
                }),
                Bucket::NeedsReview => review.push(format!("Oct 2022 rule: {}", c.basis)),
                _ => {}
            }
        }
        // NVIDIA's 8-K: TPP >= 4800 datacenter products were restricted from 23 Oct 2023.
        if on >= OCT2023_IMMEDIATE {
            let c = classify(sku, RuleVersion::Oct2023, dc);
            if c.bucket == Bucket::A1
                && dc.value != Datacenter::No
                && in_2023_scope(to, on, &groups)
                && !reqs.iter().any(|r| r.rule == RuleVersion::Oct2022)
            {
                review.push(format!(
                    "shipped between 23 Oct and 17 Nov 2023: NVIDIA's 8-K says the TPP ≥ 4800 datacenter requirement to {dest_desc} applied immediately, the FR text says 17 Nov 2023"
                ));
            }
        }
    }
    // Oct 2023 rule (with Apr 2024 corrections) from 17 Nov 2023.
    if on >= OCT2023_EFFECTIVE {
        rules_used.push(RuleVersion::Oct2023);
        if in_2023_scope(to, on, &groups) {
            let c = classify(sku, RuleVersion::Oct2023, dc);
            let d5_or_macau = groups.contains(&CountryGroup::D5) || dest == country::MACAU;
            match (&c.bucket, dc.value) {
                (Bucket::A1 | Bucket::A2, Datacenter::Yes) => reqs.push(Requirement {
                    rule: RuleVersion::Oct2023,
                    nac: false,
                    why: format!(
                        "{} is {} ({}) and {} needs a licence under the Oct 2023 rule",
                        sku.sku, c.bucket, c.basis, dest_desc
                    ),
                }),
                (Bucket::A1, Datacenter::No) | (Bucket::B1 | Bucket::B2, Datacenter::Yes) => {
                    if d5_or_macau {
                        reqs.push(Requirement {
                            rule: RuleVersion::Oct2023,
                            nac: true,
                            why: format!(
                                "{} is {} and NAC-eligible: {} needs a NAC notification to BIS",
                                sku.sku, c.bucket, dest_desc
                            ),
                        });
                    } else if on < ACA_SPLIT {
                        review.push(format!(
                            "{} is {} (NAC-eligible) shipped to {} before the 4 Apr 2024 ACA split: confirm whether a NAC notification was filed",
                            sku.sku, c.bucket, dest_desc
                        ));
                    }
                }
                (Bucket::A1 | Bucket::A2 | Bucket::B1 | Bucket::B2, Datacenter::Unknown) => review.push(format!(
                    "{} is {} and the datacenter judgement (licence vs NAC/ACA) is open",
                    sku.sku, c.bucket
                )),
                (Bucket::NeedsReview, _) => review.push(format!("Oct 2023 rule: {}", c.basis)),
                _ => {}
            }
        }
    }
    // Apr 2025 H20 letter: China, HK, Macau and D:5.
    if on >= RuleVersion::Apr2025H20Notice.effective() {
        rules_used.push(RuleVersion::Apr2025H20Notice);
        let in_scope = dest == country::CHINA || dest == country::MACAU || groups.contains(&CountryGroup::D5);
        if in_scope {
            let c = classify(sku, RuleVersion::Apr2025H20Notice, dc);
            if c.bucket == Bucket::NoticeApplies {
                reqs.push(Requirement {
                    rule: RuleVersion::Apr2025H20Notice,
                    nac: false,
                    why: format!(
                        "the Apr 2025 letter requires a licence for {} to {} ({})",
                        sku.sku, dest_desc, c.basis
                    ),
                });
            }
        }
    }
    // Jan 2026: the review policy for China/Macau (a licence is still required).
    let mut policy_note = String::new();
    if on >= RuleVersion::Jan2026China.effective() && (dest == country::CHINA || dest == country::MACAU) {
        rules_used.push(RuleVersion::Jan2026China);
        let c = classify(sku, RuleVersion::Jan2026China, dc);
        match c.bucket {
            Bucket::CaseByCase => {
                policy_note = format!("; since 15 Jan 2026 such licences are reviewed case by case ({}), subject to the rule's certifications and US third-party testing", c.basis)
            }
            Bucket::PresumptionOfDenial => {
                policy_note = format!("; such licences keep a presumption of denial ({})", c.basis)
            }
            _ => {}
        }
    }

    let mut citations: Vec<String> = rules_used.iter().map(|r| r.citation().to_string()).collect();
    citations.dedup();
    let mut rules: Vec<RuleVersion> = reqs.iter().map(|r| r.rule).collect();
    if !policy_note.is_empty() {
        rules.push(RuleVersion::Jan2026China);
    }
    rules.dedup();
    let date_s = on.to_string();

    if !reqs.is_empty() {
        // A licence requirement rests on the rules that impose it, not on every rule in force.
        let citations: Vec<String> = rules.iter().map(|r| r.citation().to_string()).collect();
        let whys: Vec<&str> = reqs.iter().map(|r| r.why.as_str()).collect();
        let all_nac = reqs.iter().all(|r| r.nac);
        let what = if all_nac { "NAC notification" } else { "licence" };
        return match s.licence.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
            Some(lic) => Verdict {
                verdict: VerdictKind::LawfulUnderLicence,
                reason: format!(
                    "shipped {date_s}: {}; authorization {lic:?} is recorded{policy_note}",
                    whys.join("; ")
                ),
                rules,
                citations,
                human_inputs: {
                    human_inputs.push(format!(
                        "that {lic:?} is a valid authorization covering this item, destination and end user"
                    ));
                    human_inputs
                },
            },
            None => Verdict {
                verdict: VerdictKind::LicenceRequiredNoneRecorded,
                reason: format!("shipped {date_s}: {}; no {what} is recorded{policy_note}", whys.join("; ")),
                rules,
                citations,
                human_inputs,
            },
        };
    }
    if !review.is_empty() {
        return Verdict {
            verdict: VerdictKind::NeedsReview,
            reason: format!("shipped {date_s} to {dest_desc}: {}", review.join("; ")),
            rules: rules_used,
            citations,
            human_inputs,
        };
    }
    let reason = if on < RuleVersion::Aug2022Notice.effective() {
        format!("shipped {date_s}, before the first advanced-computing control (26 Aug 2022)")
    } else {
        let groups_s = if groups.is_empty() {
            "no restricted country group".to_string()
        } else {
            groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(", ")
        };
        format!(
            "shipped {date_s} to {dest_desc} [{groups_s}]: no advanced-computing licence requirement for {} under the rules then in force",
            sku.sku
        )
    };
    Verdict { verdict: VerdictKind::Lawful, reason, rules: rules_used, citations, human_inputs }
}

/// The Oct 2023 rule's destinations: D:1, D:4 or D:5 and not also A:5 or A:6, plus Macau.
fn in_2023_scope(to: Country, _on: Date, groups: &[CountryGroup]) -> bool {
    let dest = country::treated_as(to);
    if dest == country::MACAU {
        return true;
    }
    let d = groups.iter().any(|g| matches!(g, CountryGroup::D1 | CountryGroup::D4 | CountryGroup::D5));
    let a = groups.iter().any(|g| matches!(g, CountryGroup::A5 | CountryGroup::A6));
    d && !a
}
