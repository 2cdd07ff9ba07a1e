//! RFC 6962 / RFC 9162 Merkle tree math: hashing, roots, inclusion and consistency proofs.
//!
//! Formulas (RFC 9162 §2.1):
//! - `leaf = SHA-256(0x00 ‖ data)`, `node = SHA-256(0x01 ‖ left ‖ right)`,
//!   the empty tree's root is `SHA-256("")`.
//! - `MTH(D[n]) = node(MTH(D[0:k]), MTH(D[k:n]))` where `k` is the largest power of two `< n`.
//!
//! Proof generation reads hashes of *complete* subtrees from a [`HashSource`], so a store that
//! keeps every complete subtree (as the ledger does) serves any proof in O(log n) reads.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::Error;

/// A SHA-256 hash inside the tree: a leaf hash, an interior node or a root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Hash, Error> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|e| Error::Hex { what: "hash", reason: e.to_string() })?;
        Ok(Hash(out))
    }

    /// Parses standard padded base64 of exactly 32 bytes.
    pub fn from_base64(s: &str) -> Result<Hash, Error> {
        let bytes = crate::encoding::b64_decode(s, "hash")?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| Error::Base64 { what: "hash (not 32 bytes)" })?;
        Ok(Hash(arr))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn to_base64(&self) -> String {
        crate::encoding::b64_encode(&self.0)
    }

    /// SHA-256 of arbitrary bytes (not a tree hash: no domain-separation prefix).
    pub fn sha256(data: &[u8]) -> Hash {
        Hash(Sha256::digest(data).into())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hash::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    Hash(h.finalize().into())
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Hash::sha256(b"")
}

/// The root of a tree whose leaf hashes are `leaves`, in O(n) time and O(log n) memory.
pub fn root(leaves: &[Hash]) -> Hash {
    let mut acc = RootBuilder::default();
    for leaf in leaves {
        acc.push(*leaf);
    }
    acc.root()
}

/// Folds leaf hashes one by one into the root: keeps one hash per set bit of the count
/// (a "compact range"), so appending is amortised O(1) and the root is O(log n).
#[derive(Debug, Default, Clone)]
pub struct RootBuilder {
    // Complete subtrees from the left, largest first; their sizes are the set bits of `count`.
    stack: Vec<Hash>,
    count: u64,
}

impl RootBuilder {
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut c = self.count;
        while c & 1 == 1 {
            // Invariant: one stack entry per set bit of `count`.
            let left = self.stack.pop().unwrap_or(h);
            h = node_hash(&left, &h);
            c >>= 1;
        }
        self.stack.push(h);
        self.count += 1;
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(first) => it.fold(*first, |right, left| node_hash(left, &right)),
        }
    }
}

/// Where proof generation reads the hash of a complete subtree: the one at `level`
/// (2^level leaves) and horizontal `index`, covering leaves `[index·2^level, (index+1)·2^level)`.
pub trait HashSource {
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, Error>;
}

/// Every level of a tree in memory. Used by tests, benches and the offline verifier; the
/// ledger implements [`HashSource`] over its stored nodes instead.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    pub fn from_leaves(leaves: Vec<Hash>) -> MemoryTree {
        let mut t = MemoryTree { levels: vec![] };
        t.levels.push(Vec::with_capacity(leaves.len()));
        for leaf in leaves {
            t.push(leaf);
        }
        t
    }

    pub fn push(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(vec![]);
        }
        self.levels[0].push(leaf);
        let mut level = 0;
        while self.levels[level].len().is_multiple_of(2) {
            let n = self.levels[level].len();
            let h = node_hash(&self.levels[level][n - 2], &self.levels[level][n - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(vec![]);
            }
            self.levels[level + 1].push(h);
            level += 1;
        }
    }

    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// The root of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, Error> {
        if size > self.size() {
            return Err(Error::IndexOutOfRange { index: size, size: self.size() });
        }
        subtree_root(self, 0, size)
    }
}

impl HashSource for MemoryTree {
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, Error> {
        self.levels
            .get(level as usize)
            .and_then(|l| usize::try_from(index).ok().and_then(|i| l.get(i)))
            .copied()
            .ok_or(Error::MissingNode { level, index })
    }
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The root of leaves `[start, end)`, where `start` is aligned as the RFC 6962 recursion leaves
/// it. Reads O(log n) complete subtrees.
pub fn subtree_root(src: &impl HashSource, start: u64, end: u64) -> Result<Hash, Error> {
    let n = end - start;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && start.is_multiple_of(n) {
        let level = n.trailing_zeros() as u8;
        return src.subtree(level, start >> level);
    }
    // Right edge: collect the complete subtrees left to right, then fold from the right.
    let mut parts = Vec::new();
    let (mut s, e) = (start, end);
    while s < e {
        let rem = e - s;
        let k = if rem.is_power_of_two() { rem } else { split(rem) };
        let level = k.trailing_zeros() as u8;
        parts.push(src.subtree(level, s >> level)?);
        s += k;
    }
    let mut it = parts.into_iter().rev();
    // Invariant: n > 0, so at least one part was pushed.
    let mut acc = it.next().ok_or(Error::MissingNode { level: 0, index: start })?;
    for left in it {
        acc = node_hash(&left, &acc);
    }
    Ok(acc)
}

/// RFC 9162 §2.1.3.1 `PATH(index, D[size])`: the inclusion proof, leaf's sibling first.
pub fn inclusion_proof(src: &impl HashSource, index: u64, size: u64) -> Result<Vec<Hash>, Error> {
    if index >= size {
        return Err(Error::IndexOutOfRange { index, size });
    }
    let mut path = Vec::new();
    let (mut m, mut start, mut end) = (index, 0u64, size);
    while end - start > 1 {
        let k = split(end - start);
        if m < k {
            path.push(subtree_root(src, start + k, end)?);
            end = start + k;
        } else {
            path.push(subtree_root(src, start, start + k)?);
            start += k;
            m -= k;
        }
    }
    path.reverse();
    Ok(path)
}

/// RFC 9162 §2.1.4.1 `PROOF(old, D[new])`: the consistency proof between two tree sizes.
pub fn consistency_proof(src: &impl HashSource, old: u64, new: u64) -> Result<Vec<Hash>, Error> {
    if old == 0 || old > new {
        return Err(Error::BadTreeRange { old, new });
    }
    let mut proof = Vec::new();
    let (mut m, mut start, mut end, mut complete) = (old, 0u64, new, true);
    while m != end - start {
        let k = split(end - start);
        if m <= k {
            proof.push(subtree_root(src, start + k, end)?);
            end = start + k;
        } else {
            proof.push(subtree_root(src, start, start + k)?);
            start += k;
            m -= k;
            complete = false;
        }
    }
    if !complete {
        proof.push(subtree_root(src, start, end)?);
    }
    proof.reverse();
    Ok(proof)
}

/// RFC 9162 §2.1.3.2: checks that `leaf` sits at `index` in the tree of `size` with `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> Result<(), Error> {
    let fail = |reason: &str| Error::InclusionProof { index, size, reason: reason.to_string() };
    if index >= size {
        return Err(Error::IndexOutOfRange { index, size });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(fail("proof is longer than the tree is deep"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(fail("proof is shorter than the tree is deep"));
    }
    if r != *root {
        return Err(fail(&format!("computed root {r} differs from {root}")));
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: checks that the tree of size `old` with `old_root` is a prefix of the tree
/// of size `new` with `new_root`.
pub fn verify_consistency(old: u64, new: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> Result<(), Error> {
    let fail = |reason: &str| Error::ConsistencyProof { old, new, reason: reason.to_string() };
    if old > new {
        return Err(Error::BadTreeRange { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(fail("equal sizes need an empty proof"));
        }
        if old_root != new_root {
            return Err(fail("equal sizes with different roots"));
        }
        return Ok(());
    }
    if old == 0 {
        return Err(Error::BadTreeRange { old, new });
    }
    if proof.is_empty() {
        return Err(fail("empty proof"));
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return Err(fail("proof is longer than needed"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(fail("proof is shorter than needed"));
    }
    if fr != *old_root {
        return Err(fail(&format!("old root recomputes to {fr}, expected {old_root}")));
    }
    if sr != *new_root {
        return Err(fail(&format!("new root recomputes to {sr}, expected {new_root}")));
    }
    Ok(())
}
