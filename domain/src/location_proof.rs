//! `location-proof/v1`: a landmark's signed measurement of how fast a host answered its
//! challenges, with the answers, so that any reader can check them.
//!
//! A landmark (a key of role `landmark`, enrolled by an admin with its surveyed coordinates and
//! operator, [`crate::records::Site`]) sends a fresh random nonce per round; the host's agent
//! signs [`answer_message`] with its enrolled key; the landmark times each exchange on its
//! monotonic clock and keeps the minimum. Light covers at most `c · (rtt − floor) / 2`, and a
//! relay only adds delay, so the record bounds the distance from the landmark to *the holder of
//! the host key* (`host-key` proofs never locate a chip: [`crate::location::Method`]).
//!
//! The ledger refuses a proof whose answers do not verify under the subject's enrolled agent
//! key, whose subject key is not that host's, or whose landmark is not the signer; readers take
//! the landmark's coordinates from its enrollment, never from the record alone.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::encoding::{b64_decode, b64_encode};
use crate::fingerprint::GpuUuid;
use crate::keys::{KeyId, PublicKey};
use crate::location::{Coord, Method};
use crate::merkle::Hash;
use crate::records::{Predicate, RecordKind, Subject};
use crate::Error;

/// The most challenge rounds one proof carries.
pub const MAX_ROUNDS: usize = 64;
/// The most GPUs one proof names (the host's, as its agent lists them).
pub const MAX_GPUS: usize = 64;
/// The longest landmark or host name.
pub const MAX_NAME: usize = 253;

/// `location-proof/v1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocationProof {
    pub format_version: u32,
    pub counter: u64,
    /// When the landmark finished measuring (its clock; the log checks it against its own).
    #[serde(with = "time::serde::rfc3339")]
    pub measured_at: OffsetDateTime,
    /// The landmark's name: the host its key was enrolled for.
    pub landmark: String,
    /// The landmark's surveyed coordinates, as its enrollment gives them.
    pub landmark_at: Coord,
    pub subject: LocatedSubject,
    pub method: Method,
    /// Every round, in order: the nonce sent, the round trip measured, the answer.
    pub rounds: Vec<Round>,
    /// The least round trip of `rounds`: the one the bound is drawn from.
    pub min_rtt_ns: u64,
    /// The answer's processing time the landmark has verified for this method and subtracts
    /// (0: nothing subtracted, the larger, conservative disk).
    #[serde(default)]
    pub floor_ns: u64,
}

/// Who answered: a host, through its agent's key, and the GPUs the agent said it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocatedSubject {
    pub host: String,
    /// The agent key that signed the answers (enrolled for `host`).
    pub key_id: KeyId,
    /// The GPUs the host's agent said it holds: its word, not evidence; no GPU's history lists
    /// the proof.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuUuid>,
}

/// One challenge and its answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Round {
    /// The landmark's fresh nonce (32 bytes, hex).
    pub nonce: String,
    pub rtt_ns: u64,
    /// The agent's Ed25519 signature over [`answer_message`] (base64).
    pub answer: String,
}

impl Round {
    /// The nonce's bytes.
    pub fn nonce_bytes(&self) -> Result<[u8; 32], Error> {
        hex::decode(&self.nonce)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::Hex { what: "location nonce", reason: "expected 64 hex digits (32 bytes)".into() })
    }

    /// The answer's signature bytes.
    pub fn answer_bytes(&self) -> Result<[u8; 64], Error> {
        b64_decode(&self.answer, "location answer")?
            .try_into()
            .map_err(|_| Error::Hex { what: "location answer", reason: "expected a 64-byte Ed25519 signature".into() })
    }
}

/// What an agent signs to answer a landmark's challenge: a label, the landmark's name, the host
/// and the nonce. Bound to both names, an answer is good for this landmark and host only.
pub fn answer_message(landmark: &str, host: &str, nonce: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(64 + landmark.len() + host.len());
    m.extend_from_slice(b"chipledger location-answer v1\n");
    m.extend_from_slice(landmark.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(host.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(hex::encode(nonce).as_bytes());
    m
}

impl LocationProof {
    /// A proof from measured rounds: `min_rtt_ns` computed, nothing else decided.
    pub fn new(header: ProofHeader, subject: LocatedSubject, rounds: Vec<Round>) -> LocationProof {
        let min_rtt_ns = rounds.iter().map(|r| r.rtt_ns).min().unwrap_or(0);
        LocationProof {
            format_version: crate::records::FORMAT_VERSION,
            counter: header.counter,
            measured_at: header.measured_at,
            landmark: header.landmark,
            landmark_at: header.landmark_at,
            subject,
            method: Method::HostKey,
            rounds,
            min_rtt_ns,
            floor_ns: header.floor_ns,
        }
    }

    /// Checks every round's answer under the subject's agent key. Names the first that fails.
    pub fn verify_answers(&self, agent: &PublicKey) -> Result<(), Error> {
        for (i, round) in self.rounds.iter().enumerate() {
            let nonce = round.nonce_bytes()?;
            let sig = round.answer_bytes()?;
            agent.verify(&answer_message(&self.landmark, &self.subject.host, &nonce), &sig).map_err(|_| {
                Error::Location {
                    reason: format!(
                        "round {} of landmark {}'s proof: the answer is not {}'s signature over the nonce",
                        i + 1,
                        self.landmark,
                        self.subject.host
                    ),
                }
            })?;
        }
        Ok(())
    }

    /// The distance bound (km) the proof draws: light in vacuum over half the least round trip,
    /// less the verified floor.
    pub fn bound_km(&self) -> f64 {
        crate::location::bound_km(self.min_rtt_ns, self.floor_ns)
    }
}

/// What a landmark states of itself in a proof.
#[derive(Clone, Debug)]
pub struct ProofHeader {
    pub counter: u64,
    pub measured_at: OffsetDateTime,
    pub landmark: String,
    pub landmark_at: Coord,
    pub floor_ns: u64,
}

/// A landmark or host name as a proof (and the protocol) takes it: 1 to [`MAX_NAME`]
/// characters, none a control character.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(format!("the {what} name must be 1 to {MAX_NAME} characters, none a control character"));
    }
    Ok(())
}

/// Signs an answer (the agent's side).
pub fn answer(key: &crate::keys::SigningKey, landmark: &str, host: &str, nonce: &[u8; 32]) -> String {
    b64_encode(&key.sign(&answer_message(landmark, host, nonce)))
}

impl Predicate for LocationProof {
    const KIND: RecordKind = RecordKind::LocationProof;

    fn subjects(&self) -> Vec<Subject> {
        let mut out =
            vec![Subject::sha256(format!("host:{}", self.subject.host), &Hash::sha256(self.subject.host.as_bytes()))];
        out.extend(
            self.subject.gpus.iter().map(|u| Subject::sha256(format!("gpu:{u}"), &Hash::sha256(u.as_str().as_bytes()))),
        );
        out
    }

    fn check(&self) -> Result<(), String> {
        check_name("landmark", &self.landmark)?;
        check_name("host", &self.subject.host)?;
        if self.method != Method::HostKey {
            return Err(format!(
                "method {} is not part of location-proof/v1 (its answers are host-key signatures)",
                self.method.label()
            ));
        }
        if self.rounds.is_empty() || self.rounds.len() > MAX_ROUNDS {
            return Err(format!("a proof carries 1 to {MAX_ROUNDS} rounds, not {}", self.rounds.len()));
        }
        if self.subject.gpus.len() > MAX_GPUS {
            return Err(format!("a proof names at most {MAX_GPUS} GPUs"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, r) in self.rounds.iter().enumerate() {
            let nonce = r.nonce_bytes().map_err(|e| format!("round {}: {e}", i + 1))?;
            r.answer_bytes().map_err(|e| format!("round {}: {e}", i + 1))?;
            if !seen.insert(nonce) {
                return Err(format!("round {}: a nonce used twice", i + 1));
            }
        }
        let least = self.rounds.iter().map(|r| r.rtt_ns).min().unwrap_or(0);
        if self.min_rtt_ns != least {
            return Err(format!("min_rtt_ns is {}, the rounds' least is {least}", self.min_rtt_ns));
        }
        if self.floor_ns > self.min_rtt_ns {
            return Err(format!("the floor ({} ns) exceeds the least round trip ({} ns)", self.floor_ns, least));
        }
        Ok(())
    }
}
