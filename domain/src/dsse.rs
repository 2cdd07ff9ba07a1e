//! DSSE envelopes (Dead Simple Signing Envelope v1) over exact payload bytes.
//!
//! `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII
//! decimal. A signature covers `PAE(payloadType, payload)` where `payload` is the decoded bytes
//! exactly as they travel; nothing is re-serialized before verifying.

use serde::{Deserialize, Serialize};

use crate::encoding::{b64_decode, b64_encode};
use crate::keys::{KeyId, PublicKey, SigningKey};
use crate::Error;

/// The payload type of every chipledger record.
pub const PAYLOAD_TYPE_IN_TOTO: &str = "application/vnd.in-toto+json";

/// The largest envelope chipledger accepts, in bytes of JSON.
pub const MAX_ENVELOPE_BYTES: usize = 1 << 20;

/// A DSSE envelope as it travels (JSON field names per the DSSE spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Standard padded base64 of the payload bytes.
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    /// Standard padded base64 of the 64-byte Ed25519 signature.
    pub sig: String,
}

/// DSSE v1 pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// Signs `payload` as is.
    pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey) -> Envelope {
        let sig = key.sign(&pae(payload_type, payload));
        Envelope {
            payload: b64_encode(payload),
            payload_type: payload_type.to_string(),
            signatures: vec![EnvelopeSignature { keyid: key.key_id().to_string(), sig: b64_encode(&sig) }],
        }
    }

    /// Parses envelope JSON, bounded in size, checking the shape (not the signatures).
    pub fn from_json(bytes: &[u8]) -> Result<Envelope, Error> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(Error::TooLarge { what: "envelope", limit: MAX_ENVELOPE_BYTES, found: bytes.len() });
        }
        let env: Envelope =
            serde_json::from_slice(bytes).map_err(|e| Error::Json { what: "DSSE envelope", message: e.to_string() })?;
        if env.signatures.is_empty() {
            return Err(Error::Envelope { reason: "it has no signatures".into() });
        }
        env.payload_bytes()?;
        for s in &env.signatures {
            let raw = b64_decode(&s.sig, "envelope signature")?;
            if raw.len() != 64 {
                return Err(Error::Envelope { reason: format!("signature is {} bytes, Ed25519 needs 64", raw.len()) });
            }
        }
        Ok(env)
    }

    /// Compact JSON, the bytes a client submits and the log stores.
    pub fn to_json(&self) -> Vec<u8> {
        // Invariant: a struct of strings always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn payload_bytes(&self) -> Result<Vec<u8>, Error> {
        b64_decode(&self.payload, "envelope payload")
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.signatures.iter().map(|s| s.keyid.as_str())
    }

    /// Verifies the signature made by `key` and returns the payload bytes it covers.
    pub fn verify(&self, key: &PublicKey) -> Result<Vec<u8>, Error> {
        let key_id = key.key_id();
        let sig = self
            .signatures
            .iter()
            .find(|s| s.keyid == key_id.as_str())
            .ok_or_else(|| Error::NoSignatureByKey { key_id: key_id.to_string() })?;
        let payload = self.payload_bytes()?;
        let raw = b64_decode(&sig.sig, "envelope signature")?;
        key.verify(&pae(&self.payload_type, &payload), &raw)?;
        Ok(payload)
    }

    /// The (message, signature) pair for `key_id`, for batch verification.
    pub fn signed_message(&self, key_id: &KeyId) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let sig = self
            .signatures
            .iter()
            .find(|s| s.keyid == key_id.as_str())
            .ok_or_else(|| Error::NoSignatureByKey { key_id: key_id.to_string() })?;
        Ok((pae(&self.payload_type, &self.payload_bytes()?), b64_decode(&sig.sig, "envelope signature")?))
    }
}
