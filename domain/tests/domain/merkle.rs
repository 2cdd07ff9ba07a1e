use chipledger_domain::merkle::{
    self, consistency_proof, inclusion_proof, leaf_hash, node_hash, verify_consistency, verify_inclusion, Hash,
    MemoryTree, RootBuilder,
};
use proptest::prelude::*;

// RFC 6962 reference leaves and tree heads (certificate-transparency / transparency-dev/merkle
// testonly/constants.go), used as data.
const LEAVES: [&str; 8] =
    ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn h(s: &str) -> Hash {
    Hash::from_hex(s).unwrap()
}

fn reference_leaves() -> Vec<Hash> {
    LEAVES.iter().map(|l| leaf_hash(&hex::decode(l).unwrap())).collect()
}

fn tree(n: u64) -> (Vec<Hash>, MemoryTree) {
    let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    (leaves.clone(), MemoryTree::from_leaves(leaves))
}

/// The RFC's recursive definition, as plainly as it is written: the oracle for the fast code.
fn naive_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => merkle::empty_root(),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
        }
    }
}

#[track_caller]
fn check_root(leaves: &[Hash], expected: &Hash) {
    assert_eq!(merkle::root(leaves), *expected, "root() of {} leaves", leaves.len());
    let t = MemoryTree::from_leaves(leaves.to_vec());
    assert_eq!(t.root_at(leaves.len() as u64).unwrap(), *expected, "MemoryTree root of {} leaves", leaves.len());
}

#[test]
fn roots_match_the_rfc_6962_reference_tree_heads_for_every_size() {
    let leaves = reference_leaves();
    for n in 0..=8 {
        check_root(&leaves[..n], &h(ROOTS[n]));
    }
}

#[test]
fn leaf_and_node_hashes_use_the_rfc_prefixes() {
    assert_eq!(leaf_hash(b""), h(ROOTS[1]));
    let l = reference_leaves();
    assert_eq!(node_hash(&l[0], &l[1]), h(ROOTS[2]));
}

#[test]
fn inclusion_proofs_match_the_reference_vectors() {
    let t = MemoryTree::from_leaves(reference_leaves());
    let p0 = inclusion_proof(&t, 0, 8).unwrap();
    assert_eq!(
        p0,
        vec![
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ]
    );
    let p5 = inclusion_proof(&t, 5, 8).unwrap();
    assert_eq!(
        p5,
        vec![
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ]
    );
    let leaves = reference_leaves();
    verify_inclusion(5, 8, &leaves[5], &p5, &h(ROOTS[8])).unwrap();
}

#[test]
fn consistency_proofs_match_the_reference_vectors() {
    let t = MemoryTree::from_leaves(reference_leaves());
    let cases: [(u64, u64, &[&str]); 3] = [
        (
            2,
            8,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (old, new, expected) in cases {
        let proof = consistency_proof(&t, old, new).unwrap();
        let expected: Vec<Hash> = expected.iter().map(|s| h(s)).collect();
        assert_eq!(proof, expected, "{old} -> {new}");
        verify_consistency(old, new, &h(ROOTS[old as usize]), &h(ROOTS[new as usize]), &proof).unwrap();
    }
}

#[test]
fn a_proof_for_another_leaf_or_root_is_refused_with_a_reason() {
    let (leaves, t) = tree(13);
    let root = t.root_at(13).unwrap();
    let p = inclusion_proof(&t, 6, 13).unwrap();
    assert!(verify_inclusion(6, 13, &leaves[7], &p, &root).is_err());
    assert!(verify_inclusion(7, 13, &leaves[6], &p, &root).is_err());
    assert!(verify_inclusion(6, 12, &leaves[6], &p, &t.root_at(12).unwrap()).is_err());
    assert!(verify_inclusion(6, 13, &leaves[6], &p[..p.len() - 1], &root).is_err());
    let err = verify_inclusion(13, 13, &leaves[6], &p, &root).unwrap_err();
    assert!(err.to_string().contains("outside a tree of size 13"), "{err}");
    assert!(inclusion_proof(&t, 13, 13).is_err());
    assert!(consistency_proof(&t, 0, 13).is_err());
    assert!(consistency_proof(&t, 14, 13).is_err());
    assert!(inclusion_proof(&t, 3, 14).is_err(), "asking past the stored tree names the missing node");
}

#[test]
fn root_builder_agrees_with_root_at_every_prefix() {
    let (leaves, t) = tree(70);
    let mut b = RootBuilder::default();
    for (i, l) in leaves.iter().enumerate() {
        b.push(*l);
        assert_eq!(b.root(), t.root_at(i as u64 + 1).unwrap());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_inclusion_proof_verifies_and_matches_the_naive_root(n in 1u64..300, seed in any::<u64>()) {
        let (leaves, t) = tree(n);
        let index = seed % n;
        let root = naive_root(&leaves);
        prop_assert_eq!(merkle::root(&leaves), root);
        let proof = inclusion_proof(&t, index, n).unwrap();
        prop_assert!(proof.len() <= 64 - (n - 1).leading_zeros() as usize);
        prop_assert!(verify_inclusion(index, n, &leaves[index as usize], &proof, &root).is_ok());
        if n > 1 {
            let other = (index + 1) % n;
            prop_assert!(verify_inclusion(other, n, &leaves[index as usize], &proof, &root).is_err());
        }
    }

    #[test]
    fn every_consistency_proof_verifies_against_naive_roots(new in 1u64..300, seed in any::<u64>()) {
        let (leaves, t) = tree(new);
        let old = 1 + seed % new;
        let proof = consistency_proof(&t, old, new).unwrap();
        let (r_old, r_new) = (naive_root(&leaves[..old as usize]), naive_root(&leaves));
        prop_assert!(verify_consistency(old, new, &r_old, &r_new, &proof).is_ok());
        if old < new {
            let wrong = naive_root(&leaves[1..old as usize + 1]);
            prop_assert!(verify_consistency(old, new, &wrong, &r_new, &proof).is_err());
            let mut bent = proof.clone();
            bent[0].0[0] ^= 1;
            prop_assert!(verify_consistency(old, new, &r_old, &r_new, &bent).is_err());
        }
    }
}
