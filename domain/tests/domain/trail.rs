//! A GPU's trail: what its attestations, in log order, say of its hosts and its facts.

use chipledger_domain::fingerprint::{Fingerprint, GpuUuid};
use chipledger_domain::identify::HistoryRules;
use chipledger_domain::merkle::Hash;
use chipledger_domain::trail::{followed, Trail};
use time::macros::datetime;
use time::Duration;

const U: &str = "GPU-5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b";

/// One attestation: log index, host, minutes after the start, followed facts.
type Step<'a> = (u64, &'a str, i64, &'a [(&'a str, &'a str)]);

/// Folds the steps and returns the trail's anomaly kinds (facts, then hosts) for the last host.
#[track_caller]
fn check(steps: &[Step<'_>], kinds: &[&str]) -> Trail {
    let start = datetime!(2026-11-29 00:00 UTC);
    let mut trail = Trail::default();
    for (index, host, minutes, facts) in steps {
        trail.fold(*index, host, start + Duration::minutes(*minutes), Hash([*index as u8; 32]), facts);
    }
    let uuid = GpuUuid::parse(U).unwrap();
    let current = steps.last().unwrap().1;
    let got: Vec<String> = trail
        .fact_anomalies(&uuid)
        .iter()
        .chain(&trail.host_anomalies(&uuid, current, HistoryRules::default()))
        .map(|a| a.kind_name())
        .collect();
    assert_eq!(got, kinds, "{trail:?}");
    trail
}

const V1: &[(&str, &str)] = &[("vbios", "96.00.A5.00.01"), ("serial", "1654423000777")];

#[test]
fn one_host_and_unchanged_facts_have_no_anomaly() {
    check(&[(1, "a", 0, V1), (5, "a", 60, V1), (9, "a", 120, V1)], &[]);
}

#[test]
fn a_change_stands_until_the_fact_changes_again() {
    let v2: &[(&str, &str)] = &[("vbios", "96.00.A5.00.99"), ("serial", "1654423000777")];
    let t = check(&[(1, "a", 0, V1), (5, "a", 60, v2), (9, "a", 120, v2), (13, "a", 180, v2)], &["vbios-changed"]);
    assert_eq!(t.changes["vbios"].from.value, "96.00.A5.00.01");
    assert_eq!(t.changes["vbios"].index, 5);
}

/// Leaving a fact out, or another fact coming and going, hides no change: the fact's last known
/// value is what the next one is compared with.
#[test]
fn a_change_cannot_be_hidden_by_leaving_the_fact_out_first() {
    let none: &[(&str, &str)] = &[];
    let evil: &[(&str, &str)] = &[("vbios", "96.00.EE.00.01")];
    check(&[(1, "a", 0, V1), (2, "a", 60, none), (3, "a", 120, evil)], &["vbios-changed"]);
    let s2: &[(&str, &str)] = &[("serial", "1654423000999")];
    check(&[(1, "a", 0, V1), (2, "a", 60, none), (3, "a", 120, s2)], &["identity-changed"]);
    let evil_no_ecc: &[(&str, &str)] = &[("vbios", "96.00.EE.00.01")];
    let evil_ecc: &[(&str, &str)] = &[("vbios", "96.00.EE.00.01"), ("inforom.ecc", "7.0")];
    check(&[(1, "a", 0, V1), (2, "a", 60, evil_no_ecc), (3, "a", 120, evil_ecc)], &["vbios-changed"]);
}

/// What belongs to the slot, not the GPU, is compared on one host only: a move changes it, and
/// the move is its own anomaly.
#[test]
fn host_bound_facts_change_with_a_move_without_an_identity_change() {
    let slot = |s: &'static str| -> Vec<(&'static str, &'static str)> { vec![("slot", s)] };
    let (one, two) = (slot("1"), slot("7"));
    check(&[(1, "a", 0, &one), (5, "b", 120, &two)], &["moved-host"]);
    check(&[(1, "a", 0, &one), (5, "a", 120, &two)], &["identity-changed"]);
}

#[test]
fn nvlink_state_and_the_uuid_are_not_followed() {
    let fp = Fingerprint {
        fields: vec![
            ("uuid".into(), Some(U.into())),
            ("vbios".into(), Some("96.00.A5.00.01".into())),
            ("nvlink.active".into(), Some("18".into())),
            ("serial".into(), None),
        ],
    };
    assert_eq!(followed(&fp), [("vbios", "96.00.A5.00.01")]);
}

#[test]
fn a_host_after_another_past_the_window_is_a_move() {
    check(&[(1, "a", 0, V1), (3, "a", 60, V1), (7, "b", 120, V1)], &["moved-host"]);
}

#[test]
fn two_hosts_within_the_window_or_interleaved_in_the_log_hold_one_uuid() {
    check(&[(1, "a", 0, V1), (3, "b", 10, V1)], &["uuid-on-two-hosts"]);
    // Back to the first host hours later: still two hosts, whatever the clocks say.
    check(&[(1, "a", 0, V1), (3, "b", 120, V1), (8, "a", 240, V1)], &["uuid-on-two-hosts"]);
    // A signer clock that runs backwards is no way out.
    check(&[(1, "a", 600, V1), (3, "b", 0, V1)], &["uuid-on-two-hosts"]);
}

/// Thousands of hosts claiming one UUID cost one pass, not one per pair.
#[test]
fn many_hosts_on_one_uuid_are_one_anomaly() {
    let hosts: Vec<String> = (0..20_000).map(|i| format!("h{i}")).collect();
    let steps: Vec<Step<'_>> = hosts.iter().enumerate().map(|(i, h)| (i as u64, h.as_str(), 0, V1)).collect();
    check(&steps, &["uuid-on-two-hosts"]);
}

#[test]
fn a_trail_knows_each_hosts_attestation_before_the_latest() {
    let trail =
        check(&[(1, "a", 0, V1), (4, "b", 30, V1), (5, "a", 60, V1), (9, "a", 120, V1)], &["uuid-on-two-hosts"]);
    assert_eq!(trail.previous_on("a", 9), Some(5));
    assert_eq!(trail.previous_on("b", 4), None, "b attested it once");
    // A record not yet folded in: the host's latest is the one before it.
    assert_eq!(trail.previous_on("b", 12), Some(4));
    assert_eq!(trail.previous_on("c", 12), None);
}
