//! Scene 4: where the chips are. Two landmarks — Singapore and Shanghai — time each host's
//! signed answers to their nonces over real TCP through the product's own landmark and
//! responder code, and log location proofs. Distance is SIMULATED: a relay on this machine holds
//! every packet for the one-way time the demo gives each host–landmark pair (the product itself
//! never adds delay).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chipledger_client::locate::respond;
use chipledger_domain::keys::SigningKey;
use chipledger_domain::location::Coord;
use chipledger_ledger::{Ledger, LedgerConfig};

use super::hosts::Host;
use super::Story;
use crate::cmd::landmark::{measure_one, Landmark};

/// A landmark the demo enrolls: name, surveyed site, operator.
pub(super) const LANDMARKS: [(&str, &str, &str); 2] = [
    ("sin-1", "1.2966,103.7764", "Landmark Org Singapore (simulated)"),
    ("sha-1", "31.2304,121.4737", "Landmark Org Shanghai (simulated)"),
];

/// Scene 4: every host answers both landmarks; the relay's one-way delay stands in for the
/// distance (the host's `one_way_ms`, in `LANDMARKS` order).
pub(super) fn prove(story: &Story, hosts: &[Host], agents: &[SigningKey], landmarks: &[SigningKey]) -> Result<()> {
    println!();
    println!("4. location proofs: landmarks in Singapore and Shanghai time each host's signed answers");
    println!(
        "   SIMULATED distance: a relay on this machine delays each packet by a one-way time per host and landmark"
    );
    for ((h, agent), (lm_key, (name, at, _))) in
        hosts.iter().zip(agents).flat_map(|ha| landmarks.iter().zip(LANDMARKS).map(move |l| (ha, l)))
    {
        let Some(delays) = h.site.as_ref().and_then(|p| p.one_way_ms) else {
            if name == LANDMARKS[0].0 {
                println!("   {:<12} answers no landmark (none near its declared site): unproven", h.name);
            }
            continue;
        };
        let which = LANDMARKS.iter().position(|(n, _, _)| *n == name).unwrap_or(0);
        let one_way = Duration::from_micros((delays[which] * 1000.0) as u64);
        let key = SigningKey::from_pkcs8_pem(&lm_key.to_pkcs8_pem()?)?;
        let (rtt_ns, bound_km, index) = measure(story, h.name, agent, name, Coord::parse(at)?, key, one_way)?;
        println!(
            "   {:<12} ↔ {name}: least round trip {:>6.2} ms (SIMULATED {:.2} ms each way) → within {:>6.0} km of {name}, index {index}",
            h.name,
            rtt_ns as f64 / 1e6,
            one_way.as_secs_f64() * 1e3,
            bound_km
        );
    }
    println!(
        "   host-key proofs locate the holder of each host's key, not the chip (GPU-signed answers need the hardware)"
    );
    Ok(())
}

/// One landmark measuring one host through a delaying relay, as `landmark serve` and `agent
/// locate` do it: the landmark's proof appended, its receipt checked.
fn measure(
    story: &Story,
    host: &str,
    agent: &SigningKey,
    name: &str,
    at: Coord,
    key: SigningKey,
    one_way: Duration,
) -> Result<(u64, f64, u64)> {
    let log = Ledger::open(&story.dir, LedgerConfig::default(), story.clock.clone())?;
    let landmark = Landmark::new(name.to_string(), at, key, Box::new(log), story.info.log_verifier_key.clone(), 5);
    let listener = TcpListener::bind("127.0.0.1:0").context("listening for the demo landmark")?;
    let addr = listener.local_addr()?.to_string();
    let served = std::thread::spawn(move || {
        if let Ok((stream, peer)) = listener.accept() {
            measure_one(&landmark, stream, &peer.to_string());
        }
    });
    let via = relay(addr, one_way)?;
    let mut stream = TcpStream::connect(&via).context("connecting to the demo landmark's relay")?;
    let (_, outcome) = respond(&mut stream, agent, host, &[], Duration::from_secs(10))?;
    served.join().ok();
    match (outcome.ok, outcome.min_rtt_ns, outcome.bound_km, outcome.index) {
        (true, Some(rtt), Some(km), Some(index)) => Ok((rtt, km, index)),
        _ => bail!("landmark {name} logged no proof of {host}: {}", outcome.error.unwrap_or_default()),
    }
}

/// A relay for one connection that delays every chunk, each way, by `one_way`: the demo's
/// stand-in for distance (SIMULATED).
fn relay(upstream: String, one_way: Duration) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").context("listening for the demo relay")?;
    let addr = listener.local_addr()?.to_string();
    std::thread::spawn(move || {
        let Ok((down, _)) = listener.accept() else { return };
        let Ok(up) = TcpStream::connect(&upstream) else { return };
        let (Ok(down2), Ok(up2)) = (down.try_clone(), up.try_clone()) else { return };
        pipe(down, up2, one_way);
        pipe(up, down2, one_way);
    });
    Ok(addr)
}

/// Copies `from` to `to`, each chunk sent `delay` after it arrived.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    from.set_nodelay(true).ok();
    to.set_nodelay(true).ok();
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for (at, chunk) in rx {
            if let Some(wait) = (at + delay).checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        to.shutdown(std::net::Shutdown::Write).ok();
    });
}
