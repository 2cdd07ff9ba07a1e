//! `agent.toml` and `CHIPLEDGER_AGENT_*`: the landmarks `agent run` answers and how often.

use std::time::Duration;

use chipledger_agent::config::{AgentConfig, MAX_LANDMARKS};
use chipledger_agent::Error;

/// Loads `text` as agent.toml with the environment `env` (name, value pairs).
#[track_caller]
fn check(text: &str, env: &[(&str, &str)]) -> Result<AgentConfig, Error> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, text).unwrap();
    let env = |k: &str| env.iter().find(|(name, _)| *name == k).map(|(_, v)| v.to_string());
    AgentConfig::load(Some(&file), &env)
}

/// The error must be a configuration error naming `key` and `origin`, saying `part`.
#[track_caller]
fn refused(result: Result<AgentConfig, Error>, key: &str, origin: &str, part: &str) {
    match result {
        Err(Error::Config { origin: o, key: k, message }) => {
            assert_eq!(k, key, "{message}");
            assert!(o.contains(origin), "origin {o:?}, expected {origin:?}: {message}");
            assert!(message.contains(part), "{message:?} lacks {part:?}");
        }
        other => panic!("expected a configuration error on {key}, got {other:?}"),
    }
}

fn list(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("lm-{i}.example.org:7443")).collect()
}

#[test]
fn landmarks_and_their_interval_load_from_the_file_and_default_to_none_every_hour() {
    let c = check("", &[]).unwrap();
    assert!(c.landmarks.is_empty());
    assert_eq!(c.locate_interval, Duration::from_secs(3600));
    let c = check(
        "landmarks = [\"sin-1.example.org:7443\", \"[::1]:7443\", \"10.0.0.9:1\"]\nlocate_interval = \"15m\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(c.landmarks, ["sin-1.example.org:7443", "[::1]:7443", "10.0.0.9:1"]);
    assert_eq!(c.locate_interval, Duration::from_secs(900));
    let sixteen = format!("landmarks = {:?}\n", list(MAX_LANDMARKS));
    assert_eq!(check(&sixteen, &[]).unwrap().landmarks.len(), 16);
}

#[test]
fn the_environment_replaces_the_files_landmarks_and_interval() {
    let file = "landmarks = [\"a.example.org:7443\"]\nlocate_interval = \"2h\"\n";
    let c = check(
        file,
        &[
            ("CHIPLEDGER_AGENT_LANDMARKS", "b.example.org:7443, c.example.org:7444"),
            ("CHIPLEDGER_AGENT_LOCATE_INTERVAL", "10s"),
        ],
    )
    .unwrap();
    assert_eq!(c.landmarks, ["b.example.org:7443", "c.example.org:7444"]);
    assert_eq!(c.locate_interval, Duration::from_secs(10));
    // An empty variable is no variable.
    let c = check(file, &[("CHIPLEDGER_AGENT_LANDMARKS", "")]).unwrap();
    assert_eq!(c.landmarks, ["a.example.org:7443"]);
}

#[test]
fn more_than_sixteen_landmarks_are_refused_naming_the_key_and_where_it_was_set() {
    let seventeen = format!("landmarks = {:?}\n", list(MAX_LANDMARKS + 1));
    refused(check(&seventeen, &[]), "landmarks", "agent.toml", "at most 16");
    let env = list(MAX_LANDMARKS + 1).join(",");
    refused(
        check("", &[("CHIPLEDGER_AGENT_LANDMARKS", &env)]),
        "landmarks",
        "CHIPLEDGER_AGENT_LANDMARKS",
        "17 landmarks",
    );
}

#[test]
fn an_empty_or_malformed_landmark_entry_is_refused_by_its_number() {
    refused(check("landmarks = [\"a.example.org:7443\", \"\"]\n", &[]), "landmarks", "agent.toml", "entry 2 is empty");
    refused(
        check("", &[("CHIPLEDGER_AGENT_LANDMARKS", "a.example.org:7443,,b.example.org:7443")]),
        "landmarks",
        "CHIPLEDGER_AGENT_LANDMARKS",
        "entry 2 is empty",
    );
    for bad in ["sin-1.example.org", ":7443", "sin-1:0", "sin-1:70000", "sin-1:https", "sin 1:7443"] {
        refused(check(&format!("landmarks = [{bad:?}]\n"), &[]), "landmarks", "agent.toml", "entry 1");
    }
    let long = format!("{}:7443", "a".repeat(251));
    refused(check(&format!("landmarks = [{long:?}]\n"), &[]), "landmarks", "agent.toml", "at most 255");
    assert!(check(&format!("landmarks = [{:?}]\n", &long[1..]), &[]).is_ok(), "255 bytes is allowed");
    refused(check("landmarks = \"a.example.org:7443\"\n", &[]), "landmarks", "agent.toml", "");
}

#[test]
fn a_locate_interval_under_ten_seconds_is_refused() {
    refused(check("locate_interval = \"9s\"\n", &[]), "locate_interval", "agent.toml", "minimum 10s");
    refused(
        check("", &[("CHIPLEDGER_AGENT_LOCATE_INTERVAL", "500ms")]),
        "locate_interval",
        "CHIPLEDGER_AGENT_LOCATE_INTERVAL",
        "minimum 10s",
    );
    refused(check("locate_interval = \"often\"\n", &[]), "locate_interval", "agent.toml", "not a duration");
}
