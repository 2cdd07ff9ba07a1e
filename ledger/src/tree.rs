//! The right edge of the Merkle tree in memory, and hash sources over SQLite.

use std::collections::HashMap;

use chipledger_domain::merkle::{node_hash, Hash, HashSource};
use chipledger_domain::Error as DomainError;
use rusqlite::{Connection, OptionalExtension};

/// The `(level, index)` of the complete subtrees along the right edge of a tree of `size`
/// leaves: one per set bit of `size`, largest first.
fn edge(size: u64) -> impl Iterator<Item = (u8, u64)> {
    let mut start = 0u64;
    (0..64u8).rev().filter(move |l| size >> l & 1 == 1).map(move |level| {
        let index = start >> level;
        start += 1 << level;
        (level, index)
    })
}

/// `nodes.id` for a stored subtree (level >= 2).
pub(crate) fn node_id(level: u8, index: u64) -> i64 {
    ((level as i64) << 48) | index as i64
}

/// The `(level, index)` of a `nodes.id`.
pub(crate) fn split_node_id(id: i64) -> (u8, u64) {
    ((id >> 48) as u8, (id & ((1 << 48) - 1)) as u64)
}

/// The complete subtrees along the right edge of a tree of `size` leaves, one per set bit,
/// largest first. Appending a leaf yields the new complete subtrees it closes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Frontier {
    pub size: u64,
    stack: Vec<Hash>,
}

impl Frontier {
    /// Loads the right edge of a stored tree of `size` leaves: O(log n) reads.
    pub fn load(src: &impl HashSource, size: u64) -> Result<Frontier, DomainError> {
        let stack = edge(size).map(|(level, index)| src.subtree(level, index)).collect::<Result<_, _>>()?;
        Ok(Frontier { size, stack })
    }

    /// Appends a leaf; returns the complete subtrees `(level, index, hash)` it closes.
    pub fn push(&mut self, leaf: Hash, out: &mut Vec<(u8, u64, Hash)>) {
        let mut h = leaf;
        let mut level = 0u8;
        let mut index = self.size;
        while self.size >> level & 1 == 1 {
            // Invariant: one stack entry per set bit of `size`.
            let Some(left) = self.stack.pop() else { break };
            h = node_hash(&left, &h);
            level += 1;
            index >>= 1;
            out.push((level, index, h));
        }
        self.stack.push(h);
        self.size += 1;
    }

    /// The complete subtrees along the right edge, `(level, index, hash)`, largest first.
    pub fn subtrees(&self) -> impl Iterator<Item = (u8, u64, Hash)> + '_ {
        edge(self.size).zip(&self.stack).map(|((level, index), hash)| (level, index, *hash))
    }

    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        match it.next() {
            None => chipledger_domain::merkle::empty_root(),
            Some(first) => it.fold(*first, |right, left| node_hash(left, &right)),
        }
    }
}

/// Reads complete subtrees from the database.
pub(crate) struct DbSource<'a>(pub &'a Connection);

impl HashSource for DbSource<'_> {
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, DomainError> {
        let missing = || DomainError::MissingNode { level, index };
        if level == 1 {
            let left = self.subtree(0, 2 * index)?;
            let right = self.subtree(0, 2 * index + 1)?;
            return Ok(node_hash(&left, &right));
        }
        let blob: Option<Vec<u8>> = if level == 0 {
            self.0
                .prepare_cached("SELECT leaf_hash FROM entries WHERE idx = ?1")
                .and_then(|mut s| s.query_row([index as i64], |r| r.get(0)).optional())
                .map_err(|_| missing())?
        } else {
            self.0
                .prepare_cached("SELECT hash FROM nodes WHERE id = ?1")
                .and_then(|mut s| s.query_row([node_id(level, index)], |r| r.get(0)).optional())
                .map_err(|_| missing())?
        };
        let arr: [u8; 32] = blob.ok_or_else(missing)?.try_into().map_err(|_| missing())?;
        Ok(Hash(arr))
    }
}

/// Hashes written in the current batch first, then the database.
pub(crate) struct OverlaySource<'a> {
    pub fresh: &'a HashMap<(u8, u64), Hash>,
    pub db: DbSource<'a>,
}

impl HashSource for OverlaySource<'_> {
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, DomainError> {
        match self.fresh.get(&(level, index)) {
            Some(h) => Ok(*h),
            None => self.db.subtree(level, index),
        }
    }
}

#[cfg(test)]
mod tests {
    use chipledger_domain::merkle::{leaf_hash, MemoryTree};

    use super::*;

    #[test]
    fn the_frontier_names_its_subtrees_as_the_tree_does() {
        let leaves: Vec<Hash> = (0..300u32).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let tree = MemoryTree::from_leaves(leaves.clone());
        let mut frontier = Frontier::default();
        let mut sink = Vec::new();
        for (n, leaf) in leaves.iter().enumerate() {
            let subtrees: Vec<_> = frontier.subtrees().collect();
            assert_eq!(subtrees.len(), n.count_ones() as usize);
            let mut covered = 0u64;
            for (level, index, hash) in subtrees {
                assert_eq!(index << level, covered, "size {n}: subtrees tile the leaves left to right");
                assert_eq!(tree.subtree(level, index).ok(), Some(hash), "size {n}, level {level}");
                covered += 1 << level;
            }
            assert_eq!(covered, n as u64);
            frontier.push(*leaf, &mut sink);
        }
    }
}
