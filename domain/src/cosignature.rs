//! C2SP tlog-cosignature (`cosignature/v1`, Ed25519): a witness's timestamped statement that,
//! as of its time, the checkpoint is the largest consistent tree head it has seen of the log.
//!
//! A cosignature is a note signature on the checkpoint: `— <witness name>
//! base64(key ID ‖ u64 BE timestamp ‖ Ed25519 signature)`, where the key ID is
//! `SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key)[:4]` and the signed message is
//! `"cosignature/v1\ntime <timestamp>\n" ‖ the checkpoint's note text`. Witness keys are C2SP
//! vkeys of signature type 0x04. A [`WitnessPolicy`] asks for a quorum of them.

use sha2::{Digest, Sha256};

use crate::encoding::b64_encode;
use crate::keys::{check_key_name, parse_vkey, PublicKey, SigningKey};
use crate::note::{Note, NoteSignature};
use crate::Error;

/// The vkey signature type of an Ed25519 `cosignature/v1` witness key.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ pubkey)[0..4]`, big-endian.
pub fn cosignature_key_hash(name: &str, public: &PublicKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_COSIGNATURE_V1]);
    h.update(public.to_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// What a witness signs for a checkpoint whose note text is `text`, at `timestamp`.
pub fn signed_message(text: &str, timestamp: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{text}").into_bytes()
}

/// A witness's public key: its name and Ed25519 key, as a C2SP vkey of type 0x04.
#[derive(Clone, PartialEq, Eq)]
pub struct WitnessKey {
    name: String,
    key_hash: u32,
    public: PublicKey,
}

impl std::fmt::Debug for WitnessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WitnessKey({self})")
    }
}

impl std::fmt::Display for WitnessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![ALG_COSIGNATURE_V1];
        raw.extend_from_slice(&self.public.to_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.key_hash, b64_encode(&raw))
    }
}

impl WitnessKey {
    pub fn new(name: &str, public: PublicKey) -> Result<WitnessKey, Error> {
        check_key_name(name)?;
        Ok(WitnessKey { name: name.to_string(), key_hash: cosignature_key_hash(name, &public), public })
    }

    /// Parses `name+hash+base64(0x04 ‖ pubkey)`, checking the hash against name and key.
    pub fn parse(vkey: &str) -> Result<WitnessKey, Error> {
        let (name, key_hash, public) = parse_vkey(
            vkey,
            ALG_COSIGNATURE_V1,
            "not a cosignature/v1 witness key (signature type 0x04)",
            cosignature_key_hash,
        )?;
        Ok(WitnessKey { name, key_hash, public })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_hash(&self) -> u32 {
        self.key_hash
    }

    /// This witness's cosignature among `note`'s signatures (matched by name and key ID, as the
    /// spec asks; others are ignored): `None` if it has none, else its timestamp once the
    /// signature verifies.
    pub fn cosignature_time(&self, note: &Note) -> Option<Result<u64, Error>> {
        let sig = note.signatures.iter().find(|s| s.name == self.name && s.key_hash == self.key_hash)?;
        let bad = || Error::NoteBadSignature { key: format!("{}+{:08x}", self.name, self.key_hash) };
        if sig.signature.len() != 8 + 64 {
            return Some(Err(bad()));
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&sig.signature[..8]);
        let timestamp = u64::from_be_bytes(ts);
        if timestamp > i64::MAX as u64 {
            return Some(Err(bad()));
        }
        Some(
            self.public
                .verify(&signed_message(&note.text, timestamp), &sig.signature[8..])
                .map(|()| timestamp)
                .map_err(|_| bad()),
        )
    }
}

/// A witness's signing side: its name and key.
pub struct Cosigner<'k> {
    pub name: &'k str,
    pub key: &'k SigningKey,
}

impl std::fmt::Debug for Cosigner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cosigner").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Cosigner<'_> {
    /// The cosignature line for a checkpoint with note text `text`, at `timestamp`.
    pub fn cosign(&self, text: &str, timestamp: u64) -> Result<NoteSignature, Error> {
        if timestamp > i64::MAX as u64 {
            return Err(Error::NoteMalformed { line: 1, reason: "a cosignature's time must not exceed 2^63 - 1" });
        }
        let vkey = WitnessKey::new(self.name, self.key.public_key())?;
        let mut signature = timestamp.to_be_bytes().to_vec();
        signature.extend_from_slice(&self.key.sign(&signed_message(text, timestamp)));
        Ok(NoteSignature { name: self.name.to_string(), key_hash: vkey.key_hash, signature })
    }
}

/// Which witnesses a reader trusts and how many of them must have cosigned a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessPolicy {
    pub witnesses: Vec<WitnessKey>,
    pub quorum: usize,
}

impl WitnessPolicy {
    /// A policy of `quorum` among `witnesses` (distinct names; 1 ≤ quorum ≤ their number).
    pub fn new(witnesses: Vec<WitnessKey>, quorum: usize) -> Result<WitnessPolicy, Error> {
        let mut names: Vec<&str> = witnesses.iter().map(WitnessKey::name).collect();
        names.sort_unstable();
        names.dedup();
        if names.len() != witnesses.len() {
            return Err(Error::WitnessPolicy { reason: "a witness is named twice".into() });
        }
        let mut keys: Vec<[u8; 32]> = witnesses.iter().map(|w| w.public.to_bytes()).collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.len() != witnesses.len() {
            return Err(Error::WitnessPolicy {
                reason: "one key is given under two witness names: it counts once".into(),
            });
        }
        if quorum == 0 || quorum > witnesses.len() {
            return Err(Error::WitnessPolicy {
                reason: format!(
                    "the quorum is {quorum}, but it must be 1 to {} (the witnesses given)",
                    witnesses.len()
                ),
            });
        }
        Ok(WitnessPolicy { witnesses, quorum })
    }

    /// Checks that at least `quorum` of the witnesses cosigned `note` (a checkpoint whose log
    /// signature the caller checks): the witnesses that did, with their times. A cosignature
    /// that is there but does not verify is an error, never just not counted.
    pub fn check(&self, note: &Note) -> Result<Vec<(String, u64)>, Error> {
        let mut cosigned = Vec::new();
        let mut missing = Vec::new();
        for w in &self.witnesses {
            match w.cosignature_time(note) {
                Some(Ok(t)) => cosigned.push((w.name.clone(), t)),
                Some(Err(e)) => return Err(e),
                None => missing.push(w.name.clone()),
            }
        }
        if cosigned.len() < self.quorum {
            return Err(Error::QuorumNotMet { have: cosigned.len(), need: self.quorum, missing: missing.join(", ") });
        }
        Ok(cosigned)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failure is the point
mod tests {
    use super::*;
    use crate::keys::VerifierKey;

    fn checkpoint() -> Note {
        let log = SigningKey::from_seed(&[1; 32]);
        Note::sign("example.com/log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", "example.com/log", &log)
            .unwrap()
    }

    #[test]
    fn a_cosignature_verifies_under_its_witness_key_and_binds_text_time_and_key() {
        let key = SigningKey::from_seed(&[2; 32]);
        let w = Cosigner { name: "witness.example/w1", key: &key };
        let mut note = checkpoint();
        note.signatures.push(w.cosign(&note.text, 1_679_315_147).unwrap());
        let vkey = WitnessKey::new("witness.example/w1", key.public_key()).unwrap();
        assert_eq!(WitnessKey::parse(&vkey.to_string()).unwrap(), vkey);
        assert_eq!(vkey.cosignature_time(&note).unwrap().unwrap(), 1_679_315_147);
        // The log's own key still verifies the note; the cosignature is one more line.
        let log = VerifierKey::new("example.com/log", SigningKey::from_seed(&[1; 32]).public_key()).unwrap();
        note.verify(&[log]).unwrap();
        let reparsed = Note::parse(&note.to_bytes()).unwrap();
        assert_eq!(vkey.cosignature_time(&reparsed).unwrap().unwrap(), 1_679_315_147);
        // Another time, another text: the signature no longer verifies.
        let mut moved = note.clone();
        let sig = &mut moved.signatures[1].signature;
        sig[7] ^= 1;
        assert!(vkey.cosignature_time(&moved).unwrap().is_err());
        let mut other = note.clone();
        other.text = "example.com/log\n6\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n".into();
        assert!(vkey.cosignature_time(&other).unwrap().is_err());
        // The same name with another key: not this witness's line.
        let stranger = WitnessKey::new("witness.example/w1", SigningKey::from_seed(&[3; 32]).public_key()).unwrap();
        assert!(stranger.cosignature_time(&note).is_none());
        // A log-style (0x01) key under the same name has another key ID: not a cosignature.
        assert_ne!(crate::keys::note_key_hash("witness.example/w1", &key.public_key()), vkey.key_hash());
    }

    #[test]
    fn witness_keys_of_another_type_or_with_a_wrong_hash_are_refused() {
        let vkey = WitnessKey::new("w", SigningKey::from_seed(&[2; 32]).public_key()).unwrap().to_string();
        let log_style = VerifierKey::new("w", SigningKey::from_seed(&[2; 32]).public_key()).unwrap().to_string();
        assert!(WitnessKey::parse(&log_style).unwrap_err().to_string().contains("0x04"));
        let (name, rest) = vkey.split_once('+').unwrap();
        let wrong_hash = format!("{name}+00000000{}", &rest[8..]);
        assert!(WitnessKey::parse(&wrong_hash).is_err());
        for bad in ["", "w", "w+1234", "w+zzzzzzzz+AA==", &format!("{vkey}x")] {
            assert!(WitnessKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_quorum_counts_valid_cosignatures_and_names_the_missing_witnesses() {
        let keys: Vec<SigningKey> = (10..13).map(|s| SigningKey::from_seed(&[s; 32])).collect();
        let names = ["w1.example", "w2.example", "w3.example"];
        let witnesses: Vec<WitnessKey> =
            keys.iter().zip(names).map(|(k, n)| WitnessKey::new(n, k.public_key()).unwrap()).collect();
        let policy = WitnessPolicy::new(witnesses.clone(), 2).unwrap();
        let mut note = checkpoint();
        note.signatures.push(Cosigner { name: names[0], key: &keys[0] }.cosign(&note.text, 100).unwrap());
        let e = policy.check(&note).unwrap_err().to_string();
        assert!(e.contains("1 of the 2") && e.contains("w2.example, w3.example"), "{e}");
        note.signatures.push(Cosigner { name: names[2], key: &keys[2] }.cosign(&note.text, 101).unwrap());
        assert_eq!(policy.check(&note).unwrap(), vec![("w1.example".into(), 100), ("w3.example".into(), 101)]);
        // A cosignature that is there but bent is an error, not a missing witness.
        note.signatures[1].signature[20] ^= 1;
        assert!(matches!(policy.check(&note), Err(Error::NoteBadSignature { .. })));
        assert!(WitnessPolicy::new(witnesses.clone(), 0).is_err());
        assert!(WitnessPolicy::new(witnesses.clone(), 4).is_err());
        assert!(WitnessPolicy::new(vec![witnesses[0].clone(), witnesses[0].clone()], 1).is_err());
        let alias = WitnessKey::new("alias.example", keys[0].public_key()).unwrap();
        assert!(WitnessPolicy::new(vec![witnesses[0].clone(), alias], 2).is_err());
    }
}
