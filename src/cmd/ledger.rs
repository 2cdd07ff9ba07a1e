//! `chipledger ledger …`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::keys::VerifierKey;
use chipledger_domain::note::TlogProof;
use chipledger_domain::records::{RecordKind, FORMAT_VERSION};
use chipledger_ledger::bundle::{verify_bundle, Selection, MAX_BUNDLE_BYTES};
use chipledger_ledger::EntryFilter;
use time::OffsetDateTime;

use super::note::read_bounded;
use crate::datadir;
use crate::output::{self, Format};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Append envelope files (one DSSE envelope JSON per file, or one per line); all or nothing.
    Append {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List entries.
    Log {
        #[arg(long, value_parser = parse_kind)]
        kind: Option<RecordKind>,
        #[arg(long)]
        gpu: Option<String>,
        /// Only the location proofs that locate this host.
        #[arg(long, value_name = "HOST")]
        located: Option<String>,
        /// Only entries appended at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only entries at or after this index.
        #[arg(long)]
        from: Option<u64>,
        #[arg(long)]
        limit: Option<u64>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Print the latest signed checkpoint.
    Checkpoint,
    /// Show the log's origin, verifier key, size and data directory.
    Info {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Proofs against the log.
    #[command(subcommand)]
    Proof(ProofCommand),
    /// Audit the whole log; exit non-zero and name the first bad index if anything is wrong.
    Verify {
        /// Also check that the log still contains this earlier saved checkpoint (and, with
        /// --witness, that enough witnesses cosigned it).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        #[command(flatten)]
        witnesses: crate::witnesses::PolicyArgs,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Write an offline evidence bundle.
    Export {
        #[arg(long)]
        gpu: Option<String>,
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify an evidence bundle offline.
    VerifyBundle {
        file: PathBuf,
        /// The log's verifier key; without it the key named in the bundle is trusted.
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        witnesses: crate::witnesses::PolicyArgs,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Rebuild the derived views from the entries.
    RebuildViews,
    /// Move the log to a new key without a new log: `begin` announces it in the log (signed by
    /// both keys) and starts an overlap in which every checkpoint carries both signatures;
    /// `finish` closes it and retires the old key. Stop `serve` around each step. Readers
    /// pinning the old key follow the announcement (`GET /log-keys`).
    #[command(subcommand)]
    RotateKey(RotateCommand),
    /// Test harness: append small signed records in a loop, printing each committed index.
    #[command(hide = true)]
    DebugAppendLoop {
        /// An enrolled auditor key (PKCS#8 PEM).
        #[arg(long)]
        key: PathBuf,
        /// Entries per append.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = u64::MAX)]
        count: u64,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ProofCommand {
    /// Print a C2SP tlog-proof for entry `--index` in the tree of `--size` (default: latest).
    Inclusion {
        #[arg(long)]
        index: u64,
        #[arg(long)]
        size: Option<u64>,
    },
    /// Print the consistency proof between two checkpointed sizes (one base64 hash per line).
    Consistency {
        #[arg(long)]
        old: u64,
        #[arg(long)]
        new: Option<u64>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// `--kind`: a record kind by its slug (`gpu-attestation`, `acquisition`, …).
fn parse_kind(s: &str) -> Result<RecordKind, String> {
    RecordKind::ALL.into_iter().find(|k| k.slug() == s).ok_or_else(|| {
        let all: Vec<&str> = RecordKind::ALL.iter().map(|k| k.slug()).collect();
        format!("unknown kind {s:?}; one of {}", all.join(", "))
    })
}

fn parse_time(s: &str, flag: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{flag} {s:?} is not an RFC 3339 time such as 2026-11-29T09:00:00Z"))
}

#[derive(Debug, clap::Subcommand)]
pub enum RotateCommand {
    /// Generate the new log key beside the log and announce it; checkpoints are then signed by both.
    Begin {
        /// The admin private key (default: the data directory's admin-key.pem).
        #[arg(long)]
        admin_key: Option<PathBuf>,
    },
    /// Close the overlap: the old key signs nothing after this record's checkpoint.
    Finish {
        #[arg(long)]
        admin_key: Option<PathBuf>,
    },
}

fn rotate(ledger: chipledger_ledger::Ledger, cmd: RotateCommand) -> Result<()> {
    let dir = ledger.dir().to_path_buf();
    let old = ledger.verifier_key().clone();
    match cmd {
        RotateCommand::Begin { admin_key } => {
            let (admin, counter) = crate::cmd::keys::admin_signer(&ledger, admin_key)?;
            let new = chipledger_domain::keys::SigningKey::generate(&mut rand_core::OsRng);
            let new_vkey = VerifierKey::new(ledger.origin(), new.public_key())?;
            let index = ledger.begin_key_rotation(&admin, counter, &new)?;
            println!("announced the move from {old} to {new_vkey} at log index {index}");
            println!(
                "every checkpoint is now signed by both keys; the new key is in {}",
                dir.join(chipledger_ledger::rotation::NEXT_KEY_FILE).display()
            );
            println!("when readers and witnesses have the new key: chipledger ledger rotate-key finish");
        }
        RotateCommand::Finish { admin_key } => {
            let (admin, counter) = crate::cmd::keys::admin_signer(&ledger, admin_key)?;
            let index = ledger.finish_key_rotation(&admin, counter)?;
            let reopened = crate::datadir::open(Some(dir))?;
            println!("the overlap closed at log index {index}: {old} signs nothing after size {}", index + 1);
            println!("the log key is now {}", reopened.verifier_key());
        }
    }
    Ok(())
}

pub fn run(data_dir: Option<PathBuf>, cmd: Command) -> Result<()> {
    match cmd {
        Command::VerifyBundle { file, key, witnesses, format } => {
            let pinned = key.as_deref().map(VerifierKey::parse).transpose()?;
            let policy = witnesses.policy()?;
            let bytes = read_bounded(&file, MAX_BUNDLE_BYTES)?;
            let report =
                verify_bundle(&bytes, pinned.as_ref()).with_context(|| format!("verifying {}", file.display()))?;
            if let Some(policy) = &policy {
                // The bundle verified: its checkpoint is the log's; now its witnesses.
                let bundle: chipledger_ledger::bundle::Bundle = serde_json::from_slice(&bytes)?;
                let cosigned = crate::witnesses::check(policy, bundle.checkpoint.as_bytes())
                    .with_context(|| format!("verifying {}", file.display()))?;
                if format != Format::Json {
                    let names: Vec<&str> = cosigned.iter().map(|(n, _)| n.as_str()).collect();
                    println!("witnessed by {} of {} required: {}", cosigned.len(), policy.quorum, names.join(", "));
                }
            }
            if format == Format::Json {
                return output::print_json(&report);
            }
            println!(
                "valid: {} entries of {:?} included in its checkpoint of size {} (root {})",
                report.entries, report.origin, report.tree_size, report.root
            );
            for (kind, n) in &report.by_kind {
                println!("  {n:>6} {kind}");
            }
            if !report.gpus.is_empty() {
                println!(
                    "  GPUs as this bundle's own records give them (records outside it are not seen, so neither are \
                     moves, second hosts or changes that only they show):"
                );
            }
            for g in &report.gpus {
                println!(
                    "  GPU {} on {}: {} ({} evidence), {}, {}{}",
                    g.uuid,
                    g.host,
                    g.sku,
                    g.evidence,
                    g.class_2023,
                    g.verdict,
                    if g.anomalies.is_empty() { String::new() } else { format!("; {}", g.anomalies.join("; ")) }
                );
            }
            if !report.log_key_pinned {
                println!("note: the log key was taken from the bundle itself; pass --key to pin it");
            }
            Ok(())
        }
        other => run_local(data_dir, other),
    }
}

fn run_local(data_dir: Option<PathBuf>, cmd: Command) -> Result<()> {
    let ledger = datadir::open(data_dir)?;
    match cmd {
        Command::Append { files, format } => {
            let mut envelopes = Vec::new();
            for f in &files {
                let bytes = read_bounded(f, 64 << 20)?;
                let text = String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 JSON", f.display()))?;
                let trimmed = text.trim();
                if serde_json::from_str::<serde_json::Value>(trimmed).is_ok_and(|v| v.is_object()) {
                    envelopes.push(trimmed.as_bytes().to_vec());
                } else {
                    // JSON lines: one envelope per non-empty line.
                    envelopes.extend(
                        trimmed.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| l.as_bytes().to_vec()),
                    );
                }
            }
            let receipts = ledger.append(&envelopes).context("appending")?;
            if format == Format::Json {
                return output::print_json(&receipts);
            }
            for r in &receipts {
                println!("{} {}{}", r.index, r.leaf_hash, if r.duplicate { " (already in the log)" } else { "" });
            }
            Ok(())
        }
        Command::Log { kind, gpu, located, since, from, limit, format } => {
            let filter = EntryFilter {
                kind,
                gpu: gpu.as_deref().map(GpuUuid::parse).transpose()?,
                since: since.as_deref().map(|s| parse_time(s, "--since")).transpose()?,
                from,
                limit,
                last: None,
                serial: None,
                located,
            };
            let entries = ledger.entries(&filter)?;
            match format {
                Format::Json => output::print_json(&entries),
                Format::Csv => {
                    let mut w = csv::Writer::from_writer(std::io::stdout());
                    w.write_record(["index", "kind", "key_id", "appended_at", "leaf_hash"])?;
                    for e in &entries {
                        w.write_record([
                            e.index.to_string(),
                            e.kind.slug().into(),
                            e.key_id.clone(),
                            rfc3339(e.appended_at),
                            e.leaf_hash.to_hex(),
                        ])?;
                    }
                    Ok(w.flush()?)
                }
                Format::Table => {
                    let mut t = output::table(&["index", "kind", "signer", "appended (UTC)", "leaf hash"]);
                    for e in &entries {
                        t.add_row(vec![
                            e.index.to_string(),
                            e.kind.slug().into(),
                            output::short(&e.key_id),
                            rfc3339(e.appended_at),
                            output::short(&e.leaf_hash.to_hex()),
                        ]);
                    }
                    println!("{t}");
                    Ok(())
                }
            }
        }
        Command::Checkpoint => {
            print!("{}", ledger.checkpoint()?.1);
            Ok(())
        }
        Command::Info { format } => {
            let (size, _) = ledger.checkpoint()?;
            let info = serde_json::json!({
                "data_dir": ledger.dir().display().to_string(),
                "origin": ledger.origin(),
                "log_verifier_key": ledger.verifier_key().to_string(),
                "size": size,
                "keys": ledger.keys()?.len(),
            });
            if format == Format::Json {
                return output::print_json(&info);
            }
            println!("data dir:  {}", ledger.dir().display());
            println!("origin:    {}", ledger.origin());
            println!("log key:   {}", ledger.verifier_key());
            let keys = ledger.log_keys()?;
            if keys.windows().len() > 1 {
                for w in keys.windows() {
                    let until = w.until.map_or("now".to_string(), |u| format!("size {u}"));
                    println!("  key {} signs checkpoints of size {} to {until}", w.key, w.from);
                }
            }
            println!("entries:   {size}");
            Ok(())
        }
        Command::Proof(ProofCommand::Inclusion { index, size }) => {
            let checkpoints = ledger.checkpoints()?;
            let (size, note) = match size {
                None => checkpoints.last().cloned().context("the log has no checkpoint")?,
                Some(s) => checkpoints.into_iter().find(|(cs, _)| *cs == s).with_context(|| {
                    format!("no checkpoint was signed at size {s}; `ledger log` and `ledger checkpoint` show the sizes")
                })?,
            };
            let hashes = ledger.inclusion_proof(index, size)?;
            let proof = TlogProof { extra: None, index, hashes, checkpoint: note.into_bytes() };
            std::io::stdout().write_all(&proof.to_bytes())?;
            Ok(())
        }
        Command::Proof(ProofCommand::Consistency { old, new, format }) => {
            let new = match new {
                Some(n) => n,
                None => ledger.checkpoint()?.0,
            };
            let proof = ledger.consistency_proof(old, new)?;
            if format == Format::Json {
                return output::print_json(&serde_json::json!({
                    "old": old, "new": new,
                    "old_root": ledger.root_at(old)?, "new_root": ledger.root_at(new)?,
                    "proof": proof.iter().map(|h| h.to_base64()).collect::<Vec<_>>(),
                }));
            }
            for h in proof {
                println!("{}", h.to_base64());
            }
            Ok(())
        }
        Command::Verify { checkpoint, witnesses, format } => {
            let policy = witnesses.policy()?;
            if policy.is_some() && checkpoint.is_none() {
                bail!("--witness applies to a saved checkpoint: give it with --checkpoint");
            }
            let bar = output::progress_bar("entries", ledger.size());
            let report = ledger.audit(&mut |done, total| {
                if let Some(b) = &bar {
                    b.set_length(total);
                    b.set_position(done);
                }
            })?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let against = match &checkpoint {
                Some(p) => {
                    let saved = read_bounded(p, 1 << 20)?;
                    if let Some(policy) = &policy {
                        let cosigned = crate::witnesses::check(policy, &saved)
                            .with_context(|| format!("the saved checkpoint {}", p.display()))?;
                        if format != Format::Json {
                            let names: Vec<&str> = cosigned.iter().map(|(n, _)| n.as_str()).collect();
                            println!(
                                "witnessed by {} of {} required: {}",
                                cosigned.len(),
                                policy.quorum,
                                names.join(", ")
                            );
                        }
                    }
                    ledger.check_against(&saved)?
                }
                None => None,
            };
            if format == Format::Json {
                output::print_json(&serde_json::json!({ "audit": report, "against_saved_checkpoint": against }))?;
            } else if report.problem.is_none() && against.is_none() {
                println!(
                    "ledger ok: {} entries, {} checkpoints, {} signatures verified; root {}",
                    report.entries, report.checkpoints, report.signatures_checked, report.root
                );
            }
            if let Some(p) = report.problem.as_ref().or(against.as_ref()) {
                bail!("the ledger does not verify: {p}");
            }
            Ok(())
        }
        Command::Export { gpu, host, since, until, out } => {
            let sel = Selection {
                gpu: gpu.as_deref().map(GpuUuid::parse).transpose()?,
                host,
                since: since.as_deref().map(|s| parse_time(s, "--since")).transpose()?,
                until: until.as_deref().map(|s| parse_time(s, "--until")).transpose()?,
            };
            let bundle = ledger.export(&sel)?;
            let bytes = serde_json::to_vec_pretty(&bundle)?;
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {} entries ({}) to {}", bundle.entries.len(), bundle.selection, out.display());
            Ok(())
        }
        Command::RotateKey(c) => rotate(ledger, c),
        Command::RebuildViews => {
            let n = ledger.rebuild_views()?;
            println!("rebuilt the views from {n} entries");
            Ok(())
        }
        Command::DebugAppendLoop { key, batch, count } => debug_append_loop(&ledger, &key, batch, count),
        // Handled in `run` without opening a ledger.
        Command::VerifyBundle { .. } => Ok(()),
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Appends annotations forever (or `count` times), printing `committed INDEX LEAFHASH` after each
/// durable commit; the crash-safety test kills this process at random points.
fn debug_append_loop(
    ledger: &chipledger_ledger::Ledger,
    key: &std::path::Path,
    batch: usize,
    count: u64,
) -> Result<()> {
    use chipledger_domain::identify::Severity;
    use chipledger_domain::keys::SigningKey;
    use chipledger_domain::records::{sign_record, Annotation, AnnotationTarget};
    let key = SigningKey::from_pkcs8_pem_owned(std::fs::read_to_string(key)?)?;
    let id = key.key_id();
    let mut counter =
        ledger.keys()?.into_iter().find(|k| k.key_id == id.as_str()).context("the key is not enrolled")?.last_counter;
    let uuid = GpuUuid::parse("GPU-34bf77d1-c686-6821-79a8-32d326c5039c")?;
    let mut out = std::io::stdout().lock();
    for _ in 0..count {
        let envs: Vec<Vec<u8>> = (0..batch)
            .map(|_| {
                counter += 1;
                let a = Annotation {
                    format_version: FORMAT_VERSION,
                    counter,
                    written_at: OffsetDateTime::now_utc(),
                    target: AnnotationTarget::Gpu { uuid: uuid.clone() },
                    severity: Severity::Info,
                    text: format!("crash-test record {counter}"),
                    resolves_serial: None,
                    settles_history: false,
                };
                sign_record(&a, &key).map(|e| e.to_json())
            })
            .collect::<Result<_, _>>()?;
        for r in ledger.append(&envs)? {
            writeln!(out, "committed {} {}", r.index, r.leaf_hash)?;
        }
        out.flush()?;
    }
    Ok(())
}
