// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

import {GridToken} from "../src/GridToken.sol";
import {Operated} from "../src/Operated.sol";
import {RewardDistributor} from "../src/RewardDistributor.sol";
import {MerkleTree} from "./MerkleTree.sol";
import {TestBase} from "./TestBase.sol";

contract RewardDistributorTest is TestBase {
    RewardDistributor internal d;
    GridToken internal token;

    uint64 internal constant GENESIS = 195_000;
    uint64 internal constant PERIOD = 196_000;
    uint64 internal constant YEAR = 35_040;
    address internal constant ALICE = address(0xA1);
    address internal constant BOB = address(0xB0B);
    address internal constant CAROL = address(0xCA401);

    // Claim-line vector (also in README.md): period 196000, account 0x…a1, amount 5 GRID.
    bytes32 internal constant CLAIM_LEAF = 0xfc34d499c12a7f7dbd6d5397f99af397eca94f10e2f81ae50785db3dbb158127;

    function setUp() public {
        d = new RewardDistributor(GENESIS);
        token = d.token();
        d.setOperator(OPERATOR, true);
    }

    function _line(uint64 period, address account, uint256 amount) internal pure returns (bytes memory) {
        return abi.encodePacked(period, account, amount);
    }

    /// Tree over three claims of `PERIOD`: ALICE 5, BOB 3, CAROL 2 GRID (total 10 GRID).
    function _threeClaims()
        internal
        pure
        returns (address[] memory accounts, uint256[] memory amounts, bytes32[] memory leaves)
    {
        accounts = new address[](3);
        amounts = new uint256[](3);
        (accounts[0], accounts[1], accounts[2]) = (ALICE, BOB, CAROL);
        (amounts[0], amounts[1], amounts[2]) = (5e18, 3e18, 2e18);
        leaves = new bytes32[](3);
        for (uint256 i = 0; i < 3; ++i) {
            leaves[i] = MerkleTree.leaf(_line(PERIOD, accounts[i], amounts[i]));
        }
    }

    function _publish(uint64 period, bytes32 root, uint256 total) internal {
        vm.prank(OPERATOR);
        d.publish(period, root, total);
    }

    // --- construction, token, schedule ---------------------------------------------------

    function test_construction() public view {
        eq(d.genesisPeriod(), GENESIS, "genesis");
        eq(d.owner(), address(this), "owner");
        eq(token.minter(), address(d), "distributor mints");
        eq(token.cap(), 2 * 100e18 * 35_040, "cap");
        eq(d.CAP(), token.cap(), "CAP");
        eq(d.INITIAL_PER_PERIOD(), 100e18, "initial");
        eq(d.HALVING_PERIODS(), 35_040, "halving");
        eq(token.totalSupply(), 0, "nothing minted");
    }

    function test_operatorPattern() public {
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOwner.selector, STRANGER));
        d.setOperator(STRANGER, true);
        vm.expectRevert(abi.encodeWithSelector(Operated.ZeroAddress.selector));
        d.transferOwnership(address(0));
        isTrue(d.isOperator(OPERATOR), "operator");
    }

    function test_emissionFor() public view {
        eq(d.emissionFor(0), 0, "long before genesis");
        eq(d.emissionFor(GENESIS - 1), 0, "just before genesis");
        eq(d.emissionFor(GENESIS), 100e18, "genesis");
        eq(d.emissionFor(GENESIS + YEAR - 1), 100e18, "end of year 1");
        eq(d.emissionFor(GENESIS + YEAR), 50e18, "year 2");
        eq(d.emissionFor(GENESIS + 2 * YEAR), 25e18, "year 3");
        eq(d.emissionFor(GENESIS + 66 * YEAR), 100e18 >> 66, "year 67: 1 wei");
        eq(d.emissionFor(GENESIS + 67 * YEAR), 0, "year 68: nothing");
        eq(d.emissionFor(GENESIS + 255 * YEAR), 0, "shift 255");
        eq(d.emissionFor(GENESIS + 256 * YEAR), 0, "shift 256");
        eq(d.emissionFor(type(uint64).max), 0, "end of time");
    }

    function test_emissionFor_genesisZero() public {
        RewardDistributor z = new RewardDistributor(0);
        eq(z.emissionFor(0), 100e18, "period 0");
        eq(z.emissionFor(type(uint64).max), 0, "end of time");
    }

    function testFuzz_emissionFor_matchesSchedule(uint64 period) public view {
        uint256 e = d.emissionFor(period);
        if (period < GENESIS) {
            eq(e, 0, "before genesis");
        } else {
            uint256 halvings = (period - GENESIS) / YEAR;
            eq(e, halvings >= 256 ? 0 : 100e18 >> halvings, "formula");
            isTrue(e <= d.emissionFor(period - YEAR < GENESIS ? GENESIS : period - YEAR), "never grows");
        }
    }

    /// The whole schedule (every period at its maximum) stays below the token's cap.
    function test_scheduleTotalBelowCap() public view {
        uint256 sum;
        for (uint256 k = 0; k < 256; ++k) {
            sum += uint256(YEAR) * d.emissionFor(uint64(GENESIS + k * YEAR));
        }
        isTrue(sum <= token.cap(), "schedule within cap");
        // sum over k of floor(n / 2^k) is 2n - popcount(n): the cap is tight to a few wei a period.
        isTrue(token.cap() - sum <= uint256(YEAR) * 256, "and the cap is tight");
    }

    // --- publish --------------------------------------------------------------------------

    function test_publish_mintsAndEmits() public {
        (,, bytes32[] memory leaves) = _threeClaims();
        bytes32 root = MerkleTree.root(leaves);
        vm.expectEmit(true, true, true, true, address(token));
        emit GridToken.Transfer(address(0), address(d), 10e18);
        vm.expectEmit(true, true, true, true, address(d));
        emit RewardDistributor.Published(PERIOD, root, 10e18);
        _publish(PERIOD, root, 10e18);
        (bytes32 r, uint256 total, uint256 claimed) = d.distributionOf(PERIOD);
        eq(r, root, "root");
        eq(total, 10e18, "total");
        eq(claimed, 0, "claimed");
        eq(token.balanceOf(address(d)), 10e18, "minted to the distributor");
        eq(token.totalSupply(), 10e18, "supply");
    }

    function test_publish_fullEmissionAndZeroTotal() public {
        _publish(PERIOD, keccak256("r1"), 100e18);
        _publish(PERIOD + 1, keccak256("r2"), 0);
        eq(token.totalSupply(), 100e18, "supply");
        (bytes32 r, uint256 total,) = d.distributionOf(PERIOD + 1);
        eq(r, keccak256("r2"), "zero-total distribution is published");
        eq(total, 0, "total");
    }

    function test_publish_revertsForNonOperator() public {
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOperator.selector, STRANGER));
        d.publish(PERIOD, keccak256("r"), 1);
    }

    function test_publish_revertsWhenAlreadyPublished() public {
        _publish(PERIOD, keccak256("r"), 1);
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.AlreadyPublished.selector, PERIOD));
        d.publish(PERIOD, keccak256("other"), 1);
    }

    function test_publish_revertsOnEmptyRoot() public {
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.EmptyRoot.selector));
        d.publish(PERIOD, bytes32(0), 1);
    }

    function test_publish_revertsOverEmission() public {
        vm.startPrank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.OverEmission.selector, 100e18 + 1, 100e18));
        d.publish(PERIOD, keccak256("r"), 100e18 + 1);
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.OverEmission.selector, 1, 0));
        d.publish(GENESIS - 1, keccak256("r"), 1);
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.OverEmission.selector, 50e18 + 1, 50e18));
        d.publish(GENESIS + YEAR, keccak256("r"), 50e18 + 1);
        vm.stopPrank();
    }

    /// Any total above the period's emission is refused, whatever the period.
    function testFuzz_publish_overEmissionReverts(uint64 period, uint256 total) public {
        uint256 allowed = d.emissionFor(period);
        vm.assume(total > allowed);
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.OverEmission.selector, total, allowed));
        d.publish(period, keccak256("r"), total);
    }

    // --- claim ----------------------------------------------------------------------------

    function test_claimLeafVector() public pure {
        bytes memory line = _line(PERIOD, ALICE, 5e18);
        eq(line.length, 60, "line is 8 + 20 + 32 bytes");
        eq(MerkleTree.leaf(line), CLAIM_LEAF, "claim leaf vector");
    }

    function test_claim_paysEveryone() public {
        (address[] memory accounts, uint256[] memory amounts, bytes32[] memory leaves) = _threeClaims();
        _publish(PERIOD, MerkleTree.root(leaves), 10e18);
        uint256 claimedSoFar;
        for (uint256 i = 0; i < 3; ++i) {
            vm.expectEmit(true, true, true, true, address(d));
            emit RewardDistributor.Claimed(PERIOD, accounts[i], amounts[i]);
            vm.expectEmit(true, true, true, true, address(token));
            emit GridToken.Transfer(address(d), accounts[i], amounts[i]);
            // Anyone may submit the claim; the tokens go to the account.
            vm.prank(STRANGER);
            d.claim(PERIOD, accounts[i], amounts[i], MerkleTree.proof(leaves, i));
            claimedSoFar += amounts[i];
            eq(token.balanceOf(accounts[i]), amounts[i], "paid");
            isTrue(d.isClaimed(PERIOD, accounts[i]), "isClaimed");
            (,, uint256 claimed) = d.distributionOf(PERIOD);
            eq(claimed, claimedSoFar, "claimed so far");
        }
        eq(token.balanceOf(STRANGER), 0, "submitter gets nothing");
        eq(token.balanceOf(address(d)), 0, "all paid out");
        isFalse(d.isClaimed(PERIOD + 1, ALICE), "other period not claimed");
    }

    function test_claim_revertsWhenNotPublished() public {
        bytes32[] memory proof = new bytes32[](0);
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.NotPublished.selector, PERIOD));
        d.claim(PERIOD, ALICE, 5e18, proof);
    }

    function test_claim_revertsWhenAlreadyClaimed() public {
        (address[] memory accounts, uint256[] memory amounts, bytes32[] memory leaves) = _threeClaims();
        _publish(PERIOD, MerkleTree.root(leaves), 10e18);
        bytes32[] memory proof = MerkleTree.proof(leaves, 0);
        d.claim(PERIOD, accounts[0], amounts[0], proof);
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.AlreadyClaimed.selector, PERIOD, ALICE));
        d.claim(PERIOD, accounts[0], amounts[0], proof);
        eq(token.balanceOf(ALICE), 5e18, "paid once");
    }

    function test_claim_revertsOnInvalidProof() public {
        (,, bytes32[] memory leaves) = _threeClaims();
        _publish(PERIOD, MerkleTree.root(leaves), 10e18);
        // The same root published for the next period too: a line names its own period.
        _publish(PERIOD + 1, MerkleTree.root(leaves), 10e18);
        bytes32[] memory proof = MerkleTree.proof(leaves, 0);
        bytes4 sel = RewardDistributor.InvalidProof.selector;
        vm.expectRevert(abi.encodeWithSelector(sel));
        d.claim(PERIOD, ALICE, 5e18 + 1, proof); // wrong amount
        vm.expectRevert(abi.encodeWithSelector(sel));
        d.claim(PERIOD, BOB, 5e18, proof); // wrong account
        vm.expectRevert(abi.encodeWithSelector(sel));
        d.claim(PERIOD + 1, ALICE, 5e18, proof); // wrong period
        vm.expectRevert(abi.encodeWithSelector(sel));
        d.claim(PERIOD, ALICE, 5e18, new bytes32[](0)); // no proof
        isFalse(d.isClaimed(PERIOD, ALICE), "nothing claimed");
    }

    function test_claim_revertsOverClaim() public {
        // A bad tree whose amounts (5 + 3 + 2 GRID) add up to more than its published total.
        (address[] memory accounts, uint256[] memory amounts, bytes32[] memory leaves) = _threeClaims();
        _publish(PERIOD, MerkleTree.root(leaves), 6e18);
        d.claim(PERIOD, accounts[0], amounts[0], MerkleTree.proof(leaves, 0));
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.OverClaim.selector, PERIOD, 3e18, 1e18));
        d.claim(PERIOD, accounts[1], amounts[1], MerkleTree.proof(leaves, 1));
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.OverClaim.selector, PERIOD, 2e18, 1e18));
        d.claim(PERIOD, accounts[2], amounts[2], MerkleTree.proof(leaves, 2));
        eq(token.balanceOf(address(d)), 1e18, "the rest stays");
        isFalse(d.isClaimed(PERIOD, BOB), "bob not marked");
    }

    /// A fuzzed distribution of up to 12 accounts within the emission: every claim pays exactly,
    /// a claim for more than its line says fails, and the distributor ends empty.
    function testFuzz_claimDistribution(bytes32 seed, uint8 countRaw, uint64 offset) public {
        uint64 period = GENESIS + uint64(bound(offset, 0, 3 * YEAR));
        uint256 allowed = d.emissionFor(period);
        uint256 count = bound(countRaw, 1, 12);
        address[] memory accounts = new address[](count);
        uint256[] memory amounts = new uint256[](count);
        bytes32[] memory leaves = new bytes32[](count);
        uint256 total;
        for (uint256 i = 0; i < count; ++i) {
            accounts[i] = address(uint160(uint256(keccak256(abi.encode(seed, i))) | 1));
            amounts[i] = bound(uint256(keccak256(abi.encode(seed, i, "amount"))), 0, allowed / count);
            total += amounts[i];
            leaves[i] = MerkleTree.leaf(_line(period, accounts[i], amounts[i]));
        }
        _publish(period, MerkleTree.root(leaves), total);
        for (uint256 i = 0; i < count; ++i) {
            bytes32[] memory proof = MerkleTree.proof(leaves, i);
            vm.expectRevert(abi.encodeWithSelector(RewardDistributor.InvalidProof.selector));
            d.claim(period, accounts[i], amounts[i] + 1, proof);
            d.claim(period, accounts[i], amounts[i], proof);
            eq(token.balanceOf(accounts[i]), amounts[i], "paid");
        }
        (,, uint256 claimed) = d.distributionOf(period);
        eq(claimed, total, "all claimed");
        eq(token.balanceOf(address(d)), 0, "distributor empty");
    }
}
