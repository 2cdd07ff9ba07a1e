//! The landmark protocol, both ends, over one TCP connection: a landmark times a host's signed
//! answers to its fresh nonces (`domain::location_proof`).
//!
//! ```text
//! landmark → host   greeting line   {"v":1,"landmark":NAME,"rounds":N}
//! host → landmark   hello line      {"v":1,"host":H,"public_key":B64,"gpus":[UUID…]}
//! N times:
//!   landmark → host b'C' ‖ nonce (32 bytes)          ← the clock starts before this write
//!   host → landmark b'A' ‖ Ed25519 signature (64)    ← and stops when this is read whole
//! landmark → host   outcome line    {"ok":true,"index":I,"min_rtt_ns":R,"bound_km":D} | {"ok":false,"error":E}
//! ```
//!
//! Lines are bounded (16 KiB) and each connection has one deadline, whatever the pace of its reads. The round trip covers only the
//! challenge exchange, on the landmark's monotonic clock; the landmark checks every answer
//! after the last round (checking in between would time the landmark, not the distance). A
//! relay between the two can only add delay. This module adds none: nothing here sleeps.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use chipledger_domain::encoding::{b64_decode, b64_encode};
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::keys::{PublicKey, SigningKey};
use chipledger_domain::location_proof::{answer_message, check_name, Round, MAX_GPUS, MAX_ROUNDS};
use rand_core::RngCore;
use serde::{Deserialize, Serialize};

/// The longest line either end sends.
pub const MAX_LINE: usize = 16 * 1024;
/// Protocol version.
pub const VERSION: u32 = 1;

/// What can go wrong on either end; the message says which step.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("{step}: {source}")]
    Io { step: &'static str, source: std::io::Error },
    #[error("{0}")]
    Protocol(String),
    #[error("the landmark refused: {0}")]
    Refused(String),
}

fn io(step: &'static str) -> impl FnOnce(std::io::Error) -> LocateError {
    move |source| LocateError::Io { step, source }
}

/// The landmark's opening line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Greeting {
    pub v: u32,
    pub landmark: String,
    pub rounds: usize,
}

/// The host's opening line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hello {
    pub v: u32,
    pub host: String,
    /// The agent's Ed25519 public key (32 bytes, base64): the one enrolled for `host`.
    pub public_key: String,
    #[serde(default)]
    pub gpus: Vec<GpuUuid>,
}

/// The landmark's closing line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rtt_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_km: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a landmark measured on one connection: who answered, and every round (answers checked
/// under the hello's key).
#[derive(Clone, Debug)]
pub struct Measured {
    pub hello: Hello,
    pub public_key: PublicKey,
    pub rounds: Vec<Round>,
}

/// The landmark's side of one connection, up to the outcome: greets, reads the hello, runs
/// `rounds` timed challenges with fresh nonces from `rng`, then checks every answer. The caller
/// records the proof and sends [`Outcome`] with [`send_outcome`].
pub fn challenge(
    stream: &mut TcpStream,
    landmark: &str,
    rounds: usize,
    timeout: Duration,
    rng: &mut dyn RngCore,
) -> Result<Measured, LocateError> {
    if rounds == 0 || rounds > MAX_ROUNDS {
        return Err(LocateError::Protocol(format!("a landmark runs 1 to {MAX_ROUNDS} rounds, not {rounds}")));
    }
    // One deadline for the whole connection, not per read: a peer dripping a byte at a time
    // holds a slot for `timeout` at most.
    let deadline = Instant::now() + timeout;
    stream.set_nodelay(true).map_err(io("setting TCP_NODELAY"))?;
    until(stream, deadline)?;
    let greeting = Greeting { v: VERSION, landmark: landmark.to_string(), rounds };
    write_line(stream, &greeting, "sending the greeting")?;
    let hello: Hello = read_line(stream, deadline, "reading the host's hello")?;
    check_hello(&hello)?;
    let public_key = PublicKey::from_bytes(&b64_decode(&hello.public_key, "hello public key").map_err(protocol)?)
        .map_err(|e| LocateError::Protocol(format!("the hello's public key: {e}")))?;
    let mut measured = Vec::with_capacity(rounds);
    let mut frame = [0u8; 33];
    let mut reply = [0u8; 65];
    for _ in 0..rounds {
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        frame[0] = b'C';
        frame[1..].copy_from_slice(&nonce);
        until(stream, deadline)?;
        let start = Instant::now();
        stream.write_all(&frame).map_err(io("sending a challenge"))?;
        stream.read_exact(&mut reply).map_err(io("reading an answer"))?;
        let rtt = start.elapsed();
        if reply[0] != b'A' {
            return Err(LocateError::Protocol("an answer frame does not start with 'A'".into()));
        }
        measured.push(Round {
            nonce: hex::encode(nonce),
            rtt_ns: u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX),
            answer: b64_encode(&reply[1..]),
        });
    }
    // Every answer, after the clock has stopped.
    for (i, (round, nonce)) in measured.iter().zip(measured.iter().map(Round::nonce_bytes)).enumerate() {
        let nonce = nonce.map_err(protocol)?;
        let sig = round.answer_bytes().map_err(protocol)?;
        public_key.verify(&answer_message(landmark, &hello.host, &nonce), &sig).map_err(|_| {
            LocateError::Protocol(format!(
                "round {}: the answer is not a signature over this landmark's nonce by the hello's key",
                i + 1
            ))
        })?;
    }
    Ok(Measured { hello, public_key, rounds: measured })
}

/// Sends the landmark's closing line.
pub fn send_outcome(stream: &mut TcpStream, outcome: &Outcome) -> Result<(), LocateError> {
    write_line(stream, outcome, "sending the outcome")
}

/// The host's side of one connection: reads the greeting, says hello, answers every challenge
/// with `key`'s signature, and returns the landmark's greeting and outcome. A landmark that
/// asks for more rounds than it announced, or more than [`MAX_ROUNDS`], is cut off.
pub fn respond(
    stream: &mut TcpStream,
    key: &SigningKey,
    host: &str,
    gpus: &[GpuUuid],
    timeout: Duration,
) -> Result<(Greeting, Outcome), LocateError> {
    let deadline = Instant::now() + timeout;
    stream.set_nodelay(true).map_err(io("setting TCP_NODELAY"))?;
    until(stream, deadline)?;
    let greeting: Greeting = read_line(stream, deadline, "reading the landmark's greeting")?;
    if greeting.v != VERSION {
        return Err(LocateError::Protocol(format!("the landmark speaks version {}, this agent {VERSION}", greeting.v)));
    }
    if greeting.rounds == 0 || greeting.rounds > MAX_ROUNDS {
        return Err(LocateError::Protocol(format!(
            "the landmark asks for {} rounds, not 1 to {MAX_ROUNDS}",
            greeting.rounds
        )));
    }
    check_name("landmark", &greeting.landmark).map_err(LocateError::Protocol)?;
    let hello = Hello {
        v: VERSION,
        host: host.to_string(),
        public_key: b64_encode(&key.public_key().to_bytes()),
        gpus: gpus.to_vec(),
    };
    write_line(stream, &hello, "sending the hello")?;
    let mut frame = [0u8; 33];
    let mut reply = [0u8; 65];
    reply[0] = b'A';
    for _ in 0..greeting.rounds {
        until(stream, deadline)?;
        stream.read_exact(&mut frame).map_err(io("reading a challenge"))?;
        if frame[0] != b'C' {
            return Err(LocateError::Protocol("a challenge frame does not start with 'C'".into()));
        }
        let mut nonce = [0u8; 32];
        nonce.copy_from_slice(&frame[1..]);
        reply[1..].copy_from_slice(&key.sign(&answer_message(&greeting.landmark, host, &nonce)));
        stream.write_all(&reply).map_err(io("sending an answer"))?;
    }
    let outcome: Outcome = read_line(stream, deadline, "reading the landmark's outcome")?;
    if !outcome.ok {
        let why = outcome.error.unwrap_or_else(|| "no reason given".into());
        return Err(LocateError::Refused(why.chars().filter(|c| !c.is_control()).take(1000).collect()));
    }
    Ok((greeting, outcome))
}

fn check_hello(h: &Hello) -> Result<(), LocateError> {
    if h.v != VERSION {
        return Err(LocateError::Protocol(format!("the host speaks version {}, this landmark {VERSION}", h.v)));
    }
    check_name("host", &h.host).map_err(LocateError::Protocol)?;
    if h.gpus.len() > MAX_GPUS {
        return Err(LocateError::Protocol(format!("a hello names at most {MAX_GPUS} GPUs")));
    }
    Ok(())
}

fn protocol(e: chipledger_domain::Error) -> LocateError {
    LocateError::Protocol(e.to_string())
}

fn write_line<T: Serialize>(stream: &mut TcpStream, value: &T, step: &'static str) -> Result<(), LocateError> {
    let mut line = serde_json::to_vec(value).map_err(|e| LocateError::Protocol(format!("{step}: {e}")))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io(step))
}

/// Sets the stream's read and write timeouts to what is left before `deadline`.
fn until(stream: &TcpStream, deadline: Instant) -> Result<(), LocateError> {
    let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
    let Some(left) = left else {
        return Err(LocateError::Protocol("the connection's deadline passed".into()));
    };
    stream.set_read_timeout(Some(left)).map_err(io("setting a read deadline"))?;
    stream.set_write_timeout(Some(left)).map_err(io("setting a write deadline"))
}

fn read_line<T: for<'de> Deserialize<'de>>(
    stream: &mut TcpStream,
    deadline: Instant,
    step: &'static str,
) -> Result<T, LocateError> {
    // Byte by byte up to the newline: nothing past the line may be consumed (the frames follow
    // on the same stream), and a line is a few hundred bytes.
    let mut line = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    loop {
        until(stream, deadline)?;
        stream.read_exact(&mut byte).map_err(io(step))?;
        if byte[0] == b'\n' {
            break;
        }
        if line.len() >= MAX_LINE {
            return Err(LocateError::Protocol(format!("{step}: a line over {MAX_LINE} bytes")));
        }
        line.push(byte[0]);
    }
    serde_json::from_slice(&line).map_err(|e| LocateError::Protocol(format!("{step}: {e}")))
}
