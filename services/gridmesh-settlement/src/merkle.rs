//! Keccak-256 Merkle trees that the contracts in `contracts/` verify.
//!
//! * leaf of a byte string `line`: `keccak256(0x00 ‖ line)`;
//! * node of two hashes: `keccak256(0x01 ‖ min(a, b) ‖ max(a, b))` (compared as big-endian
//!   numbers), so a proof needs no left/right bits;
//! * a level with an odd number of nodes carries its last node up unchanged;
//! * a proof lists the sibling hashes from the leaf up.
//!
//! The prefixes keep a leaf from ever passing for an inner node.

use sha3::{Digest, Keccak256};

/// A 32-byte hash.
pub type Hash = [u8; 32];

/// Keccak-256 of the parts, concatenated.
#[must_use]
pub fn keccak(parts: &[&[u8]]) -> Hash {
    let mut h = Keccak256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// The leaf hash of a line.
#[must_use]
pub fn leaf(line: &[u8]) -> Hash {
    keccak(&[&[0x00], line])
}

/// The parent of two nodes.
#[must_use]
pub fn node(a: &Hash, b: &Hash) -> Hash {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    keccak(&[&[0x01], x, y])
}

/// A tree over leaf hashes, kept whole so every proof can be read off it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// Builds the tree over `leaves` in the given order.
    #[must_use]
    pub fn new(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let up: Vec<Hash> = below
                .chunks(2)
                .map(|pair| match pair {
                    [a, b] => node(a, b),
                    [a] => *a,
                    _ => unreachable!("chunks(2) yields one or two"),
                })
                .collect();
            levels.push(up);
        }
        Self { levels }
    }

    /// The root; all zeros for an empty tree (which the contracts never accept).
    #[must_use]
    pub fn root(&self) -> Hash {
        self.levels.last().and_then(|l| l.first()).copied().unwrap_or([0; 32])
    }

    /// Number of leaves.
    #[must_use]
    pub fn len(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    /// True without leaves.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The inclusion proof of leaf `index`; `None` past the end.
    #[must_use]
    pub fn proof(&self, index: usize) -> Option<Vec<Hash>> {
        if index >= self.len() {
            return None;
        }
        let mut proof = Vec::new();
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = i ^ 1;
            if let Some(h) = level.get(sibling) {
                proof.push(*h);
            }
            i /= 2;
        }
        Some(proof)
    }
}

/// Folds a leaf with its proof: the root it claims.
#[must_use]
pub fn fold(leaf: Hash, proof: &[Hash]) -> Hash {
    proof.iter().fold(leaf, |acc, sibling| node(&acc, sibling))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keccak_is_ethereums() {
        // keccak256("") as every EVM computes it.
        assert_eq!(
            hex::encode(keccak(&[])),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }

    #[test]
    fn the_contracts_vectors_hold() {
        // contracts/README.md, asserted by the forge tests too.
        let t = Tree::new([b"a", b"b", b"c"].iter().map(|l| leaf(*l)).collect());
        assert_eq!(hex::encode(t.root()), "3f6c2d6d0c2fcd67795ea50af0dc85c8e2df8832efe3c49e36d8fe2e71bcc07b");
        let mut account = [0_u8; 20];
        account[19] = 0xa1;
        let period = gridmesh_core::Period::from_index(196_000).unwrap();
        let claim = crate::rewards::claim_bytes(period, &account, 5 * 10_u128.pow(18));
        assert_eq!(
            hex::encode(leaf(&claim)),
            "fc34d499c12a7f7dbd6d5397f99af397eca94f10e2f81ae50785db3dbb158127"
        );
    }

    #[test]
    fn three_leaves_carry_the_odd_one_up() {
        let leaves: Vec<Hash> = [b"a", b"b", b"c"].iter().map(|l| leaf(*l)).collect();
        let t = Tree::new(leaves.clone());
        assert_eq!(t.root(), node(&node(&leaves[0], &leaves[1]), &leaves[2]));
        assert_eq!(t.proof(2), Some(vec![node(&leaves[0], &leaves[1])]));
        assert_eq!(fold(leaves[0], &t.proof(0).unwrap()), t.root());
        assert_eq!(t.proof(3), None);
        assert_eq!(Tree::new(vec![]).root(), [0; 32]);
        assert_eq!(Tree::new(vec![leaves[0]]).root(), leaves[0]);
    }

    proptest! {
        #[test]
        fn every_proof_folds_to_the_root_and_a_changed_line_does_not(
            lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..70),
            flip in any::<usize>(),
        ) {
            let t = Tree::new(lines.iter().map(|l| leaf(l)).collect());
            for (i, line) in lines.iter().enumerate() {
                let proof = t.proof(i).unwrap();
                prop_assert_eq!(fold(leaf(line), &proof), t.root());
                let mut changed = line.clone();
                if changed.is_empty() { changed.push(1) } else { let k = flip % changed.len(); changed[k] ^= 0x01; }
                prop_assert_ne!(fold(leaf(&changed), &proof), t.root());
            }
        }
    }
}
