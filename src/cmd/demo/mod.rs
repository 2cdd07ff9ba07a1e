//! `chipledger demo`: the whole story on this machine, in a fresh data directory, on the
//! embedded SQLite ledger, without a GPU. What is simulated is said so as it happens. Each scene
//! is a function of its own; `run` tells them in order over one [`Story`].

mod dashboard;
mod diversion;
mod evidence;
mod hosts;
mod inference;
mod location;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use chipledger_domain::keys::SigningKey;
use chipledger_domain::log::Clock;
use chipledger_ledger::{InitInfo, Ledger, SystemClock, ADMIN_KEY_FILE};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Then serve the dashboard on loopback and print an auditor's login token (Ctrl-C stops).
    #[arg(long)]
    serve: bool,
    /// Where `--serve` listens.
    #[arg(long, default_value = "127.0.0.1:8080", requires = "serve")]
    listen: String,
}

/// What the scenes share: the demo's data directory, its ledger and the admin who signs for it.
struct Story {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    ledger: Ledger,
    info: InitInfo,
    admin: SigningKey,
    /// The admin key's last counter.
    admin_counter: u64,
}

pub fn run(data_dir: Option<PathBuf>, args: Args) -> Result<()> {
    let started = Instant::now();
    let dir = fresh_dir(data_dir)?;
    println!("chipledger demo — every step on this machine, no GPU needed");
    println!("SIMULATED: four GPU hosts whose agents import real nvidia-smi dumps (evidence, not live probes), a tiny random-weight model, and the distances between hosts and landmarks.");
    println!();

    println!("1. ledger: {}", dir.display());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (ledger, info) = Ledger::init(&dir, "demo.chipledger.local/log", clock.clone(), &mut rand_core::OsRng)
        .with_context(|| format!("creating the demo ledger in {}", dir.display()))?;
    let admin = SigningKey::from_pkcs8_pem_owned(std::fs::read_to_string(dir.join(ADMIN_KEY_FILE))?)?;
    println!("   log key {}", info.log_verifier_key);
    let mut story = Story { dir, clock, ledger, info, admin, admin_counter: 1 };

    let hosts = hosts::hosts();
    let keys = evidence::enroll(&mut story, &hosts)?;
    evidence::attest(&story, &hosts, &keys.agents)?;
    evidence::acquisitions(&mut story)?;
    location::prove(&story, &hosts, &keys.agents, &keys.landmarks)?;
    let fleet = inference::fleet(&story)?;
    inference::plan_r1(&story, &fleet)?;
    let run = inference::run_tiny(&story, &fleet, keys.node)?;
    verify::report_and_ledger(&story, &fleet, &run)?;
    diversion::report(&story)?;

    println!();
    println!(
        "done in {:.1} s. Look around: chipledger --data-dir {} ledger log",
        started.elapsed().as_secs_f64(),
        story.dir.display()
    );
    println!("  chipledger report verify {} --log-key {}", run.report_path.display(), story.info.log_verifier_key);
    println!(
        "  chipledger report verify {} --log-key {}   (the diversion report)",
        story.dir.join("diversion-report.json").display(),
        story.info.log_verifier_key
    );
    println!(
        "  chipledger --data-dir {} run --model {} --policy inference/policies/demo.toml --node-name node-01 --prompt \"Hello\"",
        story.dir.display(),
        story.dir.join("models").join("tiny-r1-distill-qwen2").display()
    );
    println!(
        "  chipledger --data-dir {} node serve --model {} --policy inference/policies/demo.toml --node-name node-01   (an OpenAI endpoint with a receipt per answer)",
        story.dir.display(),
        story.dir.join("models").join("tiny-r1-distill-qwen2").display()
    );
    if !args.serve {
        println!("  chipledger demo --serve   (the same story, then the auditor dashboard in your browser)");
        return Ok(());
    }
    dashboard::serve(story, &args.listen)
}

/// The data directory to tell the story in: the one given, if empty, else a new one under the
/// system's temporary directory.
fn fresh_dir(data_dir: Option<PathBuf>) -> Result<PathBuf> {
    Ok(match data_dir {
        Some(d) => {
            if d.exists() && std::fs::read_dir(&d).map(|mut r| r.next().is_some()).unwrap_or(true) {
                bail!("{} is not empty; the demo needs a fresh data directory", d.display());
            }
            d
        }
        None => std::env::temp_dir().join(format!(
            "chipledger-demo-{}-{}",
            std::process::id(),
            time::OffsetDateTime::now_utc().unix_timestamp()
        )),
    })
}
