//! NVIDIA reference integrity manifests (RIMs), verified offline: the golden measurements NVIDIA
//! signs for each driver and VBIOS release, and how a GPU's reported measurements compare with
//! them. A RIM is an ISO/IEC 19770-2 SWID tag (`SoftwareIdentity`: `Meta` names the product and
//! version, `Payload` holds one `Resource` per measurement index — active or not, with its
//! alternatives `Hash0`…`HashN-1`, SHA-384 each) signed with XML-DSig, its signing chain ending in
//! a pinned NVIDIA RIM root (shipped: `data/nvidia/rim-root.pem`, nvtrust's
//! `verifier_RIM_root.pem`).
//!
//! The one XML-DSig profile accepted — NVIDIA's; anything else is refused, never ignored: one
//! `ds:Signature`, a child of the tag (enveloped), holding exactly SignedInfo, SignatureValue,
//! KeyInfo. SignedInfo = CanonicalizationMethod Canonical XML 1.1, SignatureMethod ECDSA P-384 /
//! SHA-384, one Reference with URI="" whose transforms are enveloped-signature then Canonical XML
//! 1.1 and whose digest is SHA-384. Then:
//! - digest = SHA-384(C14N11(the document less the Signature element));
//! - SignatureValue = r ‖ s (96 bytes), ECDSA P-384 over SHA-384(C14N11(SignedInfo));
//! - KeyInfo/X509Data = the signing chain, leaf first, the root itself optional.
//!
//! The canonical form is xml-sec's (the sample RIMs' digests prove it NVIDIA's); the profile, the
//! checks (ring) and the chain (`evidence::verify_chain`) are ours. No DTD, no entities.
//!
//! What it does not do: fetch RIMs (NVIDIA serves them online by id), ask whether a certificate is
//! revoked (OCSP is online), or choose the RIMs for a GPU — the caller passes the driver's and the
//! VBIOS's.

use std::collections::{BTreeMap, BTreeSet};

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};
use sha2::{Digest, Sha384};
use x509_cert::der::{Decode, DecodePem, Encode};
use x509_cert::Certificate;
use xml_sec::c14n::{canonicalize, C14nAlgorithm};
use xml_sec::{Document, Node};

use crate::evidence::{self, ChainCache, Measurement};
use crate::Error;

/// NVIDIA's RIM root ("NVIDIA CoRIM signing Root CA"), the root RIM signing chains end in;
/// shipped with the binary (from NVIDIA's nvtrust, `certs/verifier_RIM_root.pem`).
pub const NVIDIA_RIM_ROOT_PEM: &str = include_str!("../data/nvidia/rim-root.pem");

/// The most bytes a RIM may have (NVIDIA's are ~20 KiB); larger is refused before parsing.
pub const MAX_RIM_BYTES: usize = 256 * 1024;

/// A golden measurement: SHA-384.
pub const DIGEST_LEN: usize = 48;

/// Namespaces and algorithm identifiers of the profile, exactly as NVIDIA writes them.
pub mod uri {
    pub const SWID: &str = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd";
    pub const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
    /// The namespace of a `Resource`'s `Hash0`…`HashN-1` attributes.
    pub const HASH: &str = "http://www.w3.org/2001/04/xmlenc#sha384";
    pub const C14N11: &str = "http://www.w3.org/2006/12/xml-c14n11";
    pub const ECDSA_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384";
    pub const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
    pub const SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#sha384";
}

/// A verified RIM: what its signed tag says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rim {
    /// The tag's `tagId` (NVIDIA's id for fetching it).
    pub tag_id: String,
    /// `Meta` `product` (e.g. `GH100`).
    pub product: String,
    /// `Meta` `colloquialVersion`: the driver version (`545.00`) or the VBIOS version
    /// (`96.00.5E.00.01`) the golden measurements are for.
    pub version: String,
    /// The signing (leaf) certificate's subject.
    pub signer: String,
    /// Every `Resource`, by index.
    pub golden: Vec<Golden>,
}

/// One measurement index's golden values.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Golden {
    pub index: u8,
    /// Whether the RIM speaks for this index (an inactive entry holds placeholders).
    pub active: bool,
    /// `Hash0`…`HashN-1`: any one of them is a match.
    #[serde(serialize_with = "crate::encoding::serialize_hex_list")]
    pub alternatives: Vec<Vec<u8>>,
}

impl Rim {
    /// The indexes this RIM speaks for.
    pub fn active(&self) -> impl Iterator<Item = &Golden> {
        self.golden.iter().filter(|g| g.active)
    }
}

/// What became of one measurement index (the RIMs' numbering, from 0; the report's SPDM block is
/// `index + 1`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Outcome {
    /// The report's value is one of the RIM's alternatives.
    Matches,
    /// The report's value is none of them.
    Differs {
        #[serde(serialize_with = "crate::encoding::serialize_hex")]
        reported: Vec<u8>,
        #[serde(serialize_with = "crate::encoding::serialize_hex_list")]
        expected: Vec<Vec<u8>>,
    },
    /// A RIM expects the index; the report does not carry it.
    MissingFromReport,
    /// The report carries the index; no RIM speaks for it (not a failure).
    NotCovered,
}

/// One index's outcome (`index` is the RIMs', the report's SPDM block `index + 1`), and the RIM
/// that judged it (`"driver"` or `"vbios"`; none when not
/// covered).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IndexResult {
    pub index: u8,
    pub rim: Option<&'static str>,
    pub outcome: Outcome,
}

/// A report's measurements held against the driver and VBIOS RIMs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Comparison {
    /// Every index the report carries or an active golden entry names, sorted.
    pub results: Vec<IndexResult>,
    /// Where a RIM is for another version than the report's (both named).
    pub version_findings: Vec<String>,
}

impl Comparison {
    /// Every active golden index matches and every RIM is for the report's version. With no RIM
    /// given nothing is expected: a caller that requires RIMs checks that it passed them.
    pub fn all_match(&self) -> bool {
        self.version_findings.is_empty()
            && self.results.iter().all(|r| r.rim.is_none() || r.outcome == Outcome::Matches)
    }
}

/// The RIM root to pin: one PEM certificate (`None`: NVIDIA's RIM root, shipped).
pub fn parse_rim_root(pem: Option<&[u8]>) -> Result<Certificate, Error> {
    Certificate::from_pem(pem.unwrap_or(NVIDIA_RIM_ROOT_PEM.as_bytes()))
        .map_err(|e| bad(format!("the RIM root is not a PEM certificate: {e}")))
}

/// Verifies a RIM: the profile, its digest, its signature with the leaf certificate's key, and
/// the chain up to `root` with every certificate valid at `at` (unix seconds: the time of the
/// report the RIM is held against, never the verifier's clock); then reads the tag.
pub fn verify_rim(xml: &[u8], root: &Certificate, at: i64) -> Result<Rim, Error> {
    verify_rim_cached(xml, root, at, None)
}

/// [`verify_rim`], with the chain's verdict from (and into) `cache` when given.
pub fn verify_rim_cached(xml: &[u8], root: &Certificate, at: i64, cache: Option<&ChainCache>) -> Result<Rim, Error> {
    if xml.len() > MAX_RIM_BYTES {
        return Err(bad(format!("the RIM is {} bytes, over {MAX_RIM_BYTES}", xml.len())));
    }
    let text = std::str::from_utf8(xml).map_err(|e| bad(format!("the RIM is not UTF-8 text: {e}")))?;
    if text.contains("<!DOCTYPE") {
        return Err(bad("the RIM has a DOCTYPE (refused: no DTDs, no entities)"));
    }
    let doc = Document::parse(text).map_err(|e| bad(format!("the RIM is not well-formed XML: {e}")))?;
    let tag = doc.root_element();
    if !tag.has_tag_name((uri::SWID, "SoftwareIdentity")) {
        return Err(bad(format!("the RIM's root element is {}, not a SWID SoftwareIdentity", name_of(tag))));
    }
    let signature = Signature::read(&doc, tag)?;

    let signature_id = signature.element.id();
    let content = canonical(&doc, &|n| !n.ancestors().any(|a| a.id() == signature_id))?;
    if Sha384::digest(&content).as_slice() != signature.digest.as_slice() {
        return Err(bad("the RIM's digest does not match its content"));
    }
    let signed_info_id = signature.signed_info.id();
    let signed_info = canonical(&doc, &|n| n.ancestors().any(|a| a.id() == signed_info_id))?;
    let leaf = signature.chain.first().ok_or_else(|| bad("the RIM carries no signing certificate"))?;
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, evidence::p384_key(leaf)?)
        .verify(&signed_info, &signature.value)
        .map_err(|_| bad("the RIM's signature does not verify with its signing certificate"))?;
    let signer = evidence::subject(leaf);

    let chain = up_to_root(signature.chain, root)?;
    match cache {
        Some(c) => c.verify(&chain, root, at),
        None => evidence::verify_chain(&chain, root, at),
    }
    .map_err(|e| match e {
        Error::Evidence { reason } => bad(format!("the RIM's signing chain: {reason}")),
        other => other,
    })?;
    read_tag(tag, signer)
}

/// Holds `measurements` (a report's) against the driver and VBIOS RIMs. Indexes are the RIMs'
/// (from 0): SPDM numbers a report's measurement blocks from 1, and block `i` is RIM index `i - 1`
/// (as NVIDIA's verifier pairs them). An index active in both RIMs is an error, as is an index
/// the report carries twice; a reported value equal to any alternative of its active golden entry
/// matches; an active golden index the report lacks is missing; a reported index no RIM speaks for
/// is not covered (not a failure). Each RIM's version must be the report's (`driver_version`,
/// `vbios_version`; compared without case).
pub fn compare(
    measurements: &[Measurement],
    driver_version: Option<&str>,
    vbios_version: Option<&str>,
    driver: Option<&Rim>,
    vbios: Option<&Rim>,
) -> Result<Comparison, Error> {
    let mut expected: BTreeMap<u8, (&'static str, &Golden)> = BTreeMap::new();
    for (kind, rim) in [("driver", driver), ("vbios", vbios)] {
        for golden in rim.into_iter().flat_map(Rim::active) {
            if let Some((other, _)) = expected.insert(golden.index, (kind, golden)) {
                return Err(bad(if other == kind {
                    format!("measurement {}: the {} RIM lists it twice", golden.index, label(kind))
                } else {
                    format!(
                        "measurement {}: active in both the {} RIM and the {} RIM",
                        golden.index,
                        label(other),
                        label(kind)
                    )
                }));
            }
        }
    }
    let mut reported: BTreeMap<u8, &[u8]> = BTreeMap::new();
    for m in measurements {
        let index = m.index.checked_sub(1).ok_or_else(|| {
            bad("the report has a measurement block 0: SPDM numbers blocks from 1, so no RIM index matches it")
        })?;
        if reported.insert(index, &m.value).is_some() {
            return Err(bad(format!("measurement {index}: the report carries it twice (block {})", m.index)));
        }
    }
    let indexes: BTreeSet<u8> = expected.keys().chain(reported.keys()).copied().collect();
    let results = indexes
        .into_iter()
        .map(|index| {
            let value = reported.get(&index);
            let Some((kind, golden)) = expected.get(&index) else {
                return IndexResult { index, rim: None, outcome: Outcome::NotCovered };
            };
            let outcome = match value {
                None => Outcome::MissingFromReport,
                Some(v) if golden.alternatives.iter().any(|a| a.as_slice() == *v) => Outcome::Matches,
                Some(v) => Outcome::Differs { reported: v.to_vec(), expected: golden.alternatives.clone() },
            };
            IndexResult { index, rim: Some(kind), outcome }
        })
        .collect();
    let mut version_findings = Vec::new();
    for (kind, rim, version) in [("driver", driver, driver_version), ("vbios", vbios, vbios_version)] {
        let Some(rim) = rim else { continue };
        let what = label(kind);
        match version {
            None => version_findings
                .push(format!("the report names no {what} version; the {what} RIM is for {what} {}", rim.version)),
            Some(v) if !v.eq_ignore_ascii_case(&rim.version) => version_findings
                .push(format!("the {what} RIM is for {what} {}, the report's {what} is {v}", rim.version)),
            Some(_) => {}
        }
    }
    Ok(Comparison { results, version_findings })
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Evidence { reason: reason.into() }
}

fn label(kind: &str) -> &'static str {
    if kind == "vbios" {
        "VBIOS"
    } else {
        "driver"
    }
}

/// The signature element, taken apart as the profile allows and nothing else.
struct Signature<'a, 'input> {
    element: Node<'a, 'input>,
    signed_info: Node<'a, 'input>,
    digest: Vec<u8>,
    value: Vec<u8>,
    chain: Vec<Certificate>,
}

impl<'a, 'input> Signature<'a, 'input> {
    fn read(doc: &'a Document<'input>, tag: Node<'a, 'input>) -> Result<Self, Error> {
        let all: Vec<Node> = doc.descendants().filter(|n| n.has_tag_name((uri::DSIG, "Signature"))).collect();
        let [element] = all.as_slice() else {
            return Err(bad(format!("the RIM has {} Signature elements, not one", all.len())));
        };
        let element = *element;
        if element.parent().map(|p| p.id()) != Some(tag.id()) {
            return Err(bad("the RIM's Signature is not a child of its SoftwareIdentity (not enveloped)"));
        }
        let [signed_info, value, key_info] =
            children(element, "Signature", ["SignedInfo", "SignatureValue", "KeyInfo"])?;
        let [c14n, method, reference] =
            children(signed_info, "SignedInfo", ["CanonicalizationMethod", "SignatureMethod", "Reference"])?;
        algorithm(c14n, "CanonicalizationMethod", uri::C14N11)?;
        algorithm(method, "SignatureMethod", uri::ECDSA_SHA384)?;
        if reference.attribute("URI") != Some("") {
            return Err(bad(format!(
                "the RIM's Reference URI is {:?}; only \"\" (the whole document) is accepted",
                reference.attribute("URI")
            )));
        }
        let [transforms, digest_method, digest] =
            children(reference, "Reference", ["Transforms", "DigestMethod", "DigestValue"])?;
        let [enveloped, c14n] = children(transforms, "Transforms", ["Transform", "Transform"])?;
        algorithm(enveloped, "first Transform", uri::ENVELOPED)?;
        algorithm(c14n, "second Transform", uri::C14N11)?;
        algorithm(digest_method, "DigestMethod", uri::SHA384)?;
        let digest = base64(digest, "DigestValue", DIGEST_LEN)?;
        let value = base64(value, "SignatureValue", evidence::SIGNATURE_LEN)?;
        let [x509_data] = children(key_info, "KeyInfo", ["X509Data"])?;
        let certs = elements(x509_data, "X509Data")?;
        if certs.is_empty() || certs.len() > evidence::MAX_CHAIN_CERTS {
            return Err(bad(format!(
                "the RIM's X509Data holds {} certificates, not 1 to {}",
                certs.len(),
                evidence::MAX_CHAIN_CERTS
            )));
        }
        let mut chain = Vec::with_capacity(certs.len());
        for (i, cert) in certs.into_iter().enumerate() {
            if !cert.has_tag_name((uri::DSIG, "X509Certificate")) {
                return Err(bad(format!("the RIM's X509Data holds {}, not only X509Certificate", name_of(cert))));
            }
            let der = base64(cert, "X509Certificate", 0)?;
            chain.push(Certificate::from_der(&der).map_err(|e| bad(format!("the RIM's certificate {}: {e}", i + 1)))?);
        }
        Ok(Signature { element, signed_info, digest, value, chain })
    }
}

/// The canonical form (Canonical XML 1.1, no comments) of the nodes `keep` selects.
fn canonical(doc: &Document, keep: &dyn Fn(Node) -> bool) -> Result<Vec<u8>, Error> {
    // Invariant: xml-sec knows the Canonical XML 1.1 URI (its own constant table).
    let algo = C14nAlgorithm::from_uri(uri::C14N11).ok_or_else(|| bad("Canonical XML 1.1 is unavailable"))?;
    let mut out = Vec::new();
    canonicalize(doc, Some(keep), &algo, &mut out).map_err(|e| bad(format!("canonicalizing the RIM: {e}")))?;
    Ok(out)
}

/// The chain as `verify_chain` wants it: ending in `root` itself. KeyInfo may leave the root out
/// when its last certificate is issued by it; a chain that ends anywhere else is refused.
fn up_to_root(mut chain: Vec<Certificate>, root: &Certificate) -> Result<Vec<Certificate>, Error> {
    let Some(last) = chain.last() else { return Err(bad("the RIM carries no signing certificate")) };
    let der = |c: &Certificate| c.to_der().map_err(|e| bad(format!("re-encoding a RIM certificate: {e}")));
    if der(last)? == der(root)? {
        return Ok(chain);
    }
    if last.tbs_certificate.issuer != root.tbs_certificate.subject {
        return Err(bad(format!(
            "the RIM's chain ends in {:?}, not the pinned RIM root {:?}",
            evidence::subject(last),
            evidence::subject(root)
        )));
    }
    chain.push(root.clone());
    Ok(chain)
}

/// The tag's facts: `tagId`, `Meta`'s product and version, every `Payload` `Resource`.
fn read_tag(tag: Node, signer: String) -> Result<Rim, Error> {
    let tag_id = tag.attribute("tagId").ok_or_else(|| bad("the RIM's SoftwareIdentity has no tagId"))?.to_string();
    let meta = only_child(tag, "Meta")?;
    let meta_attr = |name: &str| {
        meta.attribute(name).map(str::to_string).ok_or_else(|| bad(format!("the RIM's Meta has no {name}")))
    };
    let (product, version) = (meta_attr("product")?, meta_attr("colloquialVersion")?);
    let payload = only_child(tag, "Payload")?;
    let mut golden = Vec::new();
    for resource in elements(payload, "Payload")? {
        if !resource.has_tag_name((uri::SWID, "Resource")) {
            return Err(bad(format!("the RIM's Payload holds {}, not only Resources", name_of(resource))));
        }
        golden.push(read_resource(resource)?);
    }
    golden.sort_by_key(|g| g.index);
    if let Some(pair) = golden.windows(2).find(|w| w[0].index == w[1].index) {
        return Err(bad(format!("measurement {}: the RIM lists it twice", pair[0].index)));
    }
    Ok(Rim { tag_id, product, version, signer, golden })
}

fn read_resource(resource: Node) -> Result<Golden, Error> {
    let index_text = resource.attribute("index").unwrap_or("");
    let index: u8 = index_text
        .parse()
        .map_err(|_| bad(format!("a RIM Resource's index {index_text:?} is not a number from 0 to 255")))?;
    let fail = |what: String| bad(format!("measurement {index}: {what}"));
    if resource.attribute("type") != Some("Measurement") {
        return Err(fail(format!("its type is {:?}, not Measurement", resource.attribute("type"))));
    }
    let active = match resource.attribute("active") {
        Some(a) if a.eq_ignore_ascii_case("true") => true,
        Some(a) if a.eq_ignore_ascii_case("false") => false,
        other => return Err(fail(format!("active is {other:?}, not True or False"))),
    };
    let count_text = resource.attribute("alternatives").unwrap_or("");
    let hashes: Vec<_> = resource.attributes().filter(|a| a.namespace() == Some(uri::HASH)).collect();
    let count: usize = count_text
        .parse()
        .ok()
        .filter(|n| *n >= 1 && *n == hashes.len())
        .ok_or_else(|| fail(format!("alternatives is {count_text:?} with {} hash values", hashes.len())))?;
    let mut alternatives = vec![Vec::new(); count];
    for hash in hashes {
        let slot = hash
            .name()
            .strip_prefix("Hash")
            .and_then(|k| k.parse::<usize>().ok())
            .filter(|k| *k < count && alternatives[*k].is_empty())
            .ok_or_else(|| {
                fail(format!("a hash value named {:?} (expected Hash0 to Hash{})", hash.name(), count - 1))
            })?;
        let value = hex::decode(hash.value()).map_err(|e| fail(format!("{} is not hex: {e}", hash.name())))?;
        if value.len() != DIGEST_LEN {
            return Err(fail(format!("{} is {} bytes, not {DIGEST_LEN}", hash.name(), value.len())));
        }
        alternatives[slot] = value;
    }
    Ok(Golden { index, active, alternatives })
}

/// A node's element children; text between them must be whitespace (comments and processing
/// instructions are not elements and never part of what is read).
fn elements<'a, 'input>(node: Node<'a, 'input>, what: &str) -> Result<Vec<Node<'a, 'input>>, Error> {
    let mut out = Vec::new();
    for child in node.children() {
        if child.is_element() {
            out.push(child);
        } else if child.is_text() && !child.text().unwrap_or("").trim().is_empty() {
            return Err(bad(format!("the RIM's {what} holds text between its elements")));
        }
    }
    Ok(out)
}

/// Exactly the XML-DSig elements `names`, in order.
fn children<'a, 'input, const N: usize>(
    node: Node<'a, 'input>,
    what: &str,
    names: [&str; N],
) -> Result<[Node<'a, 'input>; N], Error> {
    let found = elements(node, what)?;
    let fits = found.len() == N && found.iter().zip(names).all(|(n, name)| n.has_tag_name((uri::DSIG, name)));
    match <[Node; N]>::try_from(found.clone()) {
        Ok(array) if fits => Ok(array),
        _ => Err(bad(format!(
            "the RIM's {what} holds [{}]; the profile is exactly [{}]",
            found.iter().map(|n| name_of(*n)).collect::<Vec<_>>().join(", "),
            names.join(", ")
        ))),
    }
}

/// The one SWID child element `name` of the tag.
fn only_child<'a, 'input>(tag: Node<'a, 'input>, name: &str) -> Result<Node<'a, 'input>, Error> {
    let found: Vec<Node> =
        elements(tag, "SoftwareIdentity")?.into_iter().filter(|n| n.has_tag_name((uri::SWID, name))).collect();
    match found.as_slice() {
        [one] => Ok(*one),
        _ => Err(bad(format!("the RIM has {} {name} elements, not one", found.len()))),
    }
}

/// An algorithm element: exactly the URI `expected`, and nothing inside.
fn algorithm(node: Node, what: &str, expected: &str) -> Result<(), Error> {
    let found = node.attribute("Algorithm");
    if found != Some(expected) {
        return Err(bad(format!("the RIM's {what} algorithm is {found:?}; only {expected} is accepted")));
    }
    children(node, what, [])?;
    Ok(())
}

/// An element's text as base64 (whitespace ignored), of `len` bytes unless `len` is 0.
fn base64(node: Node, what: &str, len: usize) -> Result<Vec<u8>, Error> {
    let mut text = String::new();
    for child in node.children() {
        if child.is_element() {
            return Err(bad(format!("the RIM's {what} holds an element, not base64 text")));
        }
        if child.is_text() {
            text.extend(child.text().unwrap_or("").chars().filter(|c| !c.is_ascii_whitespace()));
        }
    }
    let bytes = crate::encoding::b64_decode(&text, "a RIM value")
        .map_err(|_| bad(format!("the RIM's {what} is not base64")))?;
    if len != 0 && bytes.len() != len {
        return Err(bad(format!("the RIM's {what} is {} bytes, not {len}", bytes.len())));
    }
    Ok(bytes)
}

/// An element's name for messages: `ds:SignedInfo` as `SignedInfo`, a foreign one with its
/// namespace.
fn name_of(node: Node) -> String {
    let name = node.tag_name();
    match name.namespace() {
        Some(uri::DSIG) | Some(uri::SWID) => name.name().to_string(),
        Some(ns) => format!("{{{ns}}}{}", name.name()),
        None => name.name().to_string(),
    }
}

/// A RIM as a record carries it: zlib-compressed (NVIDIA's SWID tags are mostly hex digests and
/// shrink about four times), so a GPU's report, chain and both RIMs fit one log entry.
pub fn pack(xml: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(xml, 9)
}

/// The RIM a record carries, inflated to at most [`MAX_RIM_BYTES`].
pub fn unpack(packed: &[u8]) -> Result<Vec<u8>, Error> {
    miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(packed, MAX_RIM_BYTES)
        .map_err(|e| bad(format!("the carried RIM does not inflate within {MAX_RIM_BYTES} bytes: {:?}", e.status)))
}
