// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

/// @notice A test-side Merkle tree builder, written from the convention independently of
///         src/MerkleProof.sol: leaves pair left to right, an odd last node is carried up.
library MerkleTree {
    function leaf(bytes memory line) internal pure returns (bytes32) {
        return keccak256(bytes.concat(hex"00", line));
    }

    function node(bytes32 a, bytes32 b) internal pure returns (bytes32) {
        return a < b ? keccak256(bytes.concat(hex"01", a, b)) : keccak256(bytes.concat(hex"01", b, a));
    }

    function _up(bytes32[] memory level) private pure returns (bytes32[] memory next) {
        uint256 n = level.length;
        next = new bytes32[]((n + 1) / 2);
        for (uint256 i = 0; i < n; i += 2) {
            next[i / 2] = i + 1 < n ? node(level[i], level[i + 1]) : level[i];
        }
    }

    function root(bytes32[] memory leaves) internal pure returns (bytes32) {
        require(leaves.length > 0, "empty tree");
        bytes32[] memory level = leaves;
        while (level.length > 1) level = _up(level);
        return level[0];
    }

    function proof(bytes32[] memory leaves, uint256 index) internal pure returns (bytes32[] memory out) {
        require(index < leaves.length, "index out of range");
        // First pass: how many siblings (levels where the node is not carried up alone).
        uint256 count;
        uint256 n = leaves.length;
        uint256 idx = index;
        while (n > 1) {
            if ((idx ^ 1) < n) ++count;
            idx >>= 1;
            n = (n + 1) / 2;
        }
        out = new bytes32[](count);
        bytes32[] memory level = leaves;
        idx = index;
        uint256 k;
        while (level.length > 1) {
            uint256 sib = idx ^ 1;
            if (sib < level.length) out[k++] = level[sib];
            idx >>= 1;
            level = _up(level);
        }
    }
}
