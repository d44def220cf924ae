// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

import {MerkleProof} from "./MerkleProof.sol";
import {Operated} from "./Operated.sol";

/// @title SettlementAnchor
/// @notice Append-only log of settlement-period Merkle roots. For each settlement period (its
///         index: quarter-hours since the Unix epoch) an operator anchors the root of the tree
///         over that period's settlement lines, once; a root is never overwritten. Anyone can
///         then check that a line belongs to an anchored period (`verifyLine`).
/// @dev Tree and hashing convention: see `MerkleProof`.
contract SettlementAnchor is Operated {
    /// @notice `period` already has a root; roots are never overwritten.
    error AlreadyAnchored(uint64 period);
    /// @notice The root was zero.
    error EmptyRoot();
    /// @notice The line count was zero.
    error NoLines();

    /// @notice The root of settlement period `period` was anchored.
    event Anchored(uint64 indexed period, bytes32 root, uint32 lineCount, uint128 totalWh);

    // One slot besides the root: 32 + 128 + 48 + 48 bits. 48 bits hold any timestamp or block
    // number for millions of years; the views widen them to uint64.
    struct Anchor {
        bytes32 root;
        uint32 lineCount;
        uint128 totalWh;
        uint48 anchoredAt;
        uint48 blockNumber;
    }

    mapping(uint64 => Anchor) private _anchors;
    uint256 private _count;

    /// @notice Records the settlement root of `period`. Operator only; once per period.
    /// @param period The settlement period's index (quarter-hours since the Unix epoch).
    /// @param root Merkle root over the period's settlement lines; must not be zero.
    /// @param lineCount Number of lines (leaves) in the tree; must not be zero.
    /// @param totalWh Total energy settled in the period, in watt-hours.
    function anchor(uint64 period, bytes32 root, uint32 lineCount, uint128 totalWh) external onlyOperator {
        if (_anchors[period].root != bytes32(0)) revert AlreadyAnchored(period);
        if (root == bytes32(0)) revert EmptyRoot();
        if (lineCount == 0) revert NoLines();
        _anchors[period] = Anchor({
            root: root,
            lineCount: lineCount,
            totalWh: totalWh,
            anchoredAt: uint48(block.timestamp),
            blockNumber: uint48(block.number)
        });
        unchecked {
            ++_count;
        }
        emit Anchored(period, root, lineCount, totalWh);
    }

    /// @notice What was anchored for `period`; all zero when nothing was.
    /// @param period The settlement period's index.
    /// @return root The Merkle root.
    /// @return lineCount Number of lines in the tree.
    /// @return totalWh Total energy settled, in watt-hours.
    /// @return anchoredAt Block timestamp of the anchoring transaction.
    /// @return blockNumber Block number of the anchoring transaction.
    function anchorOf(uint64 period)
        external
        view
        returns (bytes32 root, uint32 lineCount, uint128 totalWh, uint64 anchoredAt, uint64 blockNumber)
    {
        Anchor storage a = _anchors[period];
        return (a.root, a.lineCount, a.totalWh, a.anchoredAt, a.blockNumber);
    }

    /// @notice Whether `period` has a root.
    /// @param period The settlement period's index.
    /// @return True when anchored.
    function isAnchored(uint64 period) external view returns (bool) {
        return _anchors[period].root != bytes32(0);
    }

    /// @notice How many periods have been anchored.
    /// @return The number of anchored periods.
    function anchoredCount() external view returns (uint256) {
        return _count;
    }

    /// @notice Whether `line` is in the tree anchored for `period`, by `proof`.
    /// @param period The settlement period's index.
    /// @param line The settlement line's exact bytes (hashed as keccak256(0x00 ‖ line)).
    /// @param proof Sibling hashes from the leaf upwards.
    /// @return False for an unanchored period or a proof that does not lead to the root.
    function verifyLine(uint64 period, bytes calldata line, bytes32[] calldata proof) external view returns (bool) {
        return MerkleProof.verify(proof, _anchors[period].root, MerkleProof.leafHash(line));
    }

    /// @notice Whether the leaf hash `leaf` is in the tree anchored for `period`, by `proof`.
    /// @param period The settlement period's index.
    /// @dev The contract cannot tell a leaf from an inner node here: an inner node with the rest
    ///      of its path also passes. Callers must compute `leaf` from a line themselves, or use
    ///      `verifyLine`.
    /// @param leaf A leaf hash, keccak256(0x00 ‖ line).
    /// @param proof Sibling hashes from the leaf upwards.
    /// @return False for an unanchored period or a proof that does not lead to the root.
    function verifyLeaf(uint64 period, bytes32 leaf, bytes32[] calldata proof) external view returns (bool) {
        return MerkleProof.verify(proof, _anchors[period].root, leaf);
    }
}
