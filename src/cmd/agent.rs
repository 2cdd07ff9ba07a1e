//! `chipledger agent …`: probe, attest, run the daemon, enroll the host key.

mod responder;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use chipledger_agent::attest::{Attestor, AttestorConfig};
use chipledger_agent::config::{self, AgentConfig};
use chipledger_agent::daemon::{Control, Daemon};
use chipledger_agent::{host, FileProbe, GpuProbe, NvmlProbe, ProbeReport};
use chipledger_domain::catalog::Catalog;
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::identify::{identify, HistoryRules, Identification};
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::rules::{classify, DatacenterJudgement, RuleVersion};
use chipledger_ledger::SystemClock;
use serde::Serialize;

use crate::datadir;
use crate::output::{self, Format};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Look at this host's GPUs (or import nvidia-smi dumps) and show one row per GPU. Signs nothing.
    Probe {
        #[command(flatten)]
        source: SourceArgs,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Make one signed attestation, submit it to the ledger and check the receipt.
    Attest {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        agent: AgentArgs,
        /// NVIDIA attestation evidence captured elsewhere for one GPU: its SPDM report (hex text
        /// or raw) — with --cert-chain. Readers verify it; its nonce is the report's own, so its
        /// freshness is unknown.
        #[arg(long, value_name = "FILE", requires = "cert_chain")]
        evidence: Option<PathBuf>,
        /// The GPU attestation key's certificate chain (PEM, leaf first) for --evidence.
        #[arg(long, value_name = "FILE", requires = "evidence")]
        cert_chain: Option<PathBuf>,
        /// Which GPU the evidence is for (default: the only one).
        #[arg(long, value_name = "UUID", requires = "evidence")]
        evidence_gpu: Option<String>,
        /// NVIDIA's signed reference manifest (RIM, a SWID tag) for the GPU's driver, carried in
        /// the attestation so readers compare the report's measurements offline.
        #[arg(long, value_name = "FILE", requires = "evidence")]
        driver_rim: Option<PathBuf>,
        /// NVIDIA's signed RIM for the GPU's VBIOS.
        #[arg(long, value_name = "FILE", requires = "evidence")]
        vbios_rim: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Run the agent daemon: attest every interval and whenever the GPUs change, and answer the
    /// configured landmarks at start and every --locate-every; SIGTERM stops it, SIGHUP re-reads
    /// the configuration.
    Run {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        agent: AgentArgs,
        #[command(flatten)]
        locating: LocatingArgs,
    },
    /// Answer landmarks' challenges once each: every landmark times this host's signed answers
    /// to its fresh nonces and logs a location proof of the holder of this host's key.
    Locate {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        agent: AgentArgs,
        /// A landmark's address, HOST:PORT (repeatable; default: `landmarks` of agent.toml).
        #[arg(long = "landmark", value_name = "ADDR")]
        landmarks: Vec<String>,
        /// Seconds to wait on a landmark at any one step.
        #[arg(long, default_value_t = 10)]
        timeout_secs: u64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Create this host's agent key (mode 0600) and print what an admin runs to enroll it.
    Enroll {
        #[command(flatten)]
        agent: AgentArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct SourceArgs {
    /// Import recorded `nvidia-smi -q -x`, `nvidia-smi -q` or `nvidia-smi nvlink -s` output
    /// instead of probing NVML (repeatable). Records say the facts were imported.
    #[arg(long = "from-file", value_name = "FILE")]
    from_file: Vec<PathBuf>,
    /// Load NVML from this path instead of the default search path.
    #[arg(long, value_name = "PATH")]
    nvml_library: Option<PathBuf>,
}

/// Which landmarks `agent run` answers, and how often.
#[derive(Clone, Debug, clap::Args)]
pub struct LocatingArgs {
    /// A landmark to answer, HOST:PORT (repeatable, at most 16; replaces `landmarks` of
    /// agent.toml): once at start, then every --locate-every.
    #[arg(long = "landmark", value_name = "ADDR")]
    landmarks: Vec<String>,
    /// How often to answer the landmarks, ± the jitter (e.g. 30m, 1h; at least 10s; default:
    /// `locate_interval` of agent.toml, else 1h).
    #[arg(long, value_name = "DURATION", value_parser = parse_locate_every)]
    locate_every: Option<Duration>,
}

impl LocatingArgs {
    /// The flags over the file and the environment.
    fn apply(&self, config: &mut AgentConfig) -> Result<()> {
        if !self.landmarks.is_empty() {
            config::check_landmarks(&self.landmarks).map_err(|m| anyhow!("--landmark: {m}"))?;
            config.landmarks = self.landmarks.clone();
        }
        if let Some(every) = self.locate_every {
            config.locate_interval = every;
        }
        Ok(())
    }
}

fn parse_locate_every(s: &str) -> Result<Duration, String> {
    config::parse_duration_at_least(s, config::MIN_LOCATE_INTERVAL)
}

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Agent configuration (default: /etc/chipledger/agent.toml when it exists).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The ledger: a data directory (default: the global --data-dir) or a server's URL
    /// (http://host:port of `chipledger serve`).
    #[arg(long, value_name = "PATH|URL")]
    ledger: Option<String>,
    /// The log's verifier key (required with a URL; checked against a local ledger's).
    #[arg(long, value_name = "VKEY")]
    log_key: Option<String>,
    /// The agent's private key (default: agent-key.pem in the state directory).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Spool and state directory (default: <data-dir>/agent).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Report this host name instead of the system's.
    #[arg(long)]
    hostname: Option<String>,
}

/// File, environment, then flags.
struct Settings {
    config: AgentConfig,
    config_path: Option<PathBuf>,
    state_dir: PathBuf,
    key_file: PathBuf,
    ledger: Option<crate::datadir::LedgerTarget>,
}

fn settings(data_dir: Option<PathBuf>, args: &AgentArgs, source: Option<&SourceArgs>) -> Result<Settings> {
    let env = |k: &str| std::env::var(k).ok();
    let mut config = AgentConfig::load(args.config.as_deref(), &env)?;
    if let Some(h) = &args.hostname {
        config.hostname = Some(h.clone());
    }
    if let Some(s) = source {
        if !s.from_file.is_empty() {
            config.from_files = s.from_file.clone();
        }
        if s.nvml_library.is_some() {
            config.nvml_library = s.nvml_library.clone();
        }
    }
    if let Some(k) = &args.log_key {
        config.log_key = Some(k.clone());
    }
    let ledger = args.ledger.clone().or(config.ledger.clone()).map(|l| crate::datadir::LedgerTarget::parse(&l));
    let state_dir = match args.state_dir.clone().or(config.state_dir.clone()) {
        Some(d) => d,
        None => datadir::resolve(data_dir.clone())?.join("agent"),
    };
    let key_file = args.key.clone().or(config.key_file.clone()).unwrap_or_else(|| state_dir.join("agent-key.pem"));
    Ok(Settings { config, config_path: args.config.clone(), state_dir, key_file, ledger })
}

pub fn run(data_dir: Option<PathBuf>, cmd: Command) -> Result<()> {
    match cmd {
        Command::Probe { source, format } => {
            let files = source.from_file.clone();
            let mut probe = make_probe(&files, source.nvml_library.as_deref())?;
            let report = probe.probe()?;
            print_probe(&report, format)
        }
        Command::Attest { source, agent, evidence, cert_chain, evidence_gpu, driver_rim, vbios_rim, format } => {
            let s = settings(data_dir.clone(), &agent, Some(&source))?;
            let (mut attestor, ledger) = attestor(data_dir, &s)?;
            let mut probe = make_probe(&s.config.from_files, s.config.nvml_library.as_deref())?;
            let mut report = probe.probe()?;
            let uuids: Vec<GpuUuid> = report.gpus.iter().filter_map(|g| g.uuid.clone()).collect();
            let host = host::host_facts(s.config.hostname.as_deref());
            let (counter, requests) = attestor.evidence_plan(&uuids, &host.hostname)?;
            report.vendor_evidence = probe.vendor_evidence(&requests);
            if let (Some(evidence), Some(chain)) = (&evidence, &cert_chain) {
                let gpu = match evidence_gpu.as_deref() {
                    Some(u) => GpuUuid::parse(u).context("--evidence-gpu")?,
                    None => match uuids.as_slice() {
                        [one] => one.clone(),
                        _ => bail!(
                            "the host has {} GPUs: say which one the evidence is for (--evidence-gpu)",
                            uuids.len()
                        ),
                    },
                };
                if !uuids.contains(&gpu) {
                    bail!("--evidence-gpu {gpu} is not one of this host's GPUs");
                }
                report.vendor_evidence.extend(chipledger_agent::evidence::imported(&gpu, evidence, chain)?);
                report.vendor_evidence.extend(chipledger_agent::evidence::rims(
                    &gpu,
                    driver_rim.as_deref(),
                    vbios_rim.as_deref(),
                )?);
            }
            let att = attestor.build_with(&report, host, Some(counter))?;
            let spooled = attestor.sign_and_spool(&att)?;
            let flush = attestor.flush()?;
            print_attest(&att, &flush, spooled.counter, &ledger, format)?;
            if let Some(why) = &flush.unavailable {
                bail!(
                    "the ledger is unavailable ({why}); {} attestation(s) wait in {} and go out with the next \
                     `agent attest` or `agent run`",
                    flush.remaining,
                    attestor.spool().dir().display()
                );
            }
            if let Some((path, why)) =
                flush.rejected.iter().find(|(p, _)| p.ends_with(spooled.path.file_name().unwrap_or_default()))
            {
                bail!("the ledger refused the attestation: {why} (kept in {})", path.display());
            }
            Ok(())
        }
        Command::Run { source, agent, locating } => {
            let mut s = settings(data_dir.clone(), &agent, Some(&source))?;
            locating.apply(&mut s.config)?;
            let (attestor, _) = attestor(data_dir, &s)?;
            let probe = make_probe(&s.config.from_files, s.config.nvml_library.as_deref())?;
            let plan = plan(&s.config);
            let landmarks = responder::spawn(
                responder::Responder {
                    key: load_key(&s.key_file)?,
                    hostname: plan.hostname.clone(),
                    gpus: Vec::new(), // read at each round
                    timeout: ANSWER_TIMEOUT,
                },
                plan,
                {
                    let (files, library) = (s.config.from_files.clone(), s.config.nvml_library.clone());
                    Box::new(move || match gpu_uuids(&files, library.as_deref()) {
                        Ok(gpus) => gpus,
                        Err(e) => {
                            let error = format!("{e:#}");
                            tracing::warn!(%error, "the GPUs could not be read; the location proofs name none");
                            Vec::new()
                        }
                    })
                },
            )?;
            let (tx, rx) = mpsc::channel();
            let flags = Flags { hostname: agent.hostname.clone(), locating };
            forward_signals(tx, landmarks.reloader(), s.config_path.clone(), flags)?;
            let mut daemon =
                Daemon::new(attestor, probe, Box::new(host::host_facts), s.config.schedule, s.config.hostname.clone());
            let stats = daemon.run(&rx);
            landmarks.stop();
            let stats = stats?;
            tracing::info!(?stats, "agent stopped");
            Ok(())
        }
        Command::Locate { source, agent, landmarks, timeout_secs, format } => {
            let s = settings(data_dir, &agent, Some(&source))?;
            let landmarks = if landmarks.is_empty() { s.config.landmarks.clone() } else { landmarks };
            if landmarks.is_empty() {
                bail!("no landmarks to answer: pass --landmark HOST:PORT, or set `landmarks` in agent.toml");
            }
            config::check_landmarks(&landmarks).map_err(|m| anyhow!("--landmark: {m}"))?;
            // The GPUs the proof names; a host whose GPUs cannot be read is still located.
            let gpus = gpu_uuids(&s.config.from_files, s.config.nvml_library.as_deref()).unwrap_or_else(|e| {
                eprintln!("note: the GPUs could not be read ({e:#}); the proofs name none");
                Vec::new()
            });
            let responder = responder::Responder {
                key: load_key(&s.key_file)?,
                hostname: host::host_facts(s.config.hostname.as_deref()).hostname,
                gpus,
                timeout: Duration::from_secs(timeout_secs.max(1)),
            };
            locate(&responder, &landmarks, format)
        }
        Command::Enroll { agent } => {
            let s = settings(data_dir, &agent, None)?;
            let name = s.config.hostname.clone().unwrap_or_else(|| host::host_facts(None).hostname);
            chipledger_domain::keys::check_key_name(&name)
                .with_context(|| format!("the host name {name:?} cannot name a key; pass --hostname"))?;
            let key = if s.key_file.exists() {
                eprintln!("{} already holds this host's key; printing it again", s.key_file.display());
                load_key(&s.key_file)?
            } else {
                let key = SigningKey::generate(&mut rand_core::OsRng);
                if let Some(parent) = s.key_file.parent() {
                    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
                }
                chipledger_ledger::write_private_file(&s.key_file, key.to_pkcs8_pem()?.as_bytes())
                    .with_context(|| format!("writing {}", s.key_file.display()))?;
                eprintln!("agent key written to {} (mode 0600)", s.key_file.display());
                key
            };
            let vkey = VerifierKey::new(&name, key.public_key())?;
            println!("{vkey}");
            eprintln!("key id {}", key.key_id());
            eprintln!("an admin enrolls it with:");
            eprintln!("  chipledger keys enroll --role agent --name {name} --key {vkey}");
            Ok(())
        }
    }
}

/// One landmark's answer, as `agent locate` prints it.
#[derive(Serialize)]
struct Located {
    landmark_addr: String,
    landmark: Option<String>,
    ok: bool,
    min_rtt_ns: Option<u64>,
    bound_km: Option<f64>,
    index: Option<u64>,
    error: Option<String>,
}

fn locate(responder: &responder::Responder, landmarks: &[String], format: Format) -> Result<()> {
    let hostname = &responder.hostname;
    let mut rows = Vec::new();
    for addr in landmarks {
        rows.push(match responder.answer(addr) {
            Ok((greeting, outcome)) => Located {
                landmark_addr: addr.clone(),
                landmark: Some(greeting.landmark),
                ok: true,
                min_rtt_ns: outcome.min_rtt_ns,
                bound_km: outcome.bound_km,
                index: outcome.index,
                error: None,
            },
            Err(e) => Located {
                landmark_addr: addr.clone(),
                landmark: None,
                ok: false,
                min_rtt_ns: None,
                bound_km: None,
                index: None,
                error: Some(format!("{e:#}")),
            },
        });
    }
    match format {
        Format::Json => output::print_json(&rows)?,
        Format::Csv => bail!("--format csv is not offered here; use json"),
        Format::Table => {
            let mut t =
                output::table(&["landmark", "address", "least round trip", "within (km)", "log index", "error"]);
            for r in &rows {
                t.add_row(vec![
                    r.landmark.clone().unwrap_or_default(),
                    r.landmark_addr.clone(),
                    r.min_rtt_ns.map(|n| format!("{:.3} ms", n as f64 / 1e6)).unwrap_or_default(),
                    r.bound_km.map(|d| format!("{d:.0}")).unwrap_or_default(),
                    r.index.map(|i| i.to_string()).unwrap_or_default(),
                    r.error.clone().unwrap_or_default(),
                ]);
            }
            println!("{t}");
            println!("the key holder of {hostname} answered; host-key proofs locate the key, not the chip");
        }
    }
    let failed = rows.iter().filter(|r| !r.ok).count();
    if failed > 0 {
        bail!("{failed} of {} landmark(s) did not log a proof", rows.len());
    }
    Ok(())
}

/// How long `agent run` gives a landmark at each dial (the default of `agent locate`).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the daemon's landmark responder answers, from the settings.
fn plan(config: &AgentConfig) -> responder::Plan {
    responder::Plan {
        landmarks: config.landmarks.clone(),
        every: config.locate_interval,
        jitter: config.schedule.jitter,
        hostname: host::host_facts(config.hostname.as_deref()).hostname,
    }
}

/// The UUIDs of this host's GPUs, as the probe reads them now.
fn gpu_uuids(files: &[PathBuf], library: Option<&Path>) -> Result<Vec<GpuUuid>> {
    let report = make_probe(files, library)?.probe()?;
    Ok(report.gpus.iter().filter_map(|g| g.uuid.clone()).collect())
}

fn make_probe(files: &[PathBuf], library: Option<&Path>) -> Result<Box<dyn GpuProbe>> {
    if files.is_empty() {
        Ok(Box::new(NvmlProbe::new(library)?))
    } else {
        Ok(Box::new(FileProbe::new(files.to_vec())))
    }
}

fn load_key(path: &Path) -> Result<SigningKey> {
    let pem = std::fs::read_to_string(path).with_context(|| {
        format!("reading the agent key {}: run `chipledger agent enroll` first (or pass --key)", path.display())
    })?;
    SigningKey::from_pkcs8_pem_owned(pem).with_context(|| format!("reading the agent key {}", path.display()))
}

/// The attestor over the ledger (a local data directory or a server); receipts are checked
/// against the log key: a local ledger's own, which a configured `log_key` must match, or the
/// configured one for a server.
fn attestor(data_dir: Option<PathBuf>, s: &Settings) -> Result<(Attestor, LedgerInfo)> {
    let key = load_key(&s.key_file)?;
    let target = match &s.ledger {
        Some(t) => t.clone(),
        None => crate::datadir::LedgerTarget::Dir(datadir::resolve(data_dir)?),
    };
    let pinned =
        s.config.log_key.as_deref().map(VerifierKey::parse).transpose().context("the log key (--log-key / log_key)")?;
    let (log, log_key) = target.open(pinned, Some(&s.key_file))?;
    let info = LedgerInfo { origin: log_key.name().to_string(), dir: PathBuf::from(target.to_string()) };
    let attestor = Attestor::new(AttestorConfig {
        key,
        log,
        log_key,
        state_dir: s.state_dir.clone(),
        clock: Arc::new(SystemClock),
        history_rules: HistoryRules::default(),
    })?;
    Ok((attestor, info))
}

struct LedgerInfo {
    origin: String,
    dir: PathBuf,
}

/// The flags of `agent run` that win over a re-read configuration.
struct Flags {
    hostname: Option<String>,
    locating: LocatingArgs,
}

/// SIGTERM / SIGINT stop the daemon between steps; SIGHUP re-reads the configuration (the
/// schedule, the host name, the landmarks and their interval; flags still win).
fn forward_signals(
    tx: mpsc::Sender<Control>,
    landmarks: responder::Reloader,
    config: Option<PathBuf>,
    flags: Flags,
) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]).context("installing signal handlers")?;
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let msg = if signal == SIGHUP {
                let env = |k: &str| std::env::var(k).ok();
                let loaded =
                    AgentConfig::load(config.as_deref(), &env).map_err(anyhow::Error::from).and_then(|mut c| {
                        flags.locating.apply(&mut c)?;
                        c.hostname = flags.hostname.clone().or(c.hostname);
                        Ok(c)
                    });
                match loaded {
                    Ok(c) => {
                        landmarks.reload(plan(&c));
                        Control::Reload { schedule: c.schedule, hostname: c.hostname }
                    }
                    Err(e) => {
                        let error = format!("{e:#}");
                        tracing::error!(%error, "SIGHUP: the configuration does not load; keeping the old one");
                        continue;
                    }
                }
            } else {
                Control::Stop
            };
            if tx.send(msg).is_err() {
                break;
            }
        }
    });
    Ok(())
}

#[derive(Serialize)]
struct ProbeRow {
    index: usize,
    uuid: Option<String>,
    serial: Option<String>,
    sku: Option<String>,
    memory_mib: Option<u64>,
    nvlink_active: Option<u32>,
    nvlink_expected: Option<u32>,
    classification_oct2023: Option<String>,
    identification: Identification,
}

fn rows(report: &ProbeReport) -> Result<Vec<ProbeRow>> {
    let catalog = Catalog::embedded()?;
    let mut out = Vec::new();
    for (index, g) in report.gpus.iter().enumerate() {
        let id = identify(catalog, g);
        let sku = id.sku.as_deref().map(|s| catalog.sku(s)).transpose()?;
        out.push(ProbeRow {
            index,
            uuid: g.uuid.as_ref().map(|u| u.to_string()),
            serial: g.serial.clone(),
            sku: id.sku.clone(),
            memory_mib: g.memory_total_bytes.map(|b| b / (1024 * 1024)),
            nvlink_active: g.active_nvlinks(),
            nvlink_expected: sku.and_then(|s| s.nvlink_links),
            classification_oct2023: sku.map(|s| {
                classify(s, RuleVersion::Oct2023, DatacenterJudgement::catalog_default(s)).bucket.label().to_string()
            }),
            identification: id,
        });
    }
    Ok(out)
}

fn source_line(report: &ProbeReport) -> String {
    let drv = report.driver.driver_version.as_deref().unwrap_or("?");
    if report.source.is_live() {
        format!("live NVML probe, driver {drv}")
    } else {
        format!("IMPORTED from recorded nvidia-smi output (driver {drv}): evidence, not a live probe")
    }
}

fn print_probe(report: &ProbeReport, format: Format) -> Result<()> {
    let rows = rows(report)?;
    match format {
        Format::Json => output::print_json(&serde_json::json!({
            "source": report.source,
            "driver": report.driver,
            "gpus": rows,
            "facts": report.gpus,
        })),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record([
                "index",
                "sku",
                "serial",
                "uuid",
                "memory_mib",
                "nvlink_active",
                "nvlink_expected",
                "class_2023",
                "anomalies",
            ])?;
            for r in &rows {
                w.write_record([
                    r.index.to_string(),
                    r.sku.clone().unwrap_or_default(),
                    r.serial.clone().unwrap_or_default(),
                    r.uuid.clone().unwrap_or_default(),
                    r.memory_mib.map(|m| m.to_string()).unwrap_or_default(),
                    r.nvlink_active.map(|m| m.to_string()).unwrap_or_default(),
                    r.nvlink_expected.map(|m| m.to_string()).unwrap_or_default(),
                    r.classification_oct2023.clone().unwrap_or_default(),
                    r.identification.anomalies.iter().map(|a| a.explain()).collect::<Vec<_>>().join("; "),
                ])?;
            }
            w.flush()?;
            Ok(())
        }
        Format::Table => {
            println!("{}", source_line(report));
            let mut t =
                output::table(&["#", "SKU", "serial", "UUID", "memory", "NVLink", "class (Oct 2023)", "anomalies"]);
            for r in &rows {
                let links = match (r.nvlink_active, r.nvlink_expected) {
                    (Some(a), Some(e)) => format!("{a}/{e}"),
                    (Some(a), None) => format!("{a}/?"),
                    (None, Some(e)) => format!("?/{e}"),
                    (None, None) => "—".into(),
                };
                let anomalies = if r.identification.anomalies.is_empty() {
                    "none".to_string()
                } else {
                    r.identification
                        .anomalies
                        .iter()
                        .map(|a| format!("[{:?}] {}", a.severity(), a.explain()))
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                t.add_row(vec![
                    r.index.to_string(),
                    r.sku.clone().unwrap_or_else(|| "needs review".into()),
                    r.serial.clone().unwrap_or_else(|| "—".into()),
                    r.uuid.clone().unwrap_or_else(|| "—".into()),
                    r.memory_mib.map_or("—".into(), |m| format!("{m} MiB")),
                    links,
                    r.classification_oct2023.clone().unwrap_or_else(|| "—".into()),
                    anomalies,
                ]);
            }
            println!("{t}");
            Ok(())
        }
    }
}

fn print_attest(
    att: &chipledger_domain::records::GpuAttestation,
    flush: &chipledger_agent::attest::Flush,
    counter: u64,
    ledger: &LedgerInfo,
    format: Format,
) -> Result<()> {
    let ours = flush.accepted.iter().find(|a| a.counter == counter);
    match format {
        Format::Json => output::print_json(&serde_json::json!({
            "counter": counter,
            "source": att.source,
            "host": att.host.hostname,
            "gpus": att.gpus.iter().map(|g| serde_json::json!({
                "uuid": g.uuid, "sku": g.identification.sku, "fingerprint_digest": g.fingerprint_digest,
                "anomalies": g.identification.anomalies,
            })).collect::<Vec<_>>(),
            "receipt": ours.map(|a| &a.receipt),
            "tree_size": ours.map(|a| a.tree_size),
            "also_sent_from_spool": flush.accepted.iter().filter(|a| a.counter != counter).count(),
        })),
        Format::Csv => bail!("--format csv is for lists; use table or json here"),
        Format::Table => {
            let source =
                if att.source.is_live() { "live NVML probe" } else { "IMPORTED nvidia-smi output (not a live probe)" };
            println!("attestation by host {} of {} GPU(s), {source}", att.host.hostname, att.gpus.len());
            for g in &att.gpus {
                let anomalies = g.identification.anomalies.len();
                println!(
                    "  {}  {}  fingerprint {}{}",
                    g.uuid,
                    g.identification.sku.as_deref().unwrap_or("needs review"),
                    output::short(&g.fingerprint_digest.to_hex()),
                    if anomalies == 0 { String::new() } else { format!("  {anomalies} anomaly(ies)") }
                );
                for a in &g.identification.anomalies {
                    println!("      [{:?}] {}", a.severity(), a.explain());
                }
            }
            if let Some(a) = ours {
                println!(
                    "in the log {} ({}) at index {}{}; inclusion proof verified against checkpoint size {}",
                    ledger.origin,
                    ledger.dir.display(),
                    a.receipt.index,
                    if a.receipt.duplicate { " (already there)" } else { "" },
                    a.tree_size
                );
                println!("leaf hash {}", a.receipt.leaf_hash.to_hex());
            }
            let earlier = flush.accepted.iter().filter(|a| a.counter != counter).count();
            if earlier > 0 {
                println!("also sent {earlier} attestation(s) that waited in the spool");
            }
            Ok(())
        }
    }
}
