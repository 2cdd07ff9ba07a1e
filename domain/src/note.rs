//! C2SP signed notes, tlog-checkpoints and tlog-proofs.
//!
//! A signed note is `text ‖ "\n" ‖ signature lines`, where `text` is one or more lines each
//! ending in `\n`, and each signature line is `— <name> base64(keyhash(4, big-endian) ‖ sig)\n`
//! (U+2014 em dash, then a space). Signatures cover `text` exactly. A checkpoint is a note whose
//! text is `origin\nsize\nbase64(root)\n[extension lines]`. A tlog-proof is
//! `c2sp.org/tlog-proof@v1\n[extra B64\n]index N\n[B64 hash\n]*\n<signed checkpoint>`.

use crate::encoding::{b64_decode, b64_encode};
use crate::keys::{check_key_name, SigningKey, VerifierKey};
use crate::merkle::{self, Hash};
use crate::Error;

/// Bounds on what a note may hold, against denial of service.
pub const MAX_NOTE_BYTES: usize = 1 << 20;
pub const MAX_SIGNATURES: usize = 100;

const SIG_PREFIX: &str = "\u{2014} ";

/// One signature line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_hash: u32,
    /// The signature bytes after the 4-byte key hash.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    pub fn line(&self) -> String {
        let mut raw = self.key_hash.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, b64_encode(&raw))
    }
}

/// A parsed, not yet verified, signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

/// A note after verification: which signatures verified under known keys, which were by keys
/// not given (ignored, as the spec requires).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedNote {
    pub text: String,
    pub verified_by: Vec<String>,
    pub unknown_signers: Vec<String>,
}

impl Note {
    /// Parses the note format, bounded; does not check signatures.
    pub fn parse(msg: &[u8]) -> Result<Note, Error> {
        if msg.len() > MAX_NOTE_BYTES {
            return Err(Error::TooLarge { what: "signed note", limit: MAX_NOTE_BYTES, found: msg.len() });
        }
        let s = std::str::from_utf8(msg).map_err(|_| Error::NoteMalformed { line: 1, reason: "not UTF-8" })?;
        if s.chars().any(|c| c.is_control() && c != '\n') {
            return Err(Error::NoteMalformed { line: 1, reason: "control characters other than newline" });
        }
        let split =
            s.rfind("\n\n").ok_or(Error::NoteMalformed { line: 1, reason: "no blank line before the signatures" })?;
        let text = &s[..split + 1];
        let sigs = &s[split + 2..];
        let text_lines = text.lines().count();
        if !sigs.ends_with('\n') {
            return Err(Error::NoteMalformed {
                line: text_lines + 2,
                reason: "the last signature line does not end in a newline",
            });
        }
        let mut signatures = Vec::new();
        for (i, line) in sigs.lines().enumerate() {
            let lineno = text_lines + 2 + i;
            let bad = |reason| Error::NoteMalformed { line: lineno, reason };
            let rest =
                line.strip_prefix(SIG_PREFIX).ok_or(bad("a signature line must start with an em dash and a space"))?;
            let (name, b64) = rest.split_once(' ').ok_or(bad("expected a key name and a base64 signature"))?;
            check_key_name(name).map_err(|_| bad("the key name is empty or has spaces or '+'"))?;
            let raw = b64_decode(b64, "note signature").map_err(|_| bad("the signature is not standard base64"))?;
            if raw.len() < 5 {
                return Err(bad("the signature is too short"));
            }
            signatures.push(NoteSignature {
                name: name.to_string(),
                key_hash: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
                signature: raw[4..].to_vec(),
            });
            if signatures.len() > MAX_SIGNATURES {
                return Err(bad("more than 100 signatures"));
            }
        }
        if signatures.is_empty() {
            return Err(Error::NoteMalformed { line: text_lines + 2, reason: "no signature lines" });
        }
        Ok(Note { text: text.to_string(), signatures })
    }

    /// Verifies against `keys`: signatures by keys not given are ignored; a signature by a given
    /// key that does not verify is an error; at least one given key must have signed.
    pub fn verify(&self, keys: &[VerifierKey]) -> Result<VerifiedNote, Error> {
        let mut verified_by = Vec::new();
        let mut unknown = Vec::new();
        for sig in &self.signatures {
            match keys.iter().find(|k| k.name() == sig.name && k.key_hash() == sig.key_hash) {
                Some(k) => {
                    k.public_key()
                        .verify(self.text.as_bytes(), &sig.signature)
                        .map_err(|_| Error::NoteBadSignature { key: format!("{}+{:08x}", sig.name, sig.key_hash) })?;
                    if !verified_by.contains(&sig.name) {
                        verified_by.push(sig.name.clone());
                    }
                }
                None => unknown.push(format!("{}+{:08x}", sig.name, sig.key_hash)),
            }
        }
        if verified_by.is_empty() {
            return Err(Error::NoteUnverified { signers: unknown.join(", ") });
        }
        Ok(VerifiedNote { text: self.text.clone(), verified_by, unknown_signers: unknown })
    }

    /// Parses then verifies.
    pub fn open(msg: &[u8], keys: &[VerifierKey]) -> Result<VerifiedNote, Error> {
        Note::parse(msg)?.verify(keys)
    }

    /// Signs `text` (which must be non-empty and end in a newline) with a named key.
    pub fn sign(text: &str, name: &str, key: &SigningKey) -> Result<Note, Error> {
        if text.is_empty() || !text.ends_with('\n') {
            return Err(Error::NoteMalformed { line: 1, reason: "the text must be non-empty and end in a newline" });
        }
        if text.contains("\n\n") || text.starts_with('\n') {
            return Err(Error::NoteMalformed { line: 1, reason: "the text must not contain blank lines" });
        }
        let vkey = VerifierKey::new(name, key.public_key())?;
        Ok(Note {
            text: text.to_string(),
            signatures: vec![NoteSignature {
                name: name.to_string(),
                key_hash: vkey.key_hash(),
                signature: key.sign(text.as_bytes()).to_vec(),
            }],
        })
    }

    /// Adds another signature (a cosigner's).
    pub fn cosign(&mut self, name: &str, key: &SigningKey) -> Result<(), Error> {
        let vkey = VerifierKey::new(name, key.public_key())?;
        self.signatures.push(NoteSignature {
            name: name.to_string(),
            key_hash: vkey.key_hash(),
            signature: key.sign(self.text.as_bytes()).to_vec(),
        });
        Ok(())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.text.clone().into_bytes();
        out.push(b'\n');
        for s in &self.signatures {
            out.extend_from_slice(s.line().as_bytes());
        }
        out
    }
}

/// A C2SP tlog-checkpoint body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Extension lines, kept verbatim (without their newlines).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    pub fn parse(text: &str) -> Result<Checkpoint, Error> {
        let bad = |line, reason| Error::Checkpoint { line, reason };
        if !text.ends_with('\n') {
            return Err(bad(1, "the text must end in a newline"));
        }
        let mut lines = text.lines();
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or(bad(1, "missing origin"))?;
        let size_s = lines.next().ok_or(bad(2, "missing tree size"))?;
        if size_s.is_empty()
            || !size_s.bytes().all(|b| b.is_ascii_digit())
            || (size_s.len() > 1 && size_s.starts_with('0'))
        {
            return Err(bad(2, "the tree size must be a decimal number without leading zeros"));
        }
        let size = size_s.parse::<u64>().map_err(|_| bad(2, "the tree size is out of range"))?;
        let root_s = lines.next().ok_or(bad(3, "missing root hash"))?;
        let root = Hash::from_base64(root_s).map_err(|_| bad(3, "the root hash must be base64 of 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad(4, "empty extension line"));
        }
        Ok(Checkpoint { origin: origin.to_string(), size, root, extensions })
    }

    /// The checkpoint's note text.
    pub fn to_text(&self) -> String {
        let mut s = format!("{}\n{}\n{}\n", self.origin, self.size, self.root.to_base64());
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Signs this checkpoint into a note with the log key.
    pub fn sign(&self, name: &str, key: &SigningKey) -> Result<Note, Error> {
        Note::sign(&self.to_text(), name, key)
    }
}

/// A signed checkpoint after verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: VerifiedNote,
}

/// Opens a signed checkpoint with `keys`, optionally requiring an origin.
pub fn open_checkpoint(msg: &[u8], keys: &[VerifierKey], origin: Option<&str>) -> Result<VerifiedCheckpoint, Error> {
    let note = Note::open(msg, keys)?;
    let checkpoint = Checkpoint::parse(&note.text)?;
    if let Some(o) = origin {
        if checkpoint.origin != o {
            return Err(Error::OriginMismatch { expected: o.to_string(), found: checkpoint.origin });
        }
    }
    Ok(VerifiedCheckpoint { checkpoint, note })
}

/// A C2SP tlog-proof: an entry's index, its inclusion proof and the signed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    pub hashes: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: Vec<u8>,
}

pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

impl TlogProof {
    pub fn parse(msg: &[u8]) -> Result<TlogProof, Error> {
        if msg.len() > MAX_NOTE_BYTES {
            return Err(Error::TooLarge { what: "tlog-proof", limit: MAX_NOTE_BYTES, found: msg.len() });
        }
        let s = std::str::from_utf8(msg).map_err(|_| Error::ProofMalformed { line: 1, reason: "not UTF-8" })?;
        let (head, checkpoint) = s
            .split_once("\n\n")
            .ok_or(Error::ProofMalformed { line: 1, reason: "no blank line before the checkpoint" })?;
        let mut lines = head.split('\n').enumerate().map(|(i, l)| (i + 1, l)).peekable();
        let bad = |line, reason| Error::ProofMalformed { line, reason };
        match lines.next() {
            Some((_, TLOG_PROOF_HEADER)) => {}
            _ => return Err(bad(1, "the first line must be c2sp.org/tlog-proof@v1")),
        }
        let mut extra = None;
        if let Some((n, l)) = lines.peek().copied() {
            if let Some(b) = l.strip_prefix("extra ") {
                extra = Some(b64_decode(b, "proof extra").map_err(|_| bad(n, "extra data is not standard base64"))?);
                lines.next();
            }
        }
        let (n, idx_line) = lines.next().ok_or(bad(2, "missing index line"))?;
        let idx = idx_line.strip_prefix("index ").ok_or(bad(n, "expected 'index N'"))?;
        if idx.is_empty() || !idx.bytes().all(|b| b.is_ascii_digit()) || (idx.len() > 1 && idx.starts_with('0')) {
            return Err(bad(n, "the index must be a decimal number without leading zeros"));
        }
        let index = idx.parse::<u64>().map_err(|_| bad(n, "the index is out of range"))?;
        let mut hashes = Vec::new();
        for (n, l) in lines {
            hashes.push(Hash::from_base64(l).map_err(|_| bad(n, "a proof line must be base64 of a 32-byte hash"))?);
            if hashes.len() > 64 {
                return Err(bad(n, "more than 64 proof hashes"));
            }
        }
        Ok(TlogProof { extra, index, hashes, checkpoint: checkpoint.as_bytes().to_vec() })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!("{TLOG_PROOF_HEADER}\n");
        if let Some(e) = &self.extra {
            s.push_str(&format!("extra {}\n", b64_encode(e)));
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            s.push_str(&h.to_base64());
            s.push('\n');
        }
        s.push('\n');
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.checkpoint);
        out
    }

    /// Verifies the checkpoint's signature and that `leaf` is included at `index`.
    pub fn verify(&self, keys: &[VerifierKey], origin: Option<&str>, leaf: &Hash) -> Result<VerifiedCheckpoint, Error> {
        let cp = open_checkpoint(&self.checkpoint, keys, origin)?;
        merkle::verify_inclusion(self.index, cp.checkpoint.size, leaf, &self.hashes, &cp.checkpoint.root)?;
        Ok(cp)
    }
}
