// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

/// @title MerkleProof
/// @notice gridmesh's Merkle tree convention, shared with the Rust side (which builds the trees).
/// @dev
///  - leaf of an opaque byte string `line`: keccak256(0x00 ‖ line)
///  - inner node of child hashes a, b: with x = min(a, b), y = max(a, b) compared as uint256,
///    keccak256(0x01 ‖ x ‖ y)
///  - the builder pairs neighbours left to right at each level; an odd last node is carried up
///    unchanged. A proof lists the siblings from the leaf upwards (levels where the node was
///    carried contribute no sibling), so verification just folds the leaf with each sibling.
///  - a zero root never verifies.
///  The 0x00 / 0x01 prefixes keep leaves and inner nodes apart (no second preimage through a
///  64-byte line posing as a node); sorting the pair makes proofs position-free.
library MerkleProof {
    /// @notice Leaf hash of an opaque line: keccak256(0x00 ‖ line).
    function leafHash(bytes memory line) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(bytes1(0x00), line));
    }

    /// @notice Inner node of two child hashes: keccak256(0x01 ‖ min ‖ max).
    function nodeHash(bytes32 a, bytes32 b) internal pure returns (bytes32) {
        (bytes32 x, bytes32 y) = uint256(a) <= uint256(b) ? (a, b) : (b, a);
        return keccak256(abi.encodePacked(bytes1(0x01), x, y));
    }

    /// @notice Folds `leaf` with each sibling of `proof` in order; returns the resulting root.
    function rootOf(bytes32 leaf, bytes32[] calldata proof) internal pure returns (bytes32 node) {
        node = leaf;
        for (uint256 i = 0; i < proof.length; ++i) {
            node = nodeHash(node, proof[i]);
        }
    }

    /// @notice Same as `rootOf` for a proof held in memory.
    function rootOfMemory(bytes32 leaf, bytes32[] memory proof) internal pure returns (bytes32 node) {
        node = leaf;
        for (uint256 i = 0; i < proof.length; ++i) {
            node = nodeHash(node, proof[i]);
        }
    }

    /// @notice True when `proof` leads from `leaf` to `root` and `root` is not zero.
    function verify(bytes32[] calldata proof, bytes32 root, bytes32 leaf) internal pure returns (bool) {
        return root != bytes32(0) && rootOf(leaf, proof) == root;
    }

    /// @notice Same as `verify` for a proof held in memory.
    function verifyMemory(bytes32[] memory proof, bytes32 root, bytes32 leaf) internal pure returns (bool) {
        return root != bytes32(0) && rootOfMemory(leaf, proof) == root;
    }
}
