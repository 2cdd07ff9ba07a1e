//! Dependency direction (ARCHITECTURE.md) as a test: a new edge between workspace crates is a
//! decision, made here, not an accident.

use std::collections::BTreeSet;
use std::path::Path;

/// Allowed edges between workspace crates, `from → to`, by folder name; "" is the binary.
const ALLOWED: &[(&str, &[&str])] = &[
    ("", &["domain", "agent", "ledger", "inference", "client", "web", "gateway"]),
    ("domain", &[]),
    ("agent", &["domain"]),
    ("ledger", &["domain"]),
    ("inference", &["domain"]),
    ("client", &["domain"]),
    ("web", &["domain", "ledger", "client"]),
    ("gateway", &["domain", "inference"]),
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
    let mut src = Vec::new();
    rust_files(&root.join("domain/src"), &mut src);
    for path in src {
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

/// NVML's calls and the engine's AVX-512 kernels are the workspace's only `unsafe` code.
#[test]
fn only_the_agents_nvml_module_touches_nvml_or_unsafe_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "domain/src", "ledger/src", "agent/src", "inference/src", "client/src", "web/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    let nvml = root.join("agent/src/nvml.rs");
    let kernels = root.join("inference/src/engine/x86.rs");
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        if *path == nvml {
            continue;
        }
        if *path == kernels {
            // Intrinsics and the calls into `#[target_feature]` functions, each block with a
            // reason; no NVML.
            assert!(!text.contains("nvml_wrapper"));
            assert_eq!(
                text.matches("unsafe {").count(),
                text.matches("// SAFETY").count(),
                "each unsafe block says why"
            );
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
        ("ureq", "client"),
        ("askama", "web"),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for member in ["", "domain", "ledger", "agent", "inference", "client", "web"] {
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
    let packages = linked("chipledger-web");
    assert!(packages.len() > 20, "{packages:?}");
    let candle: Vec<&String> =
        packages.iter().filter(|p| p.starts_with("candle") || *p == "chipledger-inference").collect();
    assert!(candle.is_empty(), "chipledger-web links {candle:?}");
}

/// The serving node reaches the log only through `LogClient`: no SQLite, no ledger, no server of
/// the log in its tree.
#[test]
fn the_serving_node_links_no_ledger() {
    let packages = linked("chipledger-gateway");
    assert!(packages.iter().any(|p| p == "axum") && packages.iter().any(|p| p == "chipledger-inference"));
    for other in ["rusqlite", "chipledger-ledger", "chipledger-web", "askama"] {
        assert!(!packages.iter().any(|p| p == other), "chipledger-gateway links {other}");
    }
}

/// The packages `cargo tree` resolves for `package`'s normal dependencies (names only).
fn linked(package: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "-p", package, "-e", "normal", "--prefix", "none", "--locked"])
        .current_dir(root)
        .output()
        .expect("running cargo tree");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_whitespace().next()).map(String::from).collect()
}

/// What agents and nodes use to reach a remote ledger carries no server: no axum, no templates, no
/// SQLite, no chipledger server crate.
#[test]
fn the_http_client_links_no_server_code() {
    let packages = linked("chipledger-client");
    assert!(packages.iter().any(|p| p == "ureq"), "{packages:?}");
    for server in ["axum", "axum-server", "askama", "rusqlite", "chipledger-web", "chipledger-ledger", "tower"] {
        assert!(!packages.iter().any(|p| p == server), "chipledger-client links {server}");
    }
}

/// The server's modules in layers, lowest first:
/// a module imports only modules before it, so nothing imports in a circle and the foundation
/// (errors, configuration, state) never depends on a page or the router. A new module gets its
/// place here.
const WEB_LAYERS: &[&str] = &[
    "error",
    "config",
    "listen",
    "map",
    "views",
    "locations",
    "audit",
    "identity",
    "limits",
    "witnessing",
    "state",
    "auth",
    "api",
    "ops",
    "pages",
    "pages::acquisition",
    "pages::bundle",
    "pages::fleet",
    "pages::gpu",
    "pages::log",
    "pages::login",
    "pages::runs",
    "router",
    "server",
    "witness",
    "mirror",
];

/// The modules of this crate that `text` (a file of module `module`) names: every `crate::a[::b]`
/// path, and `super::x` in a submodule. Comments are skipped; a grouped `use crate::{…}` is
/// refused, so that every import is visible to this check.
fn web_imports(module: &str, text: &str) -> Vec<String> {
    let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    assert!(!code.contains("crate::{"), "{module}: name the modules one `use` at a time (no `use crate::{{…}}`)");
    let mut out = Vec::new();
    let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect() };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let first = ident(rest);
        let after = &rest[first.len()..];
        let second = after.strip_prefix("::").map(ident).unwrap_or_default();
        let candidate = format!("{first}::{second}");
        out.push(if WEB_LAYERS.contains(&candidate.as_str()) { candidate } else { first });
    }
    if let Some((parent, _)) = module.rsplit_once("::") {
        for (at, _) in code.match_indices("super::") {
            let name = ident(&code[at + "super::".len()..]);
            let sibling = format!("{parent}::{name}");
            out.push(if WEB_LAYERS.contains(&sibling.as_str()) { sibling } else { parent.to_string() });
        }
    }
    out
}

#[test]
fn no_web_module_imports_one_above_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("web/src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut seen = BTreeSet::new();
    for path in files {
        let relative = path.strip_prefix(&root).unwrap().with_extension("");
        let mut module = relative.to_string_lossy().replace('/', "::");
        if let Some(parent) = module.strip_suffix("::mod") {
            module = parent.to_string();
        }
        if module == "lib" {
            continue;
        }
        let rank = WEB_LAYERS
            .iter()
            .position(|m| *m == module)
            .unwrap_or_else(|| panic!("web module {module} has no place in WEB_LAYERS"));
        seen.insert(module.clone());
        for imported in web_imports(&module, &std::fs::read_to_string(&path).unwrap()) {
            if imported == module {
                continue;
            }
            let below = WEB_LAYERS.iter().position(|m| *m == imported);
            assert!(
                below.is_some_and(|b| b < rank),
                "web module {module} imports {imported}, which is not below it in WEB_LAYERS"
            );
        }
    }
    assert_eq!(seen.len(), WEB_LAYERS.len(), "WEB_LAYERS names a module that does not exist");
}
