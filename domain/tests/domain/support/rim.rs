//! A test CA and a RIM signer: P-384 keys from aws-lc-rs, certificates hand-built with x509-cert's
//! types, RIMs signed as NVIDIA's are (enveloped XML-DSig, Canonical XML 1.1, SHA-384, ECDSA
//! P-384 r ‖ s).

use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair, ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
};
use chipledger_domain::encoding::b64_encode;
use chipledger_domain::rim::uri;
use sha2::{Digest, Sha384};
use x509_cert::der::asn1::{BitString, ObjectIdentifier, OctetString, UtcTime};
use x509_cert::der::{Any, Encode};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};
use xml_sec::c14n::{canonicalize, C14nAlgorithm};
use xml_sec::{Document, Node};

pub struct TestSigner {
    rng: SystemRandom,
    pub root: Certificate,
    leaf: Certificate,
    key: EcdsaKeyPair,
}

impl TestSigner {
    pub fn new() -> TestSigner {
        let rng = SystemRandom::new();
        let ca_key = keypair(&ECDSA_P384_SHA384_ASN1_SIGNING, &rng);
        let key = keypair(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng);
        let root = certificate("CN=Test RIM Root", ca_key.public_key().as_ref(), &ca_key, true, &rng);
        let leaf = certificate("CN=Test RIM Signer", key.public_key().as_ref(), &ca_key, false, &rng);
        TestSigner { rng, root, leaf, key }
    }

    /// Fills `tag`'s empty DigestValue and SignatureValue; KeyInfo holds the leaf, and the
    /// root too when `with_root`.
    pub fn sign(&self, tag: &str, with_root: bool) -> Vec<u8> {
        let mut certs = vec![&self.leaf];
        if with_root {
            certs.push(&self.root);
        }
        let key_info: String = certs
            .iter()
            .map(|c| format!("<ds:X509Certificate>{}\n</ds:X509Certificate>", b64_encode(&c.to_der().unwrap())))
            .collect();
        let unsigned =
            tag.replacen("<ds:X509Data></ds:X509Data>", &format!("<ds:X509Data>{key_info}</ds:X509Data>"), 1);
        let digest = {
            let doc = Document::parse(&unsigned).unwrap();
            let signature = element(&doc, "Signature");
            Sha384::digest(canonical(&doc, &|n| !n.ancestors().any(|a| a.id() == signature)))
        };
        let with_digest = unsigned.replacen(
            "<ds:DigestValue></ds:DigestValue>",
            &format!("<ds:DigestValue>{}</ds:DigestValue>", b64_encode(&digest)),
            1,
        );
        let signed_info = {
            let doc = Document::parse(&with_digest).unwrap();
            let signed_info = element(&doc, "SignedInfo");
            canonical(&doc, &|n| n.ancestors().any(|a| a.id() == signed_info))
        };
        let value = self.key.sign(&self.rng, &signed_info).unwrap();
        with_digest
            .replacen(
                "<ds:SignatureValue></ds:SignatureValue>",
                &format!("<ds:SignatureValue>{}</ds:SignatureValue>", b64_encode(value.as_ref())),
                1,
            )
            .into_bytes()
    }
}

/// A SWID tag as NVIDIA writes one, with an empty signature to fill: a `Resource` for every
/// index 0..64, active with its alternatives where `golden` names it.
pub fn swid_tag(version: &str, golden: &[(u8, Vec<Vec<u8>>)]) -> String {
    let mut resources = String::new();
    for index in 0u8..64 {
        let (active, alternatives) = match golden.iter().find(|(i, _)| *i == index) {
            Some((_, alternatives)) => ("True", alternatives.clone()),
            None => ("False", vec![vec![0; 48]]),
        };
        let hashes: String =
            alternatives.iter().enumerate().map(|(k, h)| format!(" ns2:Hash{k}=\"{}\"", hex::encode(h))).collect();
        resources.push_str(&format!(
            "        <ns0:Resource type=\"Measurement\" index=\"{index}\" active=\"{active}\" alternatives=\"{}\"{hashes} name=\"Measurement_{index}\" size=\"48\"/>\n",
            alternatives.len()
        ));
    }
    format!(
        "<SoftwareIdentity xmlns=\"{swid}\" xmlns:ns0=\"{swid}\" xmlns:ns2=\"{hash}\" corpus=\"false\" name=\"GH100\" patch=\"false\" supplemental=\"false\" tagId=\"test-{version}\" version=\"1.0\" tagVersion=\"0\">\n\
         \x20   <ns0:Entity name=\"Test\" role=\"softwareCreator tagCreator\"/>\n\
         \x20   <ns0:Meta colloquialVersion=\"{version}\" edition=\"GPU\" product=\"GH100\" revision=\"r1\"/>\n\
         \x20   <ns0:Payload>\n{resources}    </ns0:Payload>\n\
         <ds:Signature xmlns:ds=\"{dsig}\"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"{c14n}\"/><ds:SignatureMethod Algorithm=\"{ecdsa}\"/><ds:Reference URI=\"\"><ds:Transforms><ds:Transform Algorithm=\"{enveloped}\"/><ds:Transform Algorithm=\"{c14n}\"/></ds:Transforms><ds:DigestMethod Algorithm=\"{sha384}\"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data></ds:X509Data></ds:KeyInfo></ds:Signature></SoftwareIdentity>\n",
        swid = uri::SWID,
        hash = uri::HASH,
        dsig = uri::DSIG,
        c14n = uri::C14N11,
        ecdsa = uri::ECDSA_SHA384,
        enveloped = uri::ENVELOPED,
        sha384 = uri::SHA384,
    )
}

fn keypair(alg: &'static EcdsaSigningAlgorithm, rng: &SystemRandom) -> EcdsaKeyPair {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, rng).unwrap();
    EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap()
}

/// A certificate for `public_key` issued by the test root ("CN=Test RIM Root", key `ca_key`),
/// valid 2020 to 2030: a CA (keyCertSign) or a signer (digitalSignature).
fn certificate(subject: &str, public_key: &[u8], ca_key: &EcdsaKeyPair, ca: bool, rng: &SystemRandom) -> Certificate {
    let ecdsa_sha384 =
        AlgorithmIdentifierOwned { oid: ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3"), parameters: None };
    let time = |s| Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(s)).unwrap());
    let usage = if ca { KeyUsages::KeyCertSign | KeyUsages::CRLSign } else { KeyUsages::DigitalSignature.into() };
    let extension = |oid, der: Vec<u8>| Extension {
        extn_id: ObjectIdentifier::new_unwrap(oid),
        critical: true,
        extn_value: OctetString::new(der).unwrap(),
    };
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&[0x01, if ca { 1 } else { 2 }]).unwrap(),
        signature: ecdsa_sha384.clone(),
        issuer: "CN=Test RIM Root".parse::<Name>().unwrap(),
        validity: Validity { not_before: time(1_600_000_000), not_after: time(1_900_000_000) },
        subject: subject.parse::<Name>().unwrap(),
        subject_public_key_info: SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid: ObjectIdentifier::new_unwrap("1.2.840.10045.2.1"),
                parameters: Some(Any::encode_from(&ObjectIdentifier::new_unwrap("1.3.132.0.34")).unwrap()),
            },
            subject_public_key: BitString::from_bytes(public_key).unwrap(),
        },
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(vec![
            extension("2.5.29.19", BasicConstraints { ca, path_len_constraint: None }.to_der().unwrap()),
            extension("2.5.29.15", KeyUsage(usage).to_der().unwrap()),
        ]),
    };
    let signature = ca_key.sign(rng, &tbs.to_der().unwrap()).unwrap();
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: ecdsa_sha384,
        signature: BitString::from_bytes(signature.as_ref()).unwrap(),
    }
}

fn element(doc: &Document, name: &str) -> xml_sec::NodeId {
    doc.descendants().find(|n| n.has_tag_name((uri::DSIG, name))).unwrap().id()
}

fn canonical(doc: &Document, keep: &dyn Fn(Node) -> bool) -> Vec<u8> {
    let mut out = Vec::new();
    canonicalize(doc, Some(keep), &C14nAlgorithm::from_uri(uri::C14N11).unwrap(), &mut out).unwrap();
    out
}
