//! `chipledger classify`.

use anyhow::{bail, Context, Result};
use chipledger_domain::catalog::{Catalog, Datacenter, PciQuery, Sku};
use chipledger_domain::country::Country;
use chipledger_domain::fingerprint::GpuFacts;
use chipledger_domain::identify::{identify, Anomaly};
use chipledger_domain::rules::{
    classify_all, verdict, Classification, DatacenterJudgement, JudgementSource, Shipment, Verdict,
};
use serde::Serialize;
use time::Date;

use crate::output::{self, Format};

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["sku", "pci"]))]
pub struct Args {
    /// Catalog SKU name, e.g. H800-SXM5-80GB (see `chipledger catalog`).
    #[arg(long)]
    sku: Option<String>,
    /// PCI id: 0xDEVICE or 0xDEVICE:0xSUBSYSTEM (NVML's 0x232410DE form also works).
    #[arg(long)]
    pci: Option<String>,
    /// Ship date, YYYY-MM-DD: with --to, gives the acquisition verdict.
    #[arg(long, requires = "to")]
    shipped: Option<String>,
    /// Ship-to country, ISO 3166-1 alpha-2 (CN, HK, MO, AE, US…).
    #[arg(long, requires = "shipped")]
    to: Option<String>,
    /// Licence, NAC or ACA reference recorded for the shipment.
    #[arg(long, requires = "shipped")]
    licence: Option<String>,
    /// Override the catalog's "designed or marketed for datacenters" judgement.
    #[arg(long, value_enum)]
    datacenter: Option<DatacenterArg>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DatacenterArg {
    Yes,
    No,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    sku: &'a Sku,
    anomalies: Vec<Anomaly>,
    datacenter: DatacenterJudgement,
    classifications: Vec<Classification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shipment: Option<Shipment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verdict: Option<Verdict>,
}

pub fn run(args: Args) -> Result<()> {
    let catalog = Catalog::embedded()?;
    let (sku, anomalies) = match (&args.sku, &args.pci) {
        (Some(name), _) => (catalog.sku(name)?, vec![]),
        (None, Some(pci)) => {
            let q = PciQuery::parse(pci)?;
            let facts =
                GpuFacts { pci_device_id: Some(q.device_id), pci_subsystem_id: q.subsystem_id, ..Default::default() };
            let id = identify(catalog, &facts);
            match id.sku {
                Some(name) => (catalog.sku(&name)?, id.anomalies),
                None => bail!(
                    "PCI device id 0x{:04x} is not in the catalog, so it cannot be classified: it needs human review (never a guess). Known ids: `chipledger catalog`",
                    q.device_id
                ),
            }
        }
        // Invariant: clap's ArgGroup requires one of them.
        (None, None) => bail!("give --sku NAME or --pci 0xDEVICE"),
    };
    let datacenter = match args.datacenter {
        Some(DatacenterArg::Yes) => DatacenterJudgement { value: Datacenter::Yes, source: JudgementSource::Operator },
        Some(DatacenterArg::No) => DatacenterJudgement { value: Datacenter::No, source: JudgementSource::Operator },
        None => DatacenterJudgement::catalog_default(sku),
    };
    let shipment = match (&args.shipped, &args.to) {
        (Some(d), Some(c)) => {
            Some(Shipment { shipped_on: parse_date(d)?, ship_to: Country::parse(c)?, licence: args.licence.clone() })
        }
        _ => None,
    };
    let report = Report {
        sku,
        anomalies,
        datacenter,
        classifications: classify_all(sku, datacenter),
        verdict: shipment.as_ref().map(|s| verdict(Some(sku), Some(datacenter), Some(s))),
        shipment,
    };
    match args.format {
        Format::Json => output::print_json(&report),
        Format::Csv => bail!("--format csv is for lists; use table or json here"),
        Format::Table => {
            print_table(&report);
            Ok(())
        }
    }
}

fn parse_date(s: &str) -> Result<Date> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &fmt).with_context(|| format!("--shipped {s:?} is not a date of the form YYYY-MM-DD"))
}

fn print_table(r: &Report<'_>) {
    let s = r.sku;
    let ids: Vec<String> = s.pci_device_ids.iter().map(|d| format!("0x{d:04x}")).collect();
    println!("{} — {} ({}; PCI {})", s.sku, s.marketing_name, s.architecture, ids.join(", "));
    println!(
        "TPP {}  PD {}  memory {} GiB at {} GB/s  NVLink {} GB/s ({} links)",
        output::num(s.tpp, s.is_uncertain("tpp")),
        output::num(s.performance_density, s.is_uncertain("performance_density")),
        output::num(s.memory_gib, s.is_uncertain("memory_gib")),
        output::num(s.memory_bandwidth_gbs, s.is_uncertain("memory_bandwidth_gbs")),
        output::num(s.nvlink_bidirectional_gbs, s.is_uncertain("nvlink_bidirectional_gbs")),
        s.nvlink_links.map_or("—".to_string(), |v| v.to_string()),
    );
    if !s.uncertain.is_empty() || !s.unknown.is_empty() {
        println!("catalog flags: uncertain [{}], unknown [{}]", s.uncertain.join(", "), s.unknown.join(", "));
    }
    for a in &r.anomalies {
        println!("anomaly ({:?}): {}", a.severity(), a.explain());
    }
    let mut t = output::table(&["rule", "classification", "why", "citation"]);
    for c in &r.classifications {
        let mut why = c.basis.clone();
        if let Some(e) = &c.exception {
            why.push_str(&format!("; exception: {e}"));
        }
        if !c.uncertain_inputs.is_empty() {
            why.push_str(&format!(" (uncertain: {})", c.uncertain_inputs.join(", ")));
        }
        t.add_row(vec![c.rule.title().to_string(), c.bucket.label().to_string(), why, c.citation.clone()]);
    }
    println!("{t}");
    if let Some(v) = &r.verdict {
        println!("verdict: {}", v.verdict);
        println!("  {}", v.reason);
        for c in &v.citations {
            println!("  cite: {c}");
        }
        for h in &v.human_inputs {
            println!("  human input: {h}");
        }
    } else {
        println!("human input: {}", human(&r.datacenter));
        println!("(add --shipped YYYY-MM-DD --to CC [--licence REF] for the acquisition verdict)");
    }
    println!("Not legal advice: the ECCN determination is for a trade-compliance professional.");
}

fn human(d: &DatacenterJudgement) -> String {
    let v = match d.value {
        Datacenter::Yes => "yes",
        Datacenter::No => "no",
        Datacenter::Unknown => "undecided",
    };
    let src = match d.source {
        JudgementSource::Catalog => "catalog default; override with --datacenter yes|no",
        JudgementSource::Operator => "given with --datacenter",
    };
    format!("designed or marketed for datacenters: {v} ({src})")
}
