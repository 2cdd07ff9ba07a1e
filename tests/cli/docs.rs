//! The documents stay true by test: every command the README's table lists answers `--help`
//! and the table is one table; every path ARCHITECTURE.md names exists; every module says what
//! it is in a `//!` line.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap()
}

/// The code spans of a Markdown line, in order.
fn code_spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// The subcommand words a README code span names (`chipledger keys enroll --role …` →
/// `keys enroll`): the leading lowercase words after an optional `chipledger`.
fn command_words(span: &str) -> Vec<&str> {
    span.split_whitespace()
        .skip_while(|w| *w == "chipledger")
        .take_while(|w| {
            w.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        })
        .collect()
}

/// The README's command table: its rows (`| \`chipledger …`), with their line numbers.
fn command_rows(readme: &str) -> Vec<(usize, &str)> {
    readme.lines().enumerate().filter(|(_, l)| l.starts_with("| `chipledger ")).collect()
}

#[test]
fn the_readme_command_table_is_one_table() {
    let readme = read("README.md");
    let rows = command_rows(&readme);
    assert!(rows.len() >= 15, "the README lists its commands in a table: {} rows found", rows.len());
    let (first, last) = (rows[0].0, rows[rows.len() - 1].0);
    let lines: Vec<&str> = readme.lines().collect();
    for (n, line) in lines.iter().enumerate().take(last + 1).skip(first) {
        assert!(line.starts_with('|'), "README.md line {}: the command table is cut by {line:?}", n + 1);
    }
    // A header and its delimiter row head the table.
    assert!(lines[first - 1].starts_with("|---") || lines[first - 1].starts_with("| ---"), "{}", lines[first - 1]);
    assert!(lines[first - 2].starts_with("| "), "{}", lines[first - 2]);
}

#[test]
fn every_command_in_the_readme_table_answers_help() {
    let readme = read("README.md");
    let mut checked = 0;
    for (n, row) in command_rows(&readme) {
        let first_cell = row.split(" | ").next().unwrap_or(row);
        for span in code_spans(first_cell) {
            let words = command_words(span);
            if words.is_empty() {
                continue;
            }
            let mut args = words.clone();
            args.push("--help");
            let r = crate::chipledger(&args);
            assert_eq!(
                r.code,
                0,
                "README.md line {}: `chipledger {}` is not a command:\n{}",
                n + 1,
                words.join(" "),
                r.stderr
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked} commands checked");
}

/// The paths ARCHITECTURE.md names: the codemap's first column and code spans that look like
/// paths (a `/`, or a file name with an extension), placeholders (`<…>`) aside.
fn named_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_codemap = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_codemap = !in_codemap;
            continue;
        }
        if in_codemap {
            if let Some(first) = line.split_whitespace().next() {
                if first.contains('/') || first.ends_with(".toml") {
                    out.push(first.to_string());
                }
            }
            continue;
        }
        for span in code_spans(line) {
            let looks_like_path = !span.contains(['<', ' ', '(', ':', '=', '*', '$'])
                && (span.contains('/') || [".rs", ".md", ".toml", ".csv", ".jsonl", ".pem", ".sqlite"].iter().any(|e| span.ends_with(e)))
                && !span.starts_with("http")
                && !span.starts_with(['-', '/']) // flags and HTTP routes
                && !span.rsplit('/').next().is_some_and(|v| v.len() > 1 && v.starts_with('v') && v[1..].bytes().all(|b| b.is_ascii_digit())); // predicate names: `run-provenance/v1`
            if looks_like_path {
                out.push(span.to_string());
            }
        }
    }
    out
}

/// Where a named path may live: at the root, in a member crate, or under `src/` (`cmd/…`).
fn resolve(path: &str) -> Option<PathBuf> {
    let bases = ["", "domain", "ledger", "agent", "inference", "web", "src", "domain/src", "ledger/src"];
    bases.iter().map(|b| root().join(b).join(path)).find(|p| p.exists())
}

#[test]
fn every_path_architecture_names_exists() {
    let text = read("ARCHITECTURE.md");
    let paths = named_paths(&text);
    assert!(paths.len() >= 15, "{paths:?}");
    let missing: Vec<&String> = paths.iter().filter(|p| resolve(p).is_none()).collect();
    // Files the data directory holds at run time are named too; they are not in the tree.
    let runtime =
        ["log-key.pem", "log-key.next.pem", "admin-key.pem", "ledger.sqlite", "agent.toml", "spool/rejected/"];
    let missing: Vec<&&String> = missing.iter().filter(|p| !runtime.contains(&p.as_str())).collect();
    assert!(missing.is_empty(), "ARCHITECTURE.md names paths that do not exist: {missing:?}");
}

#[test]
fn every_module_says_what_it_is() {
    let mut files = Vec::new();
    for krate in ["src", "domain/src", "ledger/src", "agent/src", "inference/src", "web/src"] {
        crate::architecture::rust_files(&root().join(krate), &mut files);
    }
    assert!(files.len() > 40);
    let undocumented: Vec<String> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .map(|f| f.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    assert!(undocumented.is_empty(), "modules without a `//!` first line: {undocumented:?}");
}
