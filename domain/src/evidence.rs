//! NVIDIA GPU attestation evidence, verified offline: an SPDM 1.1 GET_MEASUREMENTS request (the
//! verifier's nonce) and the GPU's signed response (measurement blocks, NVIDIA's opaque data —
//! driver and VBIOS versions, chip and project SKU, FWID…), checked against the GPU's attestation
//! key certificate chain up to a pinned NVIDIA device root.
//!
//! Layout (DMTF SPDM 1.1, as NVIDIA's GPUs fill it): request = version, code 0xE0, param1,
//! param2, nonce (32), slot (1) — 37 bytes. Response = version, code 0x60, param1, param2,
//! number of blocks (1), record length (3, LE), the record (blocks of index, specification 1 =
//! DMTF, size (2, LE), then value type (1), value size (2, LE), value), nonce (32), opaque length
//! (2, LE), opaque data (fields of type (2, LE), size (2, LE), value), signature (96: r ‖ s).
//! The signature is ECDSA P-384 with SHA-384 over request ‖ response without the signature.
//! Only this layout is hand-written; the curve is ring's, the certificates RustCrypto's x509-cert.

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_FIXED};
use x509_cert::der::{Decode, DecodePem, Encode};
use x509_cert::Certificate;

use crate::Error;

/// NVIDIA's device identity root ("NVIDIA Device Identity CA"), the root GPU attestation key
/// chains end in; shipped with the binary (from NVIDIA's nvtrust, `certs/verifier_device_root.pem`).
pub const NVIDIA_DEVICE_ROOT_PEM: &str = include_str!("../data/nvidia/device-identity-root.pem");

/// The SPDM request's size: header (4), nonce (32), slot (1).
pub const REQUEST_LEN: usize = 37;
/// An ECDSA P-384 signature, r ‖ s.
pub const SIGNATURE_LEN: usize = 96;
/// The most bytes a report may have (NVIDIA's are ~4 KiB).
pub const MAX_REPORT_BYTES: usize = 64 * 1024;
/// The most certificates a chain may have, and bytes a chain may take.
pub const MAX_CHAIN_CERTS: usize = 8;
pub const MAX_CHAIN_BYTES: usize = 64 * 1024;

/// NVIDIA's opaque data field types (from its verifier).
pub mod field {
    pub const DRIVER_VERSION: u16 = 3;
    pub const GPU_INFO: u16 = 4;
    pub const VBIOS_VERSION: u16 = 6;
    pub const BOARD_ID: u16 = 14;
    pub const CHIP_SKU: u16 = 15;
    pub const CHIP_SKU_MOD: u16 = 16;
    pub const PROJECT: u16 = 17;
    pub const PROJECT_SKU: u16 = 18;
    pub const PROJECT_SKU_MOD: u16 = 19;
    pub const FWID: u16 = 20;
}

/// One measurement block.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Measurement {
    pub index: u8,
    pub value_type: u8,
    #[serde(serialize_with = "crate::encoding::serialize_hex")]
    pub value: Vec<u8>,
}

/// A report taken apart (nothing verified yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The nonce the request carried (what the GPU signed over).
    pub nonce: [u8; 32],
    pub slot: u8,
    pub measurements: Vec<Measurement>,
    /// The response's own nonce (the responder's).
    pub response_nonce: [u8; 32],
    /// Opaque data fields, in order: (type, value).
    pub opaque: Vec<(u16, Vec<u8>)>,
    /// request ‖ response up to the signature: what the signature covers.
    pub signed: Vec<u8>,
    pub signature: [u8; SIGNATURE_LEN],
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Evidence { reason: reason.into() }
}

/// Reads a report as NVIDIA writes it: raw bytes or hex text (whitespace ignored).
pub fn decode_report(input: &[u8]) -> Result<Vec<u8>, Error> {
    if input.len() > 2 * MAX_REPORT_BYTES + 1024 {
        return Err(bad(format!("the report is over {MAX_REPORT_BYTES} bytes")));
    }
    let text: Vec<u8> = input.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    if !text.is_empty() && text.iter().all(u8::is_ascii_hexdigit) {
        return hex::decode(&text).map_err(|e| bad(format!("the report's hex text: {e}")));
    }
    Ok(input.to_vec())
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Error> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let Some(end) = end else {
            return Err(bad(format!("the report ends inside {what} (at byte {})", self.at)));
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn le(&mut self, n: usize, what: &str) -> Result<usize, Error> {
        Ok(self.take(n, what)?.iter().rev().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)))
    }
}

impl Report {
    /// Parses request ‖ response, bounded; checks the layout, never the signature.
    pub fn parse(bytes: &[u8]) -> Result<Report, Error> {
        if bytes.len() > MAX_REPORT_BYTES {
            return Err(bad(format!("the report is {} bytes, over {MAX_REPORT_BYTES}", bytes.len())));
        }
        let mut c = Cursor { bytes, at: 0 };
        let req = c.take(REQUEST_LEN, "the SPDM request")?;
        if req[1] != 0xE0 {
            return Err(bad(format!("the request code is 0x{:02x}, not GET_MEASUREMENTS (0xe0)", req[1])));
        }
        if req[0] != 0x11 {
            return Err(bad(format!("the request's SPDM version is 0x{:02x}, not 1.1", req[0])));
        }
        let mut nonce = [0u8; 32];
        nonce.copy_from_slice(&req[4..36]);
        let slot = req[36];
        let head = c.take(4, "the response header")?;
        if head[1] != 0x60 {
            return Err(bad(format!("the response code is 0x{:02x}, not MEASUREMENTS (0x60)", head[1])));
        }
        if head[0] != req[0] {
            return Err(bad("the response's SPDM version is not the request's"));
        }
        let blocks = c.le(1, "the number of blocks")?;
        let record_len = c.le(3, "the measurement record length")?;
        let record = c.take(record_len, "the measurement record")?;
        let mut r = Cursor { bytes: record, at: 0 };
        let mut measurements = Vec::with_capacity(blocks);
        for _ in 0..blocks {
            let index = r.le(1, "a measurement block")? as u8;
            let spec = r.le(1, "a measurement block")?;
            if spec != 1 {
                return Err(bad(format!("measurement block {index} is not in the DMTF format")));
            }
            let size = r.le(2, "a measurement block")?;
            let mut m = Cursor { bytes: r.take(size, "a measurement block")?, at: 0 };
            let value_type = m.le(1, "a measurement value")? as u8;
            let value_size = m.le(2, "a measurement value")?;
            let value = m.take(value_size, "a measurement value")?.to_vec();
            if m.at != size {
                return Err(bad(format!("measurement block {index} has bytes past its value")));
            }
            measurements.push(Measurement { index, value_type, value });
        }
        if r.at != record.len() {
            return Err(bad("the measurement record has bytes past its blocks"));
        }
        let mut response_nonce = [0u8; 32];
        response_nonce.copy_from_slice(c.take(32, "the response nonce")?);
        let opaque_len = c.le(2, "the opaque data length")?;
        let mut o = Cursor { bytes: c.take(opaque_len, "the opaque data")?, at: 0 };
        let mut opaque = Vec::new();
        while o.at < opaque_len {
            let t = o.le(2, "an opaque data field")? as u16;
            let n = o.le(2, "an opaque data field")?;
            opaque.push((t, o.take(n, "an opaque data field")?.to_vec()));
        }
        let signed = bytes[..c.at].to_vec();
        let sig = c.take(SIGNATURE_LEN, "the signature")?;
        if c.at != bytes.len() {
            return Err(bad(format!("{} bytes follow the signature", bytes.len() - c.at)));
        }
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(sig);
        Ok(Report { nonce, slot, measurements, response_nonce, opaque, signed, signature })
    }

    /// An opaque data field's value.
    pub fn field(&self, t: u16) -> Option<&[u8]> {
        self.opaque.iter().find(|(ft, _)| *ft == t).map(|(_, v)| v.as_slice())
    }

    /// A NUL-terminated text field (driver version, SKUs, project).
    pub fn text(&self, t: u16) -> Option<String> {
        let v = self.field(t)?;
        let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
        std::str::from_utf8(&v[..end]).ok().map(str::to_string)
    }

    /// The VBIOS version as nvidia-smi prints it (e.g. `96.00.9f.00.01`).
    pub fn vbios_version(&self) -> Option<String> {
        let v = self.field(field::VBIOS_VERSION)?;
        if v.len() != 8 {
            return None;
        }
        Some(format!("{:02x}.{:02x}.{:02x}.{:02x}.{:02x}", v[3], v[2], v[1], v[0], v[4]))
    }
}

/// A certificate chain, leaf first, as PEM.
pub fn parse_chain(pem: &[u8]) -> Result<Vec<Certificate>, Error> {
    if pem.len() > MAX_CHAIN_BYTES {
        return Err(bad(format!("the certificate chain is over {MAX_CHAIN_BYTES} bytes")));
    }
    let text = std::str::from_utf8(pem).map_err(|_| bad("the certificate chain is not PEM text"))?;
    let mut certs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let end_marker = "-----END CERTIFICATE-----";
        let Some(end) = rest[start..].find(end_marker) else {
            return Err(bad("a certificate in the chain has no END line"));
        };
        let block = &rest[start..start + end + end_marker.len()];
        let cert = Certificate::from_pem(block.as_bytes())
            .map_err(|e| bad(format!("certificate {} of the chain: {e}", certs.len() + 1)))?;
        certs.push(cert);
        if certs.len() > MAX_CHAIN_CERTS {
            return Err(bad(format!("the chain has more than {MAX_CHAIN_CERTS} certificates")));
        }
        rest = &rest[start + end + end_marker.len()..];
    }
    if certs.is_empty() {
        return Err(bad("the certificate chain holds no PEM certificate"));
    }
    Ok(certs)
}

/// A certificate's public key: an uncompressed P-384 point (what ring checks signatures with).
pub(crate) fn p384_key(cert: &Certificate) -> Result<&[u8], Error> {
    const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
    const SECP384R1: &str = "1.3.132.0.34";
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let curve =
        spki.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok());
    if spki.algorithm.oid.to_string() != EC_PUBLIC_KEY || curve.map(|c| c.to_string()).as_deref() != Some(SECP384R1) {
        return Err(bad(format!("{:?}'s key is not a P-384 public key", subject(cert))));
    }
    let raw = spki.subject_public_key.as_bytes().ok_or_else(|| bad("a certificate's public key is not whole bytes"))?;
    if raw.len() != 97 || raw[0] != 0x04 {
        return Err(bad(format!("{:?}'s key is not an uncompressed P-384 point", subject(cert))));
    }
    Ok(raw)
}

const ECDSA_WITH_SHA384: &str = "1.2.840.10045.4.3.3";
const TCG_DICE_TCB_INFO: &str = "2.23.133.5.4.1";
const SHA384: &str = "2.16.840.1.101.3.4.2.2";

/// A certificate's subject, as text.
pub fn subject(cert: &Certificate) -> String {
    cert.tbs_certificate.subject.to_string()
}

/// The root to pin: one PEM certificate (`None`: NVIDIA's device identity root, shipped).
pub fn parse_root(pem: Option<&[u8]>) -> Result<Certificate, Error> {
    Certificate::from_pem(pem.unwrap_or(NVIDIA_DEVICE_ROOT_PEM.as_bytes()))
        .map_err(|e| bad(format!("the device root is not a PEM certificate: {e}")))
}

/// Extensions this verifier understands; a critical one it does not is a refusal.
const KNOWN_EXTENSIONS: &[&str] = &[
    "2.5.29.14",      // subject key identifier
    "2.5.29.15",      // key usage
    "2.5.29.17",      // subject alternative name
    "2.5.29.19",      // basic constraints
    "2.5.29.35",      // authority key identifier
    "2.5.29.37",      // extended key usage
    "2.23.133.5.4.1", // TCG DICE TcbInfo
    "2.23.133.5.4.4", // TCG DICE UEID
    "2.23.133.5.4.5", // TCG DICE MultiTcbInfo
];

/// What a certificate's position asks of it: an issuer is a CA allowed to sign certificates
/// (basic constraints CA, key usage keyCertSign, within its path length); the leaf may sign
/// (digitalSignature) and is no CA; no certificate has a critical extension this verifier does
/// not know. `position` is 0 for the leaf.
fn check_extensions(cert: &Certificate, position: usize, leaf: bool) -> Result<(), Error> {
    use x509_cert::der::Decode;
    use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
    let name = || format!("certificate {} ({:?})", position + 1, subject(cert));
    let mut ca: Option<BasicConstraints> = None;
    let mut usage: Option<KeyUsage> = None;
    for ext in cert.tbs_certificate.extensions.iter().flatten() {
        let oid = ext.extn_id.to_string();
        match oid.as_str() {
            "2.5.29.19" => {
                ca = Some(
                    BasicConstraints::from_der(ext.extn_value.as_bytes())
                        .map_err(|_| bad(format!("{}: malformed basic constraints", name())))?,
                )
            }
            "2.5.29.15" => {
                usage = Some(
                    KeyUsage::from_der(ext.extn_value.as_bytes())
                        .map_err(|_| bad(format!("{}: malformed key usage", name())))?,
                )
            }
            other if ext.critical && !KNOWN_EXTENSIONS.contains(&other) => {
                return Err(bad(format!("{}: an unknown critical extension {other}", name())));
            }
            _ => {}
        }
    }
    let is_ca = ca.as_ref().is_some_and(|c| c.ca);
    if leaf {
        if is_ca {
            return Err(bad(format!("{}: the leaf (the signing key's certificate) is a CA", name())));
        }
        if usage.as_ref().is_some_and(|u| !u.0.contains(KeyUsages::DigitalSignature)) {
            return Err(bad(format!("{}: its key may not sign (no digitalSignature)", name())));
        }
        return Ok(());
    }
    if !is_ca {
        return Err(bad(format!("{}: it issues a certificate but is not a CA (basic constraints)", name())));
    }
    if !usage.as_ref().is_some_and(|u| u.0.contains(KeyUsages::KeyCertSign)) {
        return Err(bad(format!("{}: it issues a certificate but may not (no keyCertSign)", name())));
    }
    // Issuers below it in the chain (the leaf excepted): at most its path length.
    if let Some(len) = ca.and_then(|c| c.path_len_constraint) {
        if position.saturating_sub(1) > usize::from(len) {
            return Err(bad(format!("{}: {} CAs below it, over its path length {len}", name(), position - 1)));
        }
    }
    Ok(())
}

/// Checks that each certificate is signed by the next (ECDSA P-384 / SHA-384), that the chain
/// ends in `root` (the same certificate), and that every certificate is valid at `at` (unix
/// seconds: the report's time, never the verifier's clock).
pub fn verify_chain(chain: &[Certificate], root: &Certificate, at: i64) -> Result<(), Error> {
    let last = chain.last().ok_or_else(|| bad("the certificate chain is empty"))?;
    let last_der = last.to_der().map_err(|e| bad(e.to_string()))?;
    let root_der = root.to_der().map_err(|e| bad(e.to_string()))?;
    if last_der != root_der {
        return Err(bad(format!("the chain ends in {:?}, not the pinned root {:?}", subject(last), subject(root))));
    }
    // The last certificate is the pinned root itself (compared byte for byte above): its
    // self-signature proves nothing more; its validity still counts.
    for (i, cert) in chain.iter().enumerate() {
        let issuer = chain.get(i + 1).unwrap_or(root);
        let is_root = i + 1 == chain.len();
        if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
            return Err(bad(format!(
                "certificate {} ({:?}) is not issued by the next one ({:?})",
                i + 1,
                subject(cert),
                subject(issuer)
            )));
        }
        if cert.signature_algorithm.oid.to_string() != ECDSA_WITH_SHA384 {
            return Err(bad(format!("certificate {} is not signed with ECDSA P-384 / SHA-384", i + 1)));
        }
        check_extensions(cert, i, i == 0)?;
        let tbs = cert.tbs_certificate.to_der().map_err(|e| bad(e.to_string()))?;
        let sig_der = cert.signature.as_bytes().ok_or_else(|| bad("a certificate's signature is not whole bytes"))?;
        if !is_root {
            UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, p384_key(issuer)?).verify(&tbs, sig_der).map_err(|_| {
                bad(format!("certificate {} ({:?}) is not signed by {:?}", i + 1, subject(cert), subject(issuer)))
            })?;
        }
        let v = &cert.tbs_certificate.validity;
        let (from, until) =
            (v.not_before.to_unix_duration().as_secs() as i64, v.not_after.to_unix_duration().as_secs() as i64);
        if at < from || at > until {
            return Err(bad(format!(
                "certificate {} ({:?}) is not valid at the report's time (unix {at}; valid {from}..{until})",
                i + 1,
                subject(cert)
            )));
        }
    }
    Ok(())
}

/// Chains already verified — keyed by the SHA-256 of every certificate's DER and the root's —
/// with the window in which all their certificates are valid: a verifier of many reports (one
/// GPU's, or a fleet sharing intermediates) checks each chain's signatures once. Bounded: past
/// 10,000 chains it starts over.
#[derive(Debug, Default)]
pub struct ChainCache(std::sync::Mutex<std::collections::HashMap<[u8; 32], (i64, i64)>>);

impl ChainCache {
    /// [`verify_chain`], remembered.
    pub fn verify(&self, chain: &[Certificate], root: &Certificate, at: i64) -> Result<(), Error> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for cert in chain.iter().chain(std::iter::once(root)) {
            let der = cert.to_der().map_err(|e| bad(e.to_string()))?;
            h.update((der.len() as u64).to_be_bytes());
            h.update(der);
        }
        let key: [u8; 32] = h.finalize().into();
        let known = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&key).copied();
        if let Some((from, until)) = known {
            if at >= from && at <= until {
                return Ok(());
            }
            // Outside the window: the full check says which certificate.
        }
        verify_chain(chain, root, at)?;
        let window = chain.iter().fold((i64::MIN, i64::MAX), |(from, until), c| {
            let v = &c.tbs_certificate.validity;
            (
                from.max(v.not_before.to_unix_duration().as_secs() as i64),
                until.min(v.not_after.to_unix_duration().as_secs() as i64),
            )
        });
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= 10_000 {
            map.clear();
        }
        map.insert(key, window);
        Ok(())
    }
}

/// The FWID digests (SHA-384) in a certificate's TCG DICE TcbInfo extension.
pub fn fwids(cert: &Certificate) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for ext in cert.tbs_certificate.extensions.iter().flatten() {
        if ext.extn_id.to_string() == TCG_DICE_TCB_INFO {
            collect_fwids(ext.extn_value.as_bytes(), 0, &mut out);
        }
    }
    out
}

/// The DER values one after another in `der` (as far as they decode).
fn der_items(der: &[u8]) -> Vec<x509_cert::der::asn1::AnyRef<'_>> {
    use x509_cert::der::{Reader, SliceReader};
    let mut out = Vec::new();
    let Ok(mut reader) = SliceReader::new(der) else { return out };
    while !reader.is_finished() && out.len() < 256 {
        match x509_cert::der::asn1::AnyRef::decode(&mut reader) {
            Ok(any) => out.push(any),
            Err(_) => break,
        }
    }
    out
}

/// Finds `SEQUENCE { OID sha384, OCTET STRING (48) }` anywhere in a DER value (bounded depth).
fn collect_fwids(der: &[u8], depth: u32, out: &mut Vec<Vec<u8>>) {
    use x509_cert::der::asn1::ObjectIdentifier;
    use x509_cert::der::{Tag, Tagged};
    if depth > 8 {
        return;
    }
    for value in der_items(der) {
        if !value.tag().is_constructed() {
            continue;
        }
        let inner = der_items(value.value());
        if let [oid, digest] = inner.as_slice() {
            let is_sha384 = oid.tag() == Tag::ObjectIdentifier
                && ObjectIdentifier::from_bytes(oid.value()).is_ok_and(|o| o.to_string() == SHA384);
            if is_sha384 && digest.tag() == Tag::OctetString && digest.value().len() == 48 {
                out.push(digest.value().to_vec());
            }
        }
        collect_fwids(value.value(), depth + 1, out);
    }
}

/// What a verified report says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    /// The leaf certificate's serial (upper-case hex): the identity the hardware vouches for.
    pub ueid: String,
    pub driver_version: Option<String>,
    pub vbios_version: Option<String>,
    pub chip_sku: Option<String>,
    pub project: Option<String>,
    pub project_sku: Option<String>,
    #[serde(serialize_with = "crate::encoding::serialize_hex")]
    pub fwid: Vec<u8>,
    pub measurements: Vec<Measurement>,
}

/// Checks the report's signature over request ‖ response with `leaf`'s key (ECDSA P-384,
/// SHA-384).
pub fn verify_signature(report: &Report, leaf: &Certificate) -> Result<(), Error> {
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, p384_key(leaf)?)
        .verify(&report.signed, &report.signature)
        .map_err(|_| bad("the report's signature does not verify under the leaf certificate's key"))
}

/// Verifies a report: the nonce is `expected_nonce`; the signature over request ‖ response is
/// the leaf's; the chain goes up to `root`, each certificate valid at `at`; the FWID the report
/// carries is the one in the leaf certificate.
pub fn verify(
    report: &Report,
    chain: &[Certificate],
    root: &Certificate,
    expected_nonce: &[u8; 32],
    at: i64,
) -> Result<Verified, Error> {
    verify_cached(report, chain, root, expected_nonce, at, None)
}

/// [`verify`], with the chain's verdict from (and into) `cache` when given.
pub fn verify_cached(
    report: &Report,
    chain: &[Certificate],
    root: &Certificate,
    expected_nonce: &[u8; 32],
    at: i64,
    cache: Option<&ChainCache>,
) -> Result<Verified, Error> {
    if !crate::auth::constant_time_eq(&report.nonce, expected_nonce) {
        return Err(bad(format!("the report's nonce {} is not the one expected", hex::encode(report.nonce))));
    }
    let leaf = chain.first().ok_or_else(|| bad("the certificate chain is empty"))?;
    verify_signature(report, leaf)?;
    match cache {
        Some(c) => c.verify(chain, root, at)?,
        None => verify_chain(chain, root, at)?,
    }
    let fwid = report.field(field::FWID).ok_or_else(|| bad("the report carries no FWID"))?.to_vec();
    let in_cert = fwids(leaf);
    if !in_cert.contains(&fwid) {
        return Err(bad("the report's FWID is not the one in the leaf certificate"));
    }
    Ok(Verified {
        ueid: hex::encode_upper(leaf.tbs_certificate.serial_number.as_bytes()),
        driver_version: report.text(field::DRIVER_VERSION),
        vbios_version: report.vbios_version(),
        chip_sku: report.text(field::CHIP_SKU),
        project: report.text(field::PROJECT),
        project_sku: report.text(field::PROJECT_SKU),
        fwid,
        measurements: report.measurements.clone(),
    })
}

/// The nonce an agent asks a GPU to sign, derived instead of chosen: SHA-256 of a label, the
/// log checkpoint the agent last verified (its whole signed note), the attesting host, the
/// record's counter and the GPU's UUID, each length-prefixed. A reader recomputes it from the
/// record, so a report over it was made after that checkpoint was signed, for this GPU of this
/// host's record — no round trip to the agent needed. The log binds the host to the agent key.
pub fn derived_nonce(checkpoint_note: &str, host: &str, counter: u64, gpu: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [
        b"chipledger gpu-evidence nonce v1".as_slice(),
        checkpoint_note.as_bytes(),
        host.as_bytes(),
        &counter.to_be_bytes(),
        gpu.as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}
