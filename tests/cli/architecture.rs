//! Dependency direction (ARCHITECTURE.md) as a test: a new edge between workspace crates is a
//! decision, made here, not an accident.

use std::collections::BTreeSet;
use std::path::Path;

/// Allowed edges between workspace crates, `from → to`, by folder name; "" is the binary.
const ALLOWED: &[(&str, &[&str])] = &[
    ("", &["domain", "agent", "ledger", "inference", "web"]),
    ("domain", &[]),
    ("agent", &["domain"]),
    ("ledger", &["domain"]),
    ("inference", &["domain"]),
    ("web", &["domain", "ledger"]),
];

fn workspace_deps(manifest: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let doc: toml::Table = text.parse().unwrap();
    let mut out = BTreeSet::new();
    for section in ["dependencies", "build-dependencies"] {
        if let Some(deps) = doc.get(section).and_then(|d| d.as_table()) {
            for name in deps.keys() {
                if let Some(folder) = name.strip_prefix("chipledger-") {
                    out.insert(folder.to_string());
                }
            }
        }
    }
    out
}

#[test]
fn workspace_crates_depend_only_in_the_designed_direction() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc: toml::Table = std::fs::read_to_string(root.join("Cargo.toml")).unwrap().parse().unwrap();
    let members: Vec<String> =
        doc["workspace"]["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect();
    assert!(members.contains(&"domain".to_string()));
    for member in members.iter().map(String::as_str).chain([""]) {
        let allowed = ALLOWED
            .iter()
            .find(|(m, _)| *m == member)
            .unwrap_or_else(|| panic!("crate {member:?} has no entry in ALLOWED"));
        let manifest = if member.is_empty() { root.join("Cargo.toml") } else { root.join(member).join("Cargo.toml") };
        for dep in workspace_deps(&manifest) {
            assert!(
                allowed.1.contains(&dep.as_str()),
                "{member:?} depends on {dep:?}, which ARCHITECTURE.md does not allow"
            );
        }
        if !member.is_empty() {
            let pkg: toml::Table = std::fs::read_to_string(&manifest).unwrap().parse().unwrap();
            assert_eq!(
                pkg["package"]["name"].as_str().unwrap(),
                format!("chipledger-{member}"),
                "crate name follows its folder"
            );
        }
    }
}

#[test]
fn the_domain_crate_has_no_io_dependencies() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc: toml::Table = std::fs::read_to_string(root.join("domain/Cargo.toml")).unwrap().parse().unwrap();
    let deps: Vec<&String> = doc["dependencies"].as_table().unwrap().keys().collect();
    for forbidden in
        ["rusqlite", "tokio", "axum", "reqwest", "nvml-wrapper", "sysinfo", "candle-core", "tracing-subscriber"]
    {
        assert!(!deps.iter().any(|d| d.as_str() == forbidden), "domain must stay pure but depends on {forbidden}");
    }
    let src = std::fs::read_dir(root.join("domain/src")).unwrap();
    for entry in src {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for io in ["std::fs", "std::net", "std::process", "SystemTime::now", "OffsetDateTime::now", "println!", "OsRng"]
        {
            assert!(!text.contains(io), "{} uses {io}: domain does no IO, no clock, no printing", path.display());
        }
    }
}

/// Every `.rs` file under `dir`, recursively.
pub(crate) fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn only_the_agents_nvml_module_touches_nvml_or_unsafe_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "domain/src", "ledger/src", "agent/src", "inference/src", "web/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    let nvml = root.join("agent/src/nvml.rs");
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        if *path == nvml {
            continue;
        }
        for needle in ["nvml_wrapper", "unsafe {", "unsafe fn", "allow(unsafe_code)"] {
            assert!(!text.contains(needle), "{} contains {needle:?}: only agent::nvml may", path.display());
        }
    }
    let text = std::fs::read_to_string(&nvml).unwrap();
    let raw = text.find("mod raw {").expect("agent::nvml::raw holds the raw NVML calls");
    assert!(!text[..raw].contains("unsafe {"), "unsafe blocks belong in agent::nvml::raw only");
    assert_eq!(text.matches("unsafe {").count(), text.matches("// SAFETY:").count(), "each unsafe block says why");
}

#[test]
fn each_outside_world_library_belongs_to_one_crate() {
    // (dependency prefix, the only crate that may use it)
    const OWNERS: &[(&str, &str)] = &[
        ("rusqlite", "ledger"),
        ("nvml-wrapper", "agent"),
        ("candle-", "inference"),
        ("axum", "web"),
        ("ureq", "web"),
        ("askama", "web"),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for member in ["", "domain", "ledger", "agent", "inference", "web"] {
        let manifest = if member.is_empty() { root.join("Cargo.toml") } else { root.join(member).join("Cargo.toml") };
        let doc: toml::Table = std::fs::read_to_string(&manifest).unwrap().parse().unwrap();
        let Some(deps) = doc.get("dependencies").and_then(|d| d.as_table()) else { continue };
        for name in deps.keys() {
            for (prefix, owner) in OWNERS {
                if name.starts_with(prefix) {
                    assert_eq!(member, *owner, "{member:?} depends on {name}, which only {owner} may use");
                }
            }
        }
    }
}

/// The server reads the fleet from `domain` and never links the inference engine: no candle
/// crate anywhere in its dependency tree (as `cargo tree` resolves it from the lock file).
#[test]
fn the_server_links_no_candle_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "-p", "chipledger-web", "-e", "normal", "--prefix", "none", "--locked"])
        .current_dir(root)
        .output()
        .expect("running cargo tree");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.lines().count() > 20, "{tree}");
    let linked: Vec<&str> =
        tree.lines().filter(|l| l.starts_with("candle") || l.starts_with("chipledger-inference")).collect();
    assert!(linked.is_empty(), "chipledger-web links {linked:?}");
}
