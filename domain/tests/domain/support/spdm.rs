//! A test GPU: a fresh P-384 root CA → intermediate CA → attestation key, and SPDM 1.1
//! GET_MEASUREMENTS evidence signed by that key in the layout NVIDIA's GPUs write (see
//! `chipledger_domain::evidence`) — so a test can choose the nonce, which NVIDIA's real sample
//! fixes, and every field. Not a model of a GPU: it writes only the opaque fields the verifier
//! reads, and its keys are random.
//!
//! Encodings, as NVIDIA's sample (`tests/data/nvidia-attestation/hopperAttestationReport.txt`)
//! has them: request `11 e0 01 ff` (SPDM 1.1, GET_MEASUREMENTS, signature requested, all
//! measurements), nonce, slot 0; response `11 60 00 00`; each measurement a DMTF block of value
//! type 0x01 (a digest of mutable firmware); text fields NUL-terminated (the chip SKU NUL-padded
//! to 9 bytes); the VBIOS version `aa.bb.cc.dd.ee` as the 8 bytes `dd cc bb aa ee 00 00 00`.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair, ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
};
use chipledger_domain::evidence::{decode_report, field, Report};
use sha2::{Digest, Sha256, Sha384};
use x509_cert::der::asn1::{Any, BitString, ObjectIdentifier, OctetString, UtcTime};
use x509_cert::der::pem::LineEnding;
use x509_cert::der::{Encode, EncodePem, Tag, TagNumber};
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

/// A GPU whose attestation key chains up to a test root.
pub struct TestDevice {
    /// The root to pin.
    pub root: Certificate,
    /// Leaf, intermediate, root, as PEM.
    pub chain_pem: Vec<u8>,
    /// The leaf's serial in upper-case hex: the `ueid` a verified report names.
    pub ueid: String,
    /// The FWID the leaf's TCG DICE TcbInfo carries (SHA-384 of the serial).
    pub fwid: [u8; 48],
    attestation_key: EcdsaKeyPair,
}

/// What a report says, besides its nonce and FWID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportFields {
    pub driver_version: String,
    /// Five dot-separated hex bytes as nvidia-smi prints them (`96.00.9F.00.01`), either case;
    /// a verified report gives it back in lower case.
    pub vbios_version: String,
    pub project: String,
    pub project_sku: String,
    pub chip_sku: String,
    /// (index, value): 48-byte SHA-384 digests on NVIDIA's GPUs.
    pub measurements: Vec<(u8, Vec<u8>)>,
}

impl TestDevice {
    /// A fresh P-384 root CA → intermediate CA → leaf (the GPU attestation key) with the DICE
    /// TcbInfo FWID extension, all valid 2020..2040; `serial` (big-endian, positive, no leading
    /// zero byte) becomes the leaf's serial.
    pub fn new(serial: &[u8]) -> TestDevice {
        assert!(
            serial.first().is_some_and(|b| *b != 0 && *b < 0x80),
            "a serial is a positive DER integer: first byte in 1..=0x7f"
        );
        let fwid: [u8; 48] = Sha384::digest(serial).into();
        let root_key = key(&ECDSA_P384_SHA384_ASN1_SIGNING);
        let intermediate_key = key(&ECDSA_P384_SHA384_ASN1_SIGNING);
        let attestation_key = key(&ECDSA_P384_SHA384_FIXED_SIGNING);
        let root_name = name("CN=chipledger test device root CA,O=chipledger tests");
        let intermediate_name = name("CN=chipledger test device intermediate CA,O=chipledger tests");
        let leaf_name = name("CN=chipledger test GPU attestation key,O=chipledger tests");

        let root = certificate(Cert {
            serial: &[1],
            subject: &root_name,
            public_key: root_key.public_key().as_ref(),
            issuer: &root_name,
            issuer_key: &root_key,
            extensions: ca_extensions(None),
        });
        let intermediate = certificate(Cert {
            serial: &[2],
            subject: &intermediate_name,
            public_key: intermediate_key.public_key().as_ref(),
            issuer: &root_name,
            issuer_key: &root_key,
            extensions: ca_extensions(Some(0)),
        });
        let leaf = certificate(Cert {
            serial,
            subject: &leaf_name,
            public_key: attestation_key.public_key().as_ref(),
            issuer: &intermediate_name,
            issuer_key: &intermediate_key,
            extensions: vec![
                extension(BASIC_CONSTRAINTS, true, &BasicConstraints { ca: false, path_len_constraint: None }),
                extension(KEY_USAGE, true, &KeyUsage(KeyUsages::DigitalSignature.into())),
                extension(TCG_DICE_TCB_INFO, false, &tcb_info(&fwid)),
            ],
        });
        let chain_pem = [&leaf, &intermediate, &root]
            .iter()
            .map(|c| c.to_pem(LineEnding::LF).expect("a certificate encodes"))
            .collect::<String>()
            .into_bytes();
        TestDevice { root, chain_pem, ueid: hex::encode_upper(serial), fwid, attestation_key }
    }

    /// An SPDM GET_MEASUREMENTS request ‖ response over `nonce` carrying `fields` and the leaf's
    /// FWID, signed by the leaf: raw bytes that `Report::parse` accepts.
    pub fn report(&self, nonce: [u8; 32], fields: &ReportFields) -> Vec<u8> {
        self.report_claiming(nonce, fields, &self.fwid)
    }

    /// [`TestDevice::report`], but the report claims `fwid`: firmware the leaf does not vouch for.
    pub fn report_claiming(&self, nonce: [u8; 32], fields: &ReportFields, fwid: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        // Request: SPDM 1.1, GET_MEASUREMENTS, signature requested, all measurements, nonce, slot 0.
        out.extend([0x11, 0xE0, 0x01, 0xFF]);
        out.extend(nonce);
        out.push(0);
        // Response: SPDM 1.1, MEASUREMENTS, no count (all were asked for), slot 0.
        out.extend([0x11, 0x60, 0x00, 0x00]);
        let mut record = Vec::new();
        for (index, value) in &fields.measurements {
            record.extend([*index, DMTF]);
            record.extend(le16(3 + value.len()));
            record.push(MUTABLE_FIRMWARE_DIGEST);
            record.extend(le16(value.len()));
            record.extend(value);
        }
        out.push(u8::try_from(fields.measurements.len()).expect("at most 255 measurement blocks"));
        let record_len = u32::try_from(record.len()).ok().filter(|n| *n < 1 << 24).expect("a record under 16 MiB");
        out.extend(&record_len.to_le_bytes()[..3]);
        out.extend(record);
        // The responder's nonce: any 32 bytes; derived from the request's to stay deterministic.
        out.extend(Sha256::digest(nonce));
        let opaque_fields = [
            (field::VBIOS_VERSION, vbios_version(&fields.vbios_version)),
            (field::CHIP_SKU, text(&fields.chip_sku, 9)),
            (field::PROJECT, text(&fields.project, 0)),
            (field::PROJECT_SKU, text(&fields.project_sku, 0)),
            (field::DRIVER_VERSION, text(&fields.driver_version, 0)),
            (field::FWID, fwid.to_vec()),
        ];
        let mut opaque = Vec::new();
        for (t, value) in opaque_fields {
            opaque.extend(t.to_le_bytes());
            opaque.extend(le16(value.len()));
            opaque.extend(value);
        }
        out.extend(le16(opaque.len()));
        out.extend(opaque);
        let signature = self.attestation_key.sign(&SystemRandom::new(), &out).expect("ECDSA signing");
        out.extend(signature.as_ref());
        out
    }
}

impl ReportFields {
    /// The values of NVIDIA's real sample (driver 550.90.07, VBIOS 96.00.9f.00.01, its 64
    /// measurements…), read from it.
    pub fn like_the_sample() -> ReportFields {
        let path = format!("{}/tests/data/nvidia-attestation/hopperAttestationReport.txt", env!("CARGO_MANIFEST_DIR"));
        let bytes = decode_report(&std::fs::read(path).expect("NVIDIA's sample report")).unwrap();
        let sample = Report::parse(&bytes).unwrap();
        let text = |t| sample.text(t).expect("the sample carries the field");
        ReportFields {
            driver_version: text(field::DRIVER_VERSION),
            vbios_version: sample.vbios_version().expect("the sample carries a VBIOS version"),
            project: text(field::PROJECT),
            project_sku: text(field::PROJECT_SKU),
            chip_sku: text(field::CHIP_SKU),
            measurements: sample.measurements.iter().map(|m| (m.index, m.value.clone())).collect(),
        }
    }
}

/// A measurement block in DMTF's format (SPDM's measurement specification 1).
const DMTF: u8 = 1;
/// DMTF measurement value type: bit 7 clear = a digest; 1 = mutable firmware. All the sample's.
const MUTABLE_FIRMWARE_DIGEST: u8 = 0x01;

const BASIC_CONSTRAINTS: &str = "2.5.29.19";
const KEY_USAGE: &str = "2.5.29.15";
const SUBJECT_KEY_IDENTIFIER: &str = "2.5.29.14";
const AUTHORITY_KEY_IDENTIFIER: &str = "2.5.29.35";
const TCG_DICE_TCB_INFO: &str = "2.23.133.5.4.1";
const SHA384: &str = "2.16.840.1.101.3.4.2.2";
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const SECP384R1: &str = "1.3.132.0.34";
const ECDSA_WITH_SHA384: &str = "1.2.840.10045.4.3.3";
/// 2020-01-01 and 2040-01-01, unix seconds.
const NOT_BEFORE: u64 = 1_577_836_800;
const NOT_AFTER: u64 = 2_208_988_800;

fn le16(n: usize) -> [u8; 2] {
    u16::try_from(n).expect("an SPDM length fits 16 bits").to_le_bytes()
}

/// Text as NVIDIA writes it: NUL-terminated, NUL-padded to at least `width` bytes.
fn text(s: &str, width: usize) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v.resize(v.len().max(width), 0);
    v
}

/// `aa.bb.cc.dd.ee` → `dd cc bb aa ee 00 00 00`: the inverse of `Report::vbios_version`.
fn vbios_version(s: &str) -> Vec<u8> {
    let bytes: Vec<u8> =
        s.split('.').map(|p| u8::from_str_radix(p, 16).expect("a VBIOS version is hex bytes")).collect();
    let [a, b, c, d, e] = bytes[..] else { panic!("a VBIOS version is five dot-separated bytes, not {s:?}") };
    vec![d, c, b, a, e, 0, 0, 0]
}

fn key(alg: &'static EcdsaSigningAlgorithm) -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("a P-384 key");
    EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).expect("the key just made")
}

fn name(rfc4514: &str) -> Name {
    rfc4514.parse().expect("a distinguished name")
}

fn oid(dotted: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(dotted)
}

fn extension(id: &str, critical: bool, value: &impl Encode) -> Extension {
    let der = value.to_der().expect("an extension encodes");
    Extension { extn_id: oid(id), critical, extn_value: OctetString::new(der).expect("an OCTET STRING") }
}

fn ca_extensions(path_len: Option<u8>) -> Vec<Extension> {
    vec![
        extension(BASIC_CONSTRAINTS, true, &BasicConstraints { ca: true, path_len_constraint: path_len }),
        extension(KEY_USAGE, true, &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign)),
    ]
}

/// TCG DICE `TcbInfo ::= SEQUENCE { …, fwids [6] IMPLICIT SEQUENCE OF SEQUENCE { hashAlg OID,
/// digest OCTET STRING } }` with one SHA-384 FWID.
fn tcb_info(fwid: &[u8; 48]) -> Any {
    let any = |tag, value: Vec<u8>| Any::new(tag, value).expect("a DER value");
    let digest = OctetString::new(fwid.to_vec()).expect("an OCTET STRING");
    let one_fwid = any(Tag::Sequence, [oid(SHA384).to_der().unwrap(), digest.to_der().unwrap()].concat());
    let fwids = any(Tag::ContextSpecific { constructed: true, number: TagNumber::N6 }, one_fwid.to_der().unwrap());
    any(Tag::Sequence, fwids.to_der().unwrap())
}

/// What a certificate says and who signs it.
struct Cert<'a> {
    serial: &'a [u8],
    subject: &'a Name,
    /// An uncompressed P-384 point.
    public_key: &'a [u8],
    issuer: &'a Name,
    /// Signs with `ECDSA_P384_SHA384_ASN1_SIGNING`: a certificate's signature is DER.
    issuer_key: &'a EcdsaKeyPair,
    extensions: Vec<Extension>,
}

/// A certificate with `c`'s extensions and key identifiers (which strict X.509 verifiers, such as
/// `openssl verify -x509_strict`, ask for).
fn certificate(c: Cert<'_>) -> Certificate {
    let mut extensions = c.extensions;
    extensions.push(extension(SUBJECT_KEY_IDENTIFIER, false, &SubjectKeyIdentifier(key_id(c.public_key))));
    let authority = AuthorityKeyIdentifier {
        key_identifier: Some(key_id(c.issuer_key.public_key().as_ref())),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    };
    extensions.push(extension(AUTHORITY_KEY_IDENTIFIER, false, &authority));
    let ecdsa_with_sha384 = AlgorithmIdentifierOwned { oid: oid(ECDSA_WITH_SHA384), parameters: None };
    let time = |secs| Time::UtcTime(UtcTime::from_unix_duration(std::time::Duration::from_secs(secs)).unwrap());
    let tbs_certificate = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(c.serial).expect("a serial of at most 20 bytes"),
        signature: ecdsa_with_sha384.clone(),
        issuer: c.issuer.clone(),
        validity: Validity { not_before: time(NOT_BEFORE), not_after: time(NOT_AFTER) },
        subject: c.subject.clone(),
        subject_public_key_info: SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid: oid(EC_PUBLIC_KEY),
                parameters: Some(Any::encode_from(&oid(SECP384R1)).unwrap()),
            },
            subject_public_key: BitString::from_bytes(c.public_key).unwrap(),
        },
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let tbs = tbs_certificate.to_der().expect("a TBSCertificate encodes");
    let signature = c.issuer_key.sign(&SystemRandom::new(), &tbs).expect("ECDSA signing");
    Certificate {
        tbs_certificate,
        signature_algorithm: ecdsa_with_sha384,
        signature: BitString::from_bytes(signature.as_ref()).unwrap(),
    }
}

/// A key identifier: the first 20 bytes of the SHA-256 of the public key (RFC 7093, method 1).
fn key_id(public_key: &[u8]) -> OctetString {
    OctetString::new(&Sha256::digest(public_key)[..20]).expect("an OCTET STRING")
}
