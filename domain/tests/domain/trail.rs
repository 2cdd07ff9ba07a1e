//! A GPU's trail: what its attestations, in log order, say of its hosts and its changes.

use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::identify::HistoryRules;
use chipledger_domain::merkle::Hash;
use chipledger_domain::trail::Trail;
use time::macros::datetime;
use time::Duration;

const U: &str = "GPU-5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b";

/// Folds `(index, host, minutes after the start, digest byte)` and returns the host anomalies'
/// kinds for the last host, and where the fingerprint last changed.
#[track_caller]
fn check(attestations: &[(u64, &str, i64, u8)], kinds: &[&str], changed_from: Option<u64>) {
    let start = datetime!(2026-11-29 00:00 UTC);
    let mut trail = Trail::default();
    for (index, host, minutes, digest) in attestations {
        trail.fold(*index, host, start + Duration::minutes(*minutes), Hash([*digest; 32]));
    }
    let uuid = GpuUuid::parse(U).unwrap();
    let current = attestations.last().unwrap().1;
    let got: Vec<String> =
        trail.host_anomalies(&uuid, current, HistoryRules::default()).iter().map(|a| a.kind_name()).collect();
    assert_eq!(got, kinds, "{trail:?}");
    assert_eq!(trail.changed_from, changed_from);
}

#[test]
fn one_host_has_no_host_anomaly_and_an_unchanged_fingerprint_no_change() {
    check(&[(1, "a", 0, 1), (5, "a", 60, 1), (9, "a", 120, 1)], &[], None);
}

#[test]
fn the_change_is_remembered_until_the_fingerprint_changes_again() {
    check(&[(1, "a", 0, 1), (5, "a", 60, 2), (9, "a", 120, 2)], &[], Some(1));
    check(&[(1, "a", 0, 1), (5, "a", 60, 2), (9, "a", 120, 1)], &[], Some(5));
}

#[test]
fn a_host_after_another_past_the_window_is_a_move() {
    check(&[(1, "a", 0, 1), (3, "a", 60, 1), (7, "b", 120, 1)], &["moved-host"], None);
}

#[test]
fn two_hosts_within_the_window_or_interleaved_in_the_log_hold_one_uuid() {
    check(&[(1, "a", 0, 1), (3, "b", 10, 1)], &["uuid-on-two-hosts"], None);
    // Back to the first host hours later: still two hosts, whatever the clocks say.
    check(&[(1, "a", 0, 1), (3, "b", 120, 1), (8, "a", 240, 1)], &["uuid-on-two-hosts"], None);
    // A signer clock that runs backwards is no way out.
    check(&[(1, "a", 600, 1), (3, "b", 0, 1)], &["uuid-on-two-hosts"], None);
}
