// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

import {GridToken} from "../src/GridToken.sol";
import {TestBase} from "./TestBase.sol";

contract GridTokenTest is TestBase {
    GridToken internal t;

    uint256 internal constant CAP = 1_000e18;
    address internal constant ALICE = address(0xA1);
    address internal constant BOB = address(0xB0B);

    function setUp() public {
        t = new GridToken(CAP, address(this));
    }

    function test_metadata() public view {
        isTrue(keccak256(bytes(t.name())) == keccak256("gridmesh reward"), "name");
        isTrue(keccak256(bytes(t.symbol())) == keccak256("GRID"), "symbol");
        eq(t.decimals(), 18, "decimals");
        eq(t.cap(), CAP, "cap");
        eq(t.minter(), address(this), "minter");
        eq(t.totalSupply(), 0, "totalSupply");
    }

    function test_constructor_revertsOnZeroMinter() public {
        vm.expectRevert(abi.encodeWithSelector(GridToken.ZeroAddress.selector));
        new GridToken(CAP, address(0));
    }

    // --- mint -----------------------------------------------------------------------------

    function test_mint() public {
        vm.expectEmit(true, true, true, true, address(t));
        emit GridToken.Transfer(address(0), ALICE, 10e18);
        t.mint(ALICE, 10e18);
        eq(t.balanceOf(ALICE), 10e18, "balance");
        eq(t.totalSupply(), 10e18, "totalSupply");
        t.mint(ALICE, CAP - 10e18);
        eq(t.totalSupply(), CAP, "minted up to the cap");
    }

    function test_mint_revertsForNonMinter() public {
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(GridToken.NotMinter.selector, STRANGER));
        t.mint(STRANGER, 1);
    }

    function test_mint_revertsOnZeroAddress() public {
        vm.expectRevert(abi.encodeWithSelector(GridToken.ZeroAddress.selector));
        t.mint(address(0), 1);
    }

    function test_mint_revertsPastCap() public {
        vm.expectRevert(abi.encodeWithSelector(GridToken.CapExceeded.selector, CAP + 1, CAP));
        t.mint(ALICE, CAP + 1);
        t.mint(ALICE, 600e18);
        vm.expectRevert(abi.encodeWithSelector(GridToken.CapExceeded.selector, 400e18 + 1, 400e18));
        t.mint(ALICE, 400e18 + 1);
    }

    function testFuzz_mint_neverPastCap(uint256 first, uint256 second) public {
        first = bound(first, 0, CAP);
        t.mint(ALICE, first);
        uint256 remaining = CAP - first;
        if (second > remaining) {
            vm.expectRevert(abi.encodeWithSelector(GridToken.CapExceeded.selector, second, remaining));
            t.mint(BOB, second);
        } else {
            t.mint(BOB, second);
            eq(t.totalSupply(), first + second, "supply");
        }
        isTrue(t.totalSupply() <= CAP, "supply within cap");
    }

    // --- transfer -------------------------------------------------------------------------

    function test_transfer() public {
        t.mint(ALICE, 10e18);
        vm.expectEmit(true, true, true, true, address(t));
        emit GridToken.Transfer(ALICE, BOB, 4e18);
        vm.prank(ALICE);
        isTrue(t.transfer(BOB, 4e18), "returns true");
        eq(t.balanceOf(ALICE), 6e18, "alice");
        eq(t.balanceOf(BOB), 4e18, "bob");
        eq(t.totalSupply(), 10e18, "supply unchanged");
    }

    function test_transfer_toSelf() public {
        t.mint(ALICE, 10e18);
        vm.prank(ALICE);
        t.transfer(ALICE, 10e18);
        eq(t.balanceOf(ALICE), 10e18, "unchanged");
    }

    function test_transfer_revertsOnInsufficientBalance() public {
        t.mint(ALICE, 1e18);
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(GridToken.InsufficientBalance.selector, ALICE, 1e18, 1e18 + 1));
        t.transfer(BOB, 1e18 + 1);
    }

    function test_transfer_revertsOnZeroAddress() public {
        t.mint(ALICE, 1e18);
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(GridToken.ZeroAddress.selector));
        t.transfer(address(0), 1);
    }

    function testFuzz_transfer_conservesSupply(uint256 minted, uint256 sent) public {
        minted = bound(minted, 0, CAP);
        sent = bound(sent, 0, minted);
        t.mint(ALICE, minted);
        vm.prank(ALICE);
        t.transfer(BOB, sent);
        eq(t.balanceOf(ALICE) + t.balanceOf(BOB), minted, "conserved");
        eq(t.balanceOf(BOB), sent, "bob");
    }

    // --- approve / allowance / transferFrom -----------------------------------------------

    function test_approve() public {
        vm.expectEmit(true, true, true, true, address(t));
        emit GridToken.Approval(ALICE, BOB, 5e18);
        vm.prank(ALICE);
        isTrue(t.approve(BOB, 5e18), "returns true");
        eq(t.allowance(ALICE, BOB), 5e18, "allowance");
        vm.prank(ALICE);
        t.approve(BOB, 1e18);
        eq(t.allowance(ALICE, BOB), 1e18, "replaced, not added");
    }

    function test_approve_revertsOnZeroAddress() public {
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(GridToken.ZeroAddress.selector));
        t.approve(address(0), 1);
    }

    function test_transferFrom() public {
        t.mint(ALICE, 10e18);
        vm.prank(ALICE);
        t.approve(BOB, 6e18);
        vm.expectEmit(true, true, true, true, address(t));
        emit GridToken.Transfer(ALICE, STRANGER, 4e18);
        vm.prank(BOB);
        isTrue(t.transferFrom(ALICE, STRANGER, 4e18), "returns true");
        eq(t.balanceOf(ALICE), 6e18, "alice");
        eq(t.balanceOf(STRANGER), 4e18, "receiver");
        eq(t.allowance(ALICE, BOB), 2e18, "allowance spent");
    }

    function test_transferFrom_unlimitedAllowanceIsNotSpent() public {
        t.mint(ALICE, 10e18);
        vm.prank(ALICE);
        t.approve(BOB, type(uint256).max);
        vm.prank(BOB);
        t.transferFrom(ALICE, BOB, 10e18);
        eq(t.allowance(ALICE, BOB), type(uint256).max, "unlimited stays");
    }

    function test_transferFrom_revertsOnInsufficientAllowance() public {
        t.mint(ALICE, 10e18);
        vm.prank(ALICE);
        t.approve(BOB, 1e18);
        vm.prank(BOB);
        vm.expectRevert(abi.encodeWithSelector(GridToken.InsufficientAllowance.selector, BOB, 1e18, 2e18));
        t.transferFrom(ALICE, BOB, 2e18);
    }

    function test_transferFrom_revertsOnInsufficientBalance() public {
        t.mint(ALICE, 1e18);
        vm.prank(ALICE);
        t.approve(BOB, 5e18);
        vm.prank(BOB);
        vm.expectRevert(abi.encodeWithSelector(GridToken.InsufficientBalance.selector, ALICE, 1e18, 2e18));
        t.transferFrom(ALICE, BOB, 2e18);
    }

    function test_transferFrom_revertsOnZeroAddress() public {
        t.mint(ALICE, 1e18);
        vm.prank(ALICE);
        t.approve(BOB, 1e18);
        vm.prank(BOB);
        vm.expectRevert(abi.encodeWithSelector(GridToken.ZeroAddress.selector));
        t.transferFrom(ALICE, address(0), 1);
    }
}
