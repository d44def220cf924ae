// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

import {Operated} from "../src/Operated.sol";
import {SettlementAnchor} from "../src/SettlementAnchor.sol";
import {MerkleTree} from "./MerkleTree.sol";
import {TestBase} from "./TestBase.sol";

contract SettlementAnchorTest is TestBase {
    SettlementAnchor internal a;

    uint64 internal constant PERIOD = 196_000; // 2025-08-xx in quarter-hours since the epoch
    bytes32 internal constant ROOT = keccak256("root");

    function setUp() public {
        a = new SettlementAnchor();
        a.setOperator(OPERATOR, true);
    }

    function _tree(bytes[] memory lines) internal pure returns (bytes32[] memory leaves) {
        leaves = new bytes32[](lines.length);
        for (uint256 i = 0; i < lines.length; ++i) {
            leaves[i] = MerkleTree.leaf(lines[i]);
        }
    }

    // --- Operated: owner and operators ----------------------------------------------------

    function test_ownerIsDeployer() public view {
        eq(a.owner(), address(this), "owner");
        isTrue(a.isOperator(OPERATOR), "operator set in setUp");
        isFalse(a.isOperator(address(this)), "owner is not an operator by default");
    }

    function test_setOperator_appointsAndDismisses() public {
        vm.expectEmit(true, true, true, true, address(a));
        emit Operated.OperatorSet(STRANGER, true);
        a.setOperator(STRANGER, true);
        isTrue(a.isOperator(STRANGER), "appointed");
        vm.expectEmit(true, true, true, true, address(a));
        emit Operated.OperatorSet(STRANGER, false);
        a.setOperator(STRANGER, false);
        isFalse(a.isOperator(STRANGER), "dismissed");
    }

    function test_setOperator_revertsForNonOwner() public {
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOwner.selector, OPERATOR));
        a.setOperator(STRANGER, true);
    }

    function test_setOperator_revertsOnZeroAddress() public {
        vm.expectRevert(abi.encodeWithSelector(Operated.ZeroAddress.selector));
        a.setOperator(address(0), true);
    }

    function test_transferOwnership() public {
        vm.expectEmit(true, true, true, true, address(a));
        emit Operated.OwnershipTransferred(address(this), STRANGER);
        a.transferOwnership(STRANGER);
        eq(a.owner(), STRANGER, "new owner");
        // The old owner has lost its rights, the new one has them.
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOwner.selector, address(this)));
        a.setOperator(address(1), true);
        vm.prank(STRANGER);
        a.setOperator(address(1), true);
        isTrue(a.isOperator(address(1)), "new owner appoints");
    }

    function test_transferOwnership_revertsForNonOwner() public {
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOwner.selector, STRANGER));
        a.transferOwnership(STRANGER);
    }

    function test_transferOwnership_revertsOnZeroAddress() public {
        vm.expectRevert(abi.encodeWithSelector(Operated.ZeroAddress.selector));
        a.transferOwnership(address(0));
    }

    // --- anchor ---------------------------------------------------------------------------

    function test_anchor_storesAndEmits() public {
        vm.warp(1_760_000_000);
        vm.roll(4242);
        vm.expectEmit(true, true, true, true, address(a));
        emit SettlementAnchor.Anchored(PERIOD, ROOT, 17, 123_456);
        vm.prank(OPERATOR);
        a.anchor(PERIOD, ROOT, 17, 123_456);

        (bytes32 root, uint32 lines, uint128 wh, uint64 at, uint64 blockNumber) = a.anchorOf(PERIOD);
        eq(root, ROOT, "root");
        eq(lines, 17, "lineCount");
        eq(wh, 123_456, "totalWh");
        eq(at, 1_760_000_000, "anchoredAt");
        eq(blockNumber, 4242, "blockNumber");
        isTrue(a.isAnchored(PERIOD), "isAnchored");
        isFalse(a.isAnchored(PERIOD + 1), "next period not anchored");
        eq(a.anchoredCount(), 1, "count");
    }

    function test_anchor_extremeValues() public {
        vm.prank(OPERATOR);
        a.anchor(type(uint64).max, bytes32(type(uint256).max), type(uint32).max, type(uint128).max);
        (bytes32 root, uint32 lines, uint128 wh,,) = a.anchorOf(type(uint64).max);
        eq(root, bytes32(type(uint256).max), "root");
        eq(lines, type(uint32).max, "lineCount");
        eq(wh, type(uint128).max, "totalWh");
    }

    function test_anchor_countsPeriods() public {
        vm.startPrank(OPERATOR);
        a.anchor(1, ROOT, 1, 0);
        a.anchor(2, ROOT, 1, 0);
        a.anchor(0, ROOT, 1, 0);
        vm.stopPrank();
        eq(a.anchoredCount(), 3, "count");
    }

    function test_anchor_revertsForNonOperator() public {
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOperator.selector, STRANGER));
        a.anchor(PERIOD, ROOT, 1, 1);
        // The owner is no operator either unless appointed.
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOperator.selector, address(this)));
        a.anchor(PERIOD, ROOT, 1, 1);
    }

    function test_anchor_revertsForDismissedOperator() public {
        a.setOperator(OPERATOR, false);
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOperator.selector, OPERATOR));
        a.anchor(PERIOD, ROOT, 1, 1);
    }

    function test_anchor_revertsWhenAlreadyAnchored() public {
        vm.startPrank(OPERATOR);
        a.anchor(PERIOD, ROOT, 1, 1);
        vm.expectRevert(abi.encodeWithSelector(SettlementAnchor.AlreadyAnchored.selector, PERIOD));
        a.anchor(PERIOD, keccak256("other"), 2, 2);
        vm.stopPrank();
        (bytes32 root, uint32 lines,,,) = a.anchorOf(PERIOD);
        eq(root, ROOT, "root not overwritten");
        eq(lines, 1, "lineCount not overwritten");
    }

    function test_anchor_revertsOnEmptyRoot() public {
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(SettlementAnchor.EmptyRoot.selector));
        a.anchor(PERIOD, bytes32(0), 1, 1);
    }

    function test_anchor_revertsOnNoLines() public {
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(SettlementAnchor.NoLines.selector));
        a.anchor(PERIOD, ROOT, 0, 1);
    }

    // --- views ----------------------------------------------------------------------------

    function test_views_unanchoredPeriod() public view {
        (bytes32 root, uint32 lines, uint128 wh, uint64 at, uint64 blockNumber) = a.anchorOf(PERIOD);
        isTrue(root == 0 && lines == 0 && wh == 0 && at == 0 && blockNumber == 0, "all zero");
        isFalse(a.isAnchored(PERIOD), "isAnchored");
        eq(a.anchoredCount(), 0, "count");
        bytes32[] memory empty = new bytes32[](0);
        isFalse(a.verifyLine(PERIOD, "", empty), "verifyLine on unanchored period");
        isFalse(a.verifyLeaf(PERIOD, bytes32(0), empty), "verifyLeaf on unanchored period");
    }

    function test_verifyLine_andLeaf_knownVector() public {
        bytes[] memory lines = new bytes[](3);
        (lines[0], lines[1], lines[2]) = (bytes("a"), bytes("b"), bytes("c"));
        bytes32[] memory leaves = _tree(lines);
        bytes32 root = MerkleTree.root(leaves);
        eq(root, 0x3f6c2d6d0c2fcd67795ea50af0dc85c8e2df8832efe3c49e36d8fe2e71bcc07b, "vector root");
        vm.prank(OPERATOR);
        a.anchor(PERIOD, root, 3, 0);
        for (uint256 i = 0; i < 3; ++i) {
            bytes32[] memory proof = MerkleTree.proof(leaves, i);
            isTrue(a.verifyLine(PERIOD, lines[i], proof), "verifyLine");
            isTrue(a.verifyLeaf(PERIOD, leaves[i], proof), "verifyLeaf");
            isFalse(a.verifyLine(PERIOD + 1, lines[i], proof), "other period");
        }
        bytes32[] memory p0 = MerkleTree.proof(leaves, 0);
        isFalse(a.verifyLine(PERIOD, "d", p0), "line not in tree");
        isFalse(a.verifyLine(PERIOD, "b", p0), "line with another's proof");
        isFalse(a.verifyLeaf(PERIOD, keccak256("a"), p0), "unprefixed hash is no leaf");
        // An inner node presented as a leaf (with the rest of the path) does not verify as a line.
        bytes32[] memory pc = MerkleTree.proof(leaves, 2);
        isFalse(a.verifyLine(PERIOD, abi.encodePacked(leaves[0], leaves[1]), pc), "node as line");
    }

    /// Anchors a fuzzed tree; every line verifies through the contract and a changed one does not.
    function testFuzz_anchoredTreeVerifies(bytes32 seed, uint8 countRaw, uint64 period) public {
        uint256 count = bound(countRaw, 1, 24);
        bytes[] memory lines = new bytes[](count);
        for (uint256 i = 0; i < count; ++i) {
            lines[i] = abi.encode(seed, i, period);
        }
        bytes32[] memory leaves = _tree(lines);
        bytes32 root = MerkleTree.root(leaves);
        vm.prank(OPERATOR);
        a.anchor(period, root, uint32(count), uint128(count) * 1000);
        for (uint256 i = 0; i < count; ++i) {
            bytes32[] memory proof = MerkleTree.proof(leaves, i);
            isTrue(a.verifyLine(period, lines[i], proof), "line verifies");
            bytes memory changed = bytes.concat(lines[i], hex"00");
            isFalse(a.verifyLine(period, changed, proof), "changed line fails");
        }
    }
}
