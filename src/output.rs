//! Output formats shared by the subcommands.

use clap::ValueEnum;
use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[value(alias = "text")]
    Table,
    Json,
    Csv,
}

/// A table for a terminal: condensed borders, wrapped to the terminal width.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic).set_header(header.to_vec());
    t
}

/// Pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A number the catalog may not have: blank when absent, `~` when flagged uncertain.
pub fn num(v: Option<f64>, uncertain: bool) -> String {
    match v {
        None => "—".to_string(),
        Some(v) => {
            let s = if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v}") };
            if uncertain {
                format!("~{s}")
            } else {
                s
            }
        }
    }
}

/// The first 16 characters of a long identifier, for tables.
pub fn short(id: &str) -> String {
    match id.char_indices().nth(16) {
        Some((cut, _)) => format!("{}…", &id[..cut]),
        None => id.to_string(),
    }
}

/// A progress bar on stderr when it is a terminal (none otherwise), counting `unit`.
pub fn progress_bar(unit: &str, len: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    let template = format!("{{bar:40}} {{pos}}/{{len}} {unit} ({{per_sec}}, {{eta}} left)");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    Some(bar)
}

/// One GPU a run used, as run summaries print it.
pub fn run_gpu(gpu: &chipledger_domain::records::RunGpu) -> String {
    format!(
        "{} {} serial {} — {}, acquisition {}, attested at log index {} ({} s before the run)",
        gpu.uuid,
        gpu.sku.as_deref().unwrap_or("?"),
        gpu.serial.as_deref().unwrap_or("?"),
        gpu.classification,
        gpu.acquisition_verdict,
        gpu.attestation.log_index,
        gpu.attestation.age_seconds
    )
}
