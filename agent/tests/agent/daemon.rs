//! The daemon with a recorded-output probe over files the test rewrites, against a real local
//! ledger.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chipledger_agent::daemon::{Control, Daemon, RunStats, Schedule};
use chipledger_domain::log::{AsOf, LogClient};

use super::*;

fn schedule() -> Schedule {
    Schedule {
        interval: Duration::from_secs(3600),
        jitter: 0.1,
        poll: Duration::from_millis(30),
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(80),
    }
}

struct Running {
    control: mpsc::Sender<Control>,
    handle: std::thread::JoinHandle<RunStats>,
}

fn start(fleet: &Fleet, key: SigningKey, dump: &Path) -> Running {
    let attestor = fleet.attestor(key, "agent");
    let probe = Box::new(FileProbe::new(vec![dump.to_path_buf()]));
    let mut daemon = Daemon::new(attestor, probe, Box::new(|name| host(name.unwrap_or("hgx-01"))), schedule(), None);
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || daemon.run(&rx).unwrap());
    Running { control: tx, handle }
}

impl Running {
    fn stop(self) -> RunStats {
        self.control.send(Control::Stop).unwrap();
        self.handle.join().unwrap()
    }
}

/// Waits until `f` holds (the daemon runs on its own thread).
#[track_caller]
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn attestations(fleet: &Fleet) -> Vec<usize> {
    let filter = chipledger_ledger::EntryFilter {
        kind: Some(chipledger_domain::records::RecordKind::GpuAttestation),
        ..Default::default()
    };
    fleet
        .log
        .ledger
        .entries(&filter)
        .unwrap()
        .iter()
        .map(|e| {
            let env = chipledger_domain::dsse::Envelope::from_json(e.envelope.as_bytes()).unwrap();
            match chipledger_domain::records::Record::from_payload(&env.payload_bytes().unwrap()).unwrap() {
                chipledger_domain::records::Record::GpuAttestation(a) => a.gpus.len(),
                _ => unreachable!(),
            }
        })
        .collect()
}

/// Replaces a file the way a careful writer does, so the probe never reads half of it.
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

#[test]
fn a_gpu_removed_and_re_added_is_attested_at_each_change_and_not_otherwise() {
    let mut fleet = Fleet::new(Arc::new(WallClock));
    let key = fleet.agent_key(1, "hgx-01");
    let dump = fleet.dir.path().join("nvidia-smi-q.txt");
    write(&dump, &eight_gpu_text(2));
    let daemon = start(&fleet, key, &dump);
    eventually("the first attestation", || attestations(&fleet) == [2]);
    write(&dump, &eight_gpu_text(1));
    eventually("an attestation without the removed GPU", || attestations(&fleet) == [2, 1]);
    write(&dump, &eight_gpu_text(2));
    eventually("an attestation with the GPU back", || attestations(&fleet) == [2, 1, 2]);
    // Nothing changes for a few polls: no new record (the interval is an hour).
    std::thread::sleep(Duration::from_millis(200));
    let stats = daemon.stop();
    assert_eq!(attestations(&fleet), [2, 1, 2]);
    assert_eq!((stats.attestations, stats.on_change, stats.accepted), (3, 2, 3), "{stats:?}");
    let inventory = fleet.log.inventory(AsOf::Latest).unwrap();
    assert_eq!(inventory.len(), 2);
}

#[test]
fn while_the_ledger_is_away_nothing_is_lost_and_order_is_kept() {
    let mut fleet = Fleet::new(Arc::new(WallClock));
    let key = fleet.agent_key(1, "hgx-01");
    let dump = fleet.dir.path().join("nvidia-smi-q.txt");
    write(&dump, &eight_gpu_text(1));
    let daemon = start(&fleet, key, &dump);
    eventually("the first attestation", || attestations(&fleet) == [1]);
    let spool = fleet.dir.path().join("agent/spool");
    let pending = || std::fs::read_dir(&spool).unwrap().filter(|e| e.as_ref().unwrap().path().is_file()).count();
    // The log has the entry a moment before the agent has checked the receipt and let go of it.
    eventually("the first receipt checked", || pending() == 0);
    fleet.log.up.store(false, Ordering::SeqCst);
    for n in 2..=4 {
        write(&dump, &eight_gpu_text(n));
        eventually("the change spooled", || pending() == n - 1);
    }
    std::thread::sleep(Duration::from_millis(150)); // a few retries against the missing log
    assert_eq!(attestations(&fleet), [1]);
    fleet.log.up.store(true, Ordering::SeqCst);
    eventually("the spool drained", || attestations(&fleet) == [1, 2, 3, 4]);
    let stats = daemon.stop();
    assert!(stats.log_unavailable >= 1, "{stats:?}");
    assert_eq!(pending(), 0);
}

#[test]
fn a_stop_mid_cycle_loses_nothing_and_the_next_start_sends_what_is_left() {
    let mut fleet = Fleet::new(Arc::new(WallClock));
    fleet.agent_key(1, "hgx-01");
    let dump = fleet.dir.path().join("nvidia-smi-q.txt");
    write(&dump, &eight_gpu_text(3));
    fleet.log.up.store(false, Ordering::SeqCst);
    let daemon = start(&fleet, SigningKey::from_seed(&[1; 32]), &dump);
    let spool = fleet.dir.path().join("agent/spool");
    let pending =
        || std::fs::read_dir(&spool).map_or(0, |d| d.filter(|e| e.as_ref().unwrap().path().is_file()).count());
    eventually("an attestation spooled", || pending() == 1);
    // Stop while the daemon is retrying the send.
    let stats = daemon.stop();
    assert_eq!((stats.attestations, stats.accepted), (1, 0));
    assert_eq!(pending(), 1, "the unsent record survives the stop");
    fleet.log.up.store(true, Ordering::SeqCst);
    let daemon = start(&fleet, SigningKey::from_seed(&[1; 32]), &dump);
    eventually("the spooled record and a fresh one land", || attestations(&fleet) == [3, 3]);
    daemon.stop();
    assert_eq!(pending(), 0);
}
