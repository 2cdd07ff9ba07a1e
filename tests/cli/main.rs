//! End-to-end tests of the `chipledger` binary: each runs the real executable the way a person
//! would, and checks what it prints and how it exits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the point

mod agent;
mod architecture;
mod catalog;
mod diversion;
mod docs;
mod evidence;
mod inference;
mod keys_notes_proofs;
mod ledger;
mod location;
mod mirror;
mod node;
mod rotation;
mod tlog_interop;
mod web;
mod witness;

use std::process::Command;

/// The result of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `chipledger ARGS…` and returns what it did.
#[track_caller]
pub fn chipledger(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_chipledger")).args(args).output().expect("running chipledger");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs and requires success.
#[track_caller]
pub fn ok(args: &[&str]) -> Run {
    let r = chipledger(args);
    assert_eq!(r.code, 0, "chipledger {args:?} failed:\n{}{}", r.stdout, r.stderr);
    r
}

/// Runs and requires a non-zero exit whose stderr says `part`.
#[track_caller]
pub fn fails(args: &[&str], part: &str) -> Run {
    let r = chipledger(args);
    assert_ne!(r.code, 0, "chipledger {args:?} should fail:\n{}", r.stdout);
    assert!(r.stderr.contains(part), "chipledger {args:?}: stderr lacks {part:?}:\n{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "chipledger {args:?} panicked:\n{}", r.stderr);
    r
}

/// Starts `chipledger ARGS…` as a server and waits for its first line, `listening on URL`:
/// the child and the URL. Whatever it prints after is read and dropped, so that it never blocks
/// on a full pipe.
pub fn spawn_listening(args: &[String]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_chipledger"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting chipledger");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("its stdout")).lines();
    let first = lines.next().expect("a first line").expect("a readable first line");
    let url = first.strip_prefix("listening on ").unwrap_or_else(|| panic!("not `listening on`: {first}")).to_string();
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (child, url)
}
