//! The Merkle tree of RFC 9162 (Certificate Transparency 2.0) over the
//! event log: leaf and node hashes, roots, inclusion and consistency
//! proofs, and their verification. Pure: proofs are computed from the
//! hashes of complete subtrees, which [`Nodes`] supplies (the database
//! keeps them, see [`crate::tree`]).
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The hash of the leaf whose data is `data`: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([0u8])
        .chain_update(data)
        .finalize()
        .into()
}

/// The hash of an inner node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([1u8])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// The root of the empty tree: the hash of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `fields`, each as a 4-byte big-endian length and its bytes: no field's
/// content can pass for a boundary between two fields.
pub fn length_prefixed(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 4).sum());
    for field in fields {
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// An event exactly as the log stores it: what a leaf covers. Sealed
/// fields stay sealed, so erasing an account's key changes no leaf. The
/// event's MAC is not part of it: a key rotation makes the MACs again, and
/// must not change the tree that heads were signed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The payload's JSON text, byte for byte as stored.
    pub payload: String,
    /// The metadata's JSON text, byte for byte as stored.
    pub metadata: String,
    /// When the log stored it, in microseconds since the Unix epoch.
    pub recorded_at_micros: i64,
}

impl LoggedEvent {
    /// The leaf's data: each field length-prefixed, in this order, after a
    /// label that names the format.
    pub fn leaf_data(&self) -> Vec<u8> {
        length_prefixed(&[
            b"authledger-event-leaf-v1",
            self.aggregate_type.as_bytes(),
            self.aggregate_id.as_bytes(),
            self.sequence.to_string().as_bytes(),
            self.event_type.as_bytes(),
            self.event_version.as_bytes(),
            self.payload.as_bytes(),
            self.metadata.as_bytes(),
            self.recorded_at_micros.to_string().as_bytes(),
        ])
    }

    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.leaf_data())
    }
}

/// A complete subtree: the leaves `[index * 2^level, (index + 1) * 2^level)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

/// A complete subtree's hash the source does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the tree has no node at level {} index {}", .0.level, .0.index)]
pub struct MissingNode(pub NodeId);

/// Where complete subtrees' hashes come from.
pub trait Nodes {
    fn node(&self, id: NodeId) -> Result<Hash, MissingNode>;
}

impl Nodes for std::collections::HashMap<NodeId, Hash> {
    fn node(&self, id: NodeId) -> Result<Hash, MissingNode> {
        self.get(&id).copied().ok_or(MissingNode(id))
    }
}

/// The largest power of two smaller than `n` (`n` ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The hash of the leaves `[start, end)`, from complete subtrees. Every
/// range the proofs below ask for is either complete and aligned, or splits
/// into ranges that are (RFC 9162's recursion only ever cuts at a power of
/// two from an aligned start).
fn range_hash(nodes: &dyn Nodes, start: u64, end: u64) -> Result<Hash, MissingNode> {
    let size = end - start;
    if size.is_power_of_two() && start.is_multiple_of(size) {
        return nodes.node(NodeId {
            level: size.trailing_zeros() as u8,
            index: start >> size.trailing_zeros(),
        });
    }
    let k = split(size);
    Ok(node_hash(
        &range_hash(nodes, start, start + k)?,
        &range_hash(nodes, start + k, end)?,
    ))
}

/// The root of the tree of the first `size` leaves.
pub fn root(nodes: &dyn Nodes, size: u64) -> Result<Hash, MissingNode> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(nodes, 0, size)
}

/// The audit path of leaf `index` in the tree of `size` leaves (RFC 9162
/// 2.1.3.1), nearest the leaf first. `None` when the leaf is not in it.
pub fn inclusion_proof(
    nodes: &dyn Nodes,
    index: u64,
    size: u64,
) -> Result<Option<Vec<Hash>>, MissingNode> {
    if index >= size {
        return Ok(None);
    }
    let mut path = Vec::new();
    path_of(nodes, index, 0, size, &mut path)?;
    Ok(Some(path))
}

fn path_of(
    nodes: &dyn Nodes,
    m: u64,
    start: u64,
    end: u64,
    path: &mut Vec<Hash>,
) -> Result<(), MissingNode> {
    let n = end - start;
    if n == 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path_of(nodes, m, start, start + k, path)?;
        path.push(range_hash(nodes, start + k, end)?);
    } else {
        path_of(nodes, m - k, start + k, end, path)?;
        path.push(range_hash(nodes, start, start + k)?);
    }
    Ok(())
}

/// The proof that the tree of `first` leaves is a prefix of the tree of
/// `second` leaves (RFC 9162 2.1.4.1). `None` unless
/// `0 < first <= second`.
pub fn consistency_proof(
    nodes: &dyn Nodes,
    first: u64,
    second: u64,
) -> Result<Option<Vec<Hash>>, MissingNode> {
    if first == 0 || first > second {
        return Ok(None);
    }
    let mut proof = Vec::new();
    subproof(nodes, first, 0, second, true, &mut proof)?;
    Ok(Some(proof))
}

fn subproof(
    nodes: &dyn Nodes,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    proof: &mut Vec<Hash>,
) -> Result<(), MissingNode> {
    let n = end - start;
    if m == n {
        if !whole {
            proof.push(range_hash(nodes, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(nodes, m, start, start + k, whole, proof)?;
        proof.push(range_hash(nodes, start + k, end)?);
    } else {
        subproof(nodes, m - k, start + k, end, false, proof)?;
        proof.push(range_hash(nodes, start, start + k)?);
    }
    Ok(())
}

/// Whether `path` proves that `leaf` is leaf `index` of the tree of `size`
/// leaves whose root is `root` (RFC 9162 2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// Whether `proof` shows that the tree of `first` leaves with root
/// `first_root` is a prefix of the tree of `second` leaves with root
/// `second_root` (RFC 9162 2.1.4.2).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        // The empty tree is a prefix of every tree.
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((head, rest)) = path.split_first() else {
        return false;
    };
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*head, *head);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    fr == *first_root && sr == *second_root && snode == 0
}

/// The complete subtrees on the right edge of a tree of `size` leaves: the
/// ones a new leaf may combine with.
pub fn frontier(size: u64) -> Vec<NodeId> {
    (0..64u8)
        .filter(|level| size >> level & 1 == 1)
        .map(|level| NodeId {
            level,
            index: (size >> level) - 1,
        })
        .collect()
}

/// Appends leaf `size` (hash `leaf`) to a tree of `size` leaves: the new
/// complete subtrees it makes, the leaf itself first. `known` must hold the
/// tree's frontier (and is given the new nodes).
pub fn append(
    known: &mut std::collections::HashMap<NodeId, Hash>,
    size: u64,
    leaf: Hash,
) -> Result<Vec<(NodeId, Hash)>, MissingNode> {
    let mut made = Vec::new();
    let mut id = NodeId {
        level: 0,
        index: size,
    };
    let mut hash = leaf;
    known.insert(id, hash);
    made.push((id, hash));
    while id.index & 1 == 1 {
        let left = known.node(NodeId {
            level: id.level,
            index: id.index - 1,
        })?;
        hash = node_hash(&left, &hash);
        id = NodeId {
            level: id.level + 1,
            index: id.index >> 1,
        };
        known.insert(id, hash);
        made.push((id, hash));
    }
    Ok(made)
}

/// The tree's right edge as leaves are appended one by one, without
/// storing the tree: the complete subtrees, largest first. Its root is the
/// root of the tree of every leaf appended so far.
#[derive(Debug, Clone, Default)]
pub struct CompactRange {
    size: u64,
    /// (level, hash), levels strictly decreasing.
    edge: Vec<(u8, Hash)>,
}

impl CompactRange {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn append(&mut self, leaf: Hash) {
        let mut node = (0u8, leaf);
        while let Some(&(level, left)) = self.edge.last() {
            if level != node.0 {
                break;
            }
            self.edge.pop();
            node = (level + 1, node_hash(&left, &node.1));
        }
        self.edge.push(node);
        self.size += 1;
    }

    /// RFC 9162's MTH of the leaves so far: the edge folded from the right.
    pub fn root(&self) -> Hash {
        let mut nodes = self.edge.iter().rev();
        let Some(&(_, last)) = nodes.next() else {
            return empty_root();
        };
        nodes.fold(last, |right, (_, left)| node_hash(left, &right))
    }
}

/// Records which nodes a computation asks for, answering each with a
/// placeholder: the proofs' shapes do not depend on the hashes, so one
/// dry run tells which nodes to fetch in one query.
#[derive(Default)]
pub struct Wanted(std::cell::RefCell<std::collections::BTreeSet<NodeId>>);

impl Wanted {
    pub fn into_ids(self) -> Vec<NodeId> {
        self.0.into_inner().into_iter().collect()
    }
}

impl Nodes for Wanted {
    fn node(&self, id: NodeId) -> Result<Hash, MissingNode> {
        self.0.borrow_mut().insert(id);
        Ok([0; 32])
    }
}

#[cfg(test)]
mod tests {
    //! The proofs are checked against a second implementation written from
    //! RFC 9162's definitions over the whole list of leaves (MTH, PATH,
    //! PROOF/SUBPROOF), sharing nothing with the code above but SHA-256.
    use std::collections::HashMap;

    use super::*;

    fn sha(parts: &[&[u8]]) -> Hash {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().into()
    }

    fn k_of(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn mth(d: &[Vec<u8>]) -> Hash {
        match d.len() {
            0 => sha(&[]),
            1 => sha(&[&[0], &d[0]]),
            n => {
                let k = k_of(n);
                sha(&[&[1], &mth(&d[..k]), &mth(&d[k..])])
            }
        }
    }

    fn rfc_path(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
        let n = d.len();
        if n == 1 {
            return vec![];
        }
        let k = k_of(n);
        if m < k {
            let mut p = rfc_path(m, &d[..k]);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = rfc_path(m - k, &d[k..]);
            p.push(mth(&d[..k]));
            p
        }
    }

    fn rfc_subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![mth(d)] };
        }
        let k = k_of(n);
        if m <= k {
            let mut p = rfc_subproof(m, &d[..k], b);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = rfc_subproof(m - k, &d[k..], false);
            p.push(mth(&d[..k]));
            p
        }
    }

    fn leaves(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("event {i}").into_bytes()).collect()
    }

    /// The tree as the projection keeps it: appended leaf by leaf.
    fn grown(d: &[Vec<u8>]) -> HashMap<NodeId, Hash> {
        let mut known = HashMap::new();
        for (i, data) in d.iter().enumerate() {
            append(&mut known, i as u64, leaf_hash(data)).unwrap();
        }
        known
    }

    /// A small deterministic generator, for reproducible "random" pairs.
    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    #[test]
    fn every_root_from_1_to_300_leaves_is_the_rfc_root() {
        let d = leaves(300);
        let tree = grown(&d);
        assert_eq!(root(&tree, 0).unwrap(), mth(&[]));
        for n in 1..=300 {
            assert_eq!(root(&tree, n as u64).unwrap(), mth(&d[..n]), "size {n}");
        }
    }

    #[test]
    fn every_inclusion_proof_up_to_300_leaves_is_the_rfc_path_and_verifies() {
        let d = leaves(300);
        let tree = grown(&d);
        for n in 1..=300usize {
            let root_n = mth(&d[..n]);
            for m in 0..n {
                let path = inclusion_proof(&tree, m as u64, n as u64).unwrap().unwrap();
                assert_eq!(path, rfc_path(m, &d[..n]), "leaf {m} of {n}");
                let leaf = leaf_hash(&d[m]);
                assert!(verify_inclusion(m as u64, n as u64, &leaf, &path, &root_n));
                // Not for another leaf, size or root.
                let other = leaf_hash(b"another event");
                assert!(!verify_inclusion(
                    m as u64, n as u64, &other, &path, &root_n
                ));
                if n > 1 {
                    let wrong = (m as u64 + 1) % n as u64;
                    assert!(!verify_inclusion(wrong, n as u64, &leaf, &path, &root_n));
                }
            }
            assert_eq!(inclusion_proof(&tree, n as u64, n as u64).unwrap(), None);
        }
    }

    #[test]
    fn consistency_proofs_for_every_pair_up_to_64_and_random_pairs_up_to_300_verify() {
        let d = leaves(300);
        let tree = grown(&d);
        let mut pairs: Vec<(usize, usize)> = (1..=64)
            .flat_map(|n| (1..=n).map(move |m| (m, n)))
            .collect();
        let mut seed = 15;
        for _ in 0..2000 {
            let n = 1 + (lcg(&mut seed) % 300) as usize;
            let m = 1 + (lcg(&mut seed) % n as u64) as usize;
            pairs.push((m, n));
        }
        for (m, n) in pairs {
            let proof = consistency_proof(&tree, m as u64, n as u64)
                .unwrap()
                .unwrap();
            assert_eq!(proof, rfc_subproof(m, &d[..n], true), "{m} → {n}");
            let (first, second) = (mth(&d[..m]), mth(&d[..n]));
            assert!(
                verify_consistency(m as u64, n as u64, &first, &second, &proof),
                "{m} → {n}"
            );
            // A rewritten prefix does not pass.
            let mut forged = d[..n].to_vec();
            forged[(m - 1) / 2] = b"rewritten".to_vec();
            assert!(
                !verify_consistency(m as u64, n as u64, &first, &mth(&forged), &proof),
                "{m} → {n} with a rewritten prefix"
            );
        }
    }

    #[test]
    fn a_consistency_proof_does_not_pass_for_a_tree_that_lost_its_end() {
        let d = leaves(40);
        let tree = grown(&d);
        let proof = consistency_proof(&tree, 30, 40).unwrap().unwrap();
        assert!(!verify_consistency(
            30,
            40,
            &mth(&d[..30]),
            &mth(&d[..39]),
            &proof
        ));
        assert!(!verify_consistency(
            30,
            39,
            &mth(&d[..30]),
            &mth(&d[..39]),
            &proof
        ));
    }

    #[test]
    fn the_dry_run_asks_for_exactly_the_nodes_a_proof_reads() {
        let d = leaves(1000);
        let tree = grown(&d);
        let wanted = Wanted::default();
        inclusion_proof(&wanted, 417, 1000).unwrap();
        consistency_proof(&wanted, 600, 1000).unwrap();
        root(&wanted, 1000).unwrap();
        let only: HashMap<NodeId, Hash> = wanted
            .into_ids()
            .into_iter()
            .map(|id| (id, tree[&id]))
            .collect();
        assert!(only.len() < 40, "{} nodes", only.len());
        assert_eq!(
            inclusion_proof(&only, 417, 1000).unwrap(),
            inclusion_proof(&tree, 417, 1000).unwrap()
        );
        assert_eq!(root(&only, 1000).unwrap(), mth(&d));
    }

    #[test]
    fn the_frontier_is_what_the_next_leaf_needs() {
        let d = leaves(77);
        let tree = grown(&d);
        let mut edge: HashMap<NodeId, Hash> =
            frontier(77).into_iter().map(|id| (id, tree[&id])).collect();
        append(&mut edge, 77, leaf_hash(b"next")).unwrap();
        let mut longer = d.clone();
        longer.push(b"next".to_vec());
        let mut full = tree.clone();
        append(&mut full, 77, leaf_hash(b"next")).unwrap();
        assert_eq!(root(&full, 78).unwrap(), mth(&longer));
    }

    #[test]
    fn the_compact_range_has_the_rfc_root_at_every_size() {
        let d = leaves(300);
        let mut range = CompactRange::default();
        assert_eq!(range.root(), mth(&[]));
        for n in 1..=300 {
            range.append(leaf_hash(&d[n - 1]));
            assert_eq!(range.size(), n as u64);
            assert_eq!(range.root(), mth(&d[..n]), "size {n}");
        }
    }

    #[test]
    fn a_field_cannot_pass_for_the_boundary_between_two() {
        assert_ne!(
            length_prefixed(&[b"ab", b"c"]),
            length_prefixed(&[b"a", b"bc"])
        );
    }
}
