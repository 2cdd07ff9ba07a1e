//! Tests of the inference node: placement as a table, the runner on generated tiny models,
//! provenance reports through a real ledger.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the point
#![allow(missing_debug_implementations)]

mod cluster;
mod placement;
mod report;
mod runner;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chipledger_inference::tiny::{self, Arch, TinyShape};

/// A tiny model generated once per test binary (per architecture).
pub fn tiny_model(arch: Arch) -> PathBuf {
    static QWEN: OnceLock<tempfile::TempDir> = OnceLock::new();
    static LLAMA: OnceLock<tempfile::TempDir> = OnceLock::new();
    let cell = match arch {
        Arch::Qwen2 => &QWEN,
        Arch::Llama => &LLAMA,
    };
    let dir = cell.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        tiny::write(d.path(), arch, TinyShape::default(), 7).unwrap();
        d
    });
    dir.path().to_path_buf()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
