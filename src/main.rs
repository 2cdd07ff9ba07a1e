//! `chipledger`: the command-line front of chipledger. One thin module per subcommand under
//! `cmd/`; all logic lives in the library crates. This binary owns stdout and the tracing
//! subscriber; errors are printed once, with their context chain, and exit non-zero.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod cmd;
mod datadir;
mod output;
mod witnesses;

/// Auditable GPU provenance: which chips, where they came from, and whether they were lawful.
#[derive(Debug, Parser)]
#[command(name = "chipledger", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// The data directory (default: $CHIPLEDGER_HOME, else the platform data directory).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole story on this machine: a ledger, simulated hosts from real dumps, acquisitions,
    /// the fleet, an R1 plan, an attested run and its verified provenance report.
    Demo(cmd::demo::Args),
    /// Acquisition records: how GPUs were bought and shipped (admin).
    #[command(subcommand)]
    Acquisition(cmd::acquisition::Command),
    /// The host agent: probe GPUs, attest them to the ledger, run as a daemon, enroll.
    #[command(subcommand)]
    Agent(cmd::agent::Command),
    /// List the GPU catalog: SKUs, PCI ids and datasheet figures, with sources.
    Catalog(cmd::catalog::Args),
    /// Identify a SKU and classify it under every US export rule version; with shipment facts,
    /// give the acquisition verdict.
    Classify(cmd::classify::Args),
    /// The fleet as an auditor exports it: every GPU's SKU, evidence, class, verdict and
    /// anomalies, judged from the log's facts (the dashboard's rows and columns).
    Fleet(cmd::fleet::Args),
    /// Kubernetes: node-feature-discovery labels and DRA device taints from the ledger.
    #[command(subcommand)]
    K8s(cmd::k8s::Command),
    /// Slurm's hooks: a Prolog that refuses jobs on GPUs that do not qualify and records the
    /// rest, an Epilog, node features from the ledger, a health check that drains and resumes.
    #[command(subcommand)]
    Slurm(cmd::slurm::Command),
    /// Create a new ledger: database, log key and first admin key.
    Init(cmd::init::Args),
    /// Which GPUs could run a model under a policy (models too large for this machine too).
    Plan(cmd::inference::PlanArgs),
    /// Run a DeepSeek-R1-family model on qualifying GPUs only and sign a provenance report.
    Run(cmd::inference::RunArgs),
    /// The serving node: an OpenAI-compatible endpoint on qualifying GPUs only, with a signed
    /// receipt for every response.
    #[command(subcommand)]
    Node(cmd::node::Command),
    /// Reports: verify provenance reports, serving receipts and diversion reports offline; write
    /// a diversion report (chips located elsewhere than licensed, other end users, tampering).
    #[command(subcommand)]
    Report(cmd::inference::ReportCommand),
    /// Models: generate the deterministic tiny test model.
    #[command(subcommand)]
    Model(cmd::inference::ModelCommand),
    /// Serve the ledger over HTTP: the log API and C2SP tiles for agents and nodes, the auditor
    /// dashboard, /metrics.
    Serve(cmd::serve::Args),
    /// People's tokens for the server (dashboard, exports, metrics): create, list, revoke.
    #[command(subcommand)]
    Tokens(cmd::tokens::Command),
    /// An admin's calls about one GPU: settle its history after review, resolve a shared serial.
    #[command(subcommand)]
    Gpu(cmd::gpu::Command),
    /// NVIDIA GPU attestation evidence: verify a report and its certificate chain offline.
    #[command(subcommand)]
    Evidence(cmd::evidence::Command),
    /// Key management: generate, enroll, revoke, list.
    #[command(subcommand)]
    Keys(cmd::keys::Command),
    /// The transparency log: append, list, checkpoints, proofs, audit, evidence bundles.
    #[command(subcommand)]
    Ledger(cmd::ledger::Command),
    /// Signed notes and checkpoints.
    #[command(subcommand)]
    Note(cmd::note::Command),
    /// Transparency-log proofs.
    #[command(subcommand)]
    Proof(cmd::proof::Command),
    /// Follow a log's public checkpoint and tiles into a directory, verifying every step; with
    /// --listen, serve what it holds (checkpoint, tiles, proofs) while the log is away.
    Mirror(cmd::mirror::Args),
    /// A C2SP tlog-witness: cosign each checkpoint of the logs it follows that is consistent
    /// with the last it cosigned.
    #[command(subcommand)]
    Witness(cmd::witness::Command),
    /// A landmark: time hosts' signed answers from surveyed coordinates and log location proofs.
    #[command(subcommand)]
    Landmark(cmd::landmark::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(matches!(
        cli.command,
        Command::Agent(cmd::agent::Command::Run { .. })
            | Command::Serve(_)
            | Command::Witness(cmd::witness::Command::Serve { .. })
            | Command::Landmark(_)
            | Command::Mirror(_)
            | Command::Node(_)
    ));
    let result = match cli.command {
        Command::Agent(c) => cmd::agent::run(cli.data_dir, c),
        Command::Demo(a) => cmd::demo::run(cli.data_dir, a),
        Command::Acquisition(c) => cmd::acquisition::run(cli.data_dir, c),
        Command::Catalog(a) => cmd::catalog::run(a),
        Command::Fleet(a) => cmd::fleet::run(cli.data_dir, a),
        Command::Slurm(c) => cmd::slurm::run(c),
        Command::K8s(c) => cmd::k8s::run(cli.data_dir, c),
        Command::Plan(a) => cmd::inference::plan(cli.data_dir, a),
        Command::Run(a) => cmd::inference::run(cli.data_dir, a),
        Command::Report(c) => cmd::inference::report(cli.data_dir, c),
        Command::Node(c) => cmd::node::run(cli.data_dir, c),
        Command::Serve(a) => cmd::serve::run(cli.data_dir, a),
        Command::Model(c) => cmd::inference::model(c),
        Command::Classify(a) => cmd::classify::run(a),
        Command::Init(a) => cmd::init::run(cli.data_dir, a),
        Command::Keys(c) => cmd::keys::run(cli.data_dir, c),
        Command::Gpu(c) => cmd::gpu::run(cli.data_dir, c),
        Command::Tokens(c) => cmd::tokens::run(cli.data_dir, c),
        Command::Ledger(c) => cmd::ledger::run(cli.data_dir, c),
        Command::Note(c) => cmd::note::run(c),
        Command::Proof(c) => cmd::proof::run(c),
        Command::Witness(c) => cmd::witness::run(c),
        Command::Landmark(c) => cmd::landmark::run(cli.data_dir, c),
        Command::Evidence(c) => cmd::evidence::run(c),
        Command::Mirror(a) => cmd::mirror::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr: `info` and up for daemons, `warn` and up for one-shot commands, or the
/// level in `CHIPLEDGER_LOG` (error, warn, info, debug, trace). Under systemd (`JOURNAL_STREAM`
/// set) lines carry no timestamp or colour: journald adds its own.
fn init_tracing(daemon: bool) {
    use tracing_subscriber::filter::LevelFilter;
    let level = match std::env::var("CHIPLEDGER_LOG").unwrap_or_default().to_ascii_lowercase().as_str() {
        "error" => LevelFilter::ERROR,
        "warn" => LevelFilter::WARN,
        "info" => LevelFilter::INFO,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        "off" => LevelFilter::OFF,
        _ if daemon => LevelFilter::INFO,
        _ => LevelFilter::WARN,
    };
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(level).with_target(false);
    if journald {
        builder.without_time().with_ansi(false).init();
    } else {
        builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
}
