//! `chipledger catalog`.

use anyhow::Result;
use chipledger_domain::catalog::Catalog;

use crate::output::{self, Format};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub fn run(args: Args) -> Result<()> {
    let catalog = Catalog::embedded()?;
    match args.format {
        Format::Json => output::print_json(&catalog.skus),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record([
                "sku",
                "marketing_name",
                "pci_device_ids",
                "memory_gib",
                "memory_bandwidth_gbs",
                "tpp",
                "performance_density",
                "nvlink_bidirectional_gbs",
                "nvlink_links",
                "uncertain",
                "unknown",
                "sources",
            ])?;
            for s in &catalog.skus {
                let ids: Vec<String> = s.pci_device_ids.iter().map(|d| format!("0x{d:04x}")).collect();
                let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
                w.write_record([
                    s.sku.clone(),
                    s.marketing_name.clone(),
                    ids.join("|"),
                    opt(s.memory_gib),
                    opt(s.memory_bandwidth_gbs),
                    opt(s.tpp),
                    opt(s.performance_density),
                    opt(s.nvlink_bidirectional_gbs),
                    s.nvlink_links.map(|v| v.to_string()).unwrap_or_default(),
                    s.uncertain.join("|"),
                    s.unknown.join("|"),
                    s.sources.join(";"),
                ])?;
            }
            w.flush()?;
            Ok(())
        }
        Format::Table => {
            let mut t = output::table(&[
                "SKU",
                "PCI ids",
                "memory GiB",
                "mem BW GB/s",
                "TPP",
                "PD",
                "NVLink GB/s",
                "links",
                "datacenter",
            ]);
            for s in &catalog.skus {
                let ids: Vec<String> = s.pci_device_ids.iter().map(|d| format!("0x{d:04x}")).collect();
                t.add_row(vec![
                    s.sku.clone(),
                    ids.join(" "),
                    output::num(s.memory_gib, s.is_uncertain("memory_gib")),
                    output::num(s.memory_bandwidth_gbs, s.is_uncertain("memory_bandwidth_gbs")),
                    output::num(s.tpp, s.is_uncertain("tpp")),
                    output::num(s.performance_density, s.is_uncertain("performance_density")),
                    output::num(s.nvlink_bidirectional_gbs, s.is_uncertain("nvlink_bidirectional_gbs")),
                    s.nvlink_links.map(|v| v.to_string()).unwrap_or_else(|| "—".into()),
                    format!("{:?}", s.datacenter_default()).to_lowercase(),
                ]);
            }
            println!("{t}");
            println!("~ = flagged UNCERTAIN in the catalog, — = unknown. Datasheet dense figures; sources per SKU in --format json.");
            Ok(())
        }
    }
}
