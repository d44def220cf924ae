// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

import {MerkleProof} from "../src/MerkleProof.sol";
import {MerkleTree} from "./MerkleTree.sol";
import {TestBase} from "./TestBase.sol";

/// @notice Exposes the internal library so that proofs arrive as calldata, as in production.
contract MerkleProofHarness {
    function leafHash(bytes calldata line) external pure returns (bytes32) {
        return MerkleProof.leafHash(line);
    }

    function nodeHash(bytes32 a, bytes32 b) external pure returns (bytes32) {
        return MerkleProof.nodeHash(a, b);
    }

    function verify(bytes32[] calldata proof, bytes32 root, bytes32 leaf) external pure returns (bool) {
        return MerkleProof.verify(proof, root, leaf);
    }

    function verifyMemory(bytes32[] memory proof, bytes32 root, bytes32 leaf) external pure returns (bool) {
        return MerkleProof.verifyMemory(proof, root, leaf);
    }
}

contract MerkleProofTest is TestBase {
    MerkleProofHarness internal h;

    // Cross-language vector (also in README.md): the tree over the lines "a", "b", "c".
    bytes32 internal constant LEAF_A = 0x9722201502e620d70d78ee63045f3493812c206b988cbbe76c28918a7364fdbd;
    bytes32 internal constant LEAF_B = 0xe99905ac9f9583a5737a07d20a7129343f486f5f549b42c05192046188ef5f66;
    bytes32 internal constant LEAF_C = 0x4c89fefa814dbe46b640ca2ffb4682a1eaad32985c6604e98cc0a2fd76e49550;
    bytes32 internal constant NODE_AB = 0x00d25e3ecfd5a8430c58b5562d4a00f53ce3e76001e3683df8496c541fecb9da;
    bytes32 internal constant ROOT_ABC = 0x3f6c2d6d0c2fcd67795ea50af0dc85c8e2df8832efe3c49e36d8fe2e71bcc07b;

    function setUp() public {
        h = new MerkleProofHarness();
    }

    function test_knownVector_abc() public view {
        // Leaves by hand: keccak256(0x00 ‖ line).
        bytes32 la = keccak256(hex"0061");
        bytes32 lb = keccak256(hex"0062");
        bytes32 lc = keccak256(hex"0063");
        eq(la, LEAF_A, "leaf a");
        eq(lb, LEAF_B, "leaf b");
        eq(lc, LEAF_C, "leaf c");
        eq(h.leafHash(bytes("a")), LEAF_A, "library leaf a");
        eq(h.leafHash(bytes("b")), LEAF_B, "library leaf b");
        eq(h.leafHash(bytes("c")), LEAF_C, "library leaf c");

        // Level 1: (a, b) paired, c carried up. LEAF_A < LEAF_B, so no swap.
        isTrue(uint256(la) < uint256(lb), "a < b");
        bytes32 ab = keccak256(abi.encodePacked(bytes1(0x01), la, lb));
        eq(ab, NODE_AB, "node ab");
        // Root: NODE_AB < LEAF_C, so NODE_AB goes first.
        isTrue(uint256(ab) < uint256(lc), "ab < c");
        bytes32 root = keccak256(abi.encodePacked(bytes1(0x01), ab, lc));
        eq(root, ROOT_ABC, "root abc");

        // The library and the test builder agree with the hand fold.
        eq(h.nodeHash(la, lb), ab, "library node ab");
        eq(h.nodeHash(lb, la), ab, "library node is order-free");
        bytes32[] memory leaves = new bytes32[](3);
        (leaves[0], leaves[1], leaves[2]) = (la, lb, lc);
        eq(MerkleTree.root(leaves), ROOT_ABC, "builder root");

        // Proofs: a -> [b, c], b -> [a, c], c -> [ab].
        bytes32[] memory pa = new bytes32[](2);
        (pa[0], pa[1]) = (lb, lc);
        bytes32[] memory pb = new bytes32[](2);
        (pb[0], pb[1]) = (la, lc);
        bytes32[] memory pc = new bytes32[](1);
        pc[0] = ab;
        isTrue(h.verify(pa, ROOT_ABC, la), "proof a");
        isTrue(h.verify(pb, ROOT_ABC, lb), "proof b");
        isTrue(h.verify(pc, ROOT_ABC, lc), "proof c");
        isFalse(h.verify(pa, ROOT_ABC, lc), "proof a does not prove c");
    }

    function test_zeroRootNeverVerifies() public view {
        bytes32[] memory empty = new bytes32[](0);
        isFalse(h.verify(empty, bytes32(0), bytes32(0)), "zero root, zero leaf");
        isFalse(h.verifyMemory(empty, bytes32(0), bytes32(0)), "zero root, zero leaf (memory)");
    }

    function test_singleLeafTree() public view {
        bytes32 leaf = h.leafHash(bytes("only"));
        bytes32[] memory empty = new bytes32[](0);
        isTrue(h.verify(empty, leaf, leaf), "single leaf is its own root");
        isFalse(h.verify(empty, leaf, h.leafHash(bytes("other"))), "other leaf");
    }

    function test_leafAndNodeAreDomainSeparated() public view {
        // A 64-byte line equal to two child hashes must not hash to their inner node.
        bytes32 a = keccak256("x");
        bytes32 b = keccak256("y");
        (bytes32 lo, bytes32 hi) = a < b ? (a, b) : (b, a);
        isTrue(h.leafHash(abi.encodePacked(lo, hi)) != h.nodeHash(a, b), "leaf != node");
    }

    /// Builds a tree of 1..40 lines of varied length from a seed; every proof verifies in both
    /// the calldata and memory variants, and a line with one byte changed does not.
    function testFuzz_everyProofVerifies(bytes32 seed, uint8 countRaw, uint256 flipRaw) public view {
        uint256 count = bound(countRaw, 1, 40);
        bytes[] memory lines = new bytes[](count);
        bytes32[] memory leaves = new bytes32[](count);
        for (uint256 i = 0; i < count; ++i) {
            bytes32 r = keccak256(abi.encode(seed, i));
            uint256 len = 1 + (uint256(r) % 64);
            bytes memory line = new bytes(len);
            for (uint256 j = 0; j < len; ++j) {
                line[j] = bytes1(uint8(uint256(keccak256(abi.encode(r, j)))));
            }
            lines[i] = line;
            leaves[i] = MerkleTree.leaf(line);
            eq(h.leafHash(line), leaves[i], "leaf hash");
        }
        bytes32 root = MerkleTree.root(leaves);
        for (uint256 i = 0; i < count; ++i) {
            bytes32[] memory proof = MerkleTree.proof(leaves, i);
            isTrue(h.verify(proof, root, leaves[i]), "proof verifies");
            isTrue(h.verifyMemory(proof, root, leaves[i]), "proof verifies (memory)");
        }
        uint256 target = flipRaw % count;
        bytes memory changed = lines[target];
        uint256 at = (flipRaw >> 8) % changed.length;
        changed[at] = bytes1(uint8(changed[at]) ^ 0x01);
        bytes32[] memory p = MerkleTree.proof(leaves, target);
        isFalse(h.verify(p, root, h.leafHash(changed)), "changed line fails");
    }
}
