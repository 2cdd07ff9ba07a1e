//! Dependency direction (DESIGN §1) as a test: a new edge between workspace crates is a
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
    ("web", &["domain", "ledger", "inference"]),
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
            assert!(allowed.1.contains(&dep.as_str()), "{member:?} depends on {dep:?}, which DESIGN §1 does not allow");
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
