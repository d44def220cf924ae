// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

import {MeterRegistry} from "../src/MeterRegistry.sol";
import {Operated} from "../src/Operated.sol";
import {TestBase} from "./TestBase.sol";

contract MeterRegistryTest is TestBase {
    MeterRegistry internal r;

    bytes16 internal constant AGENT = bytes16(0x0192f0c1a2b34c5d8e9fa0b1c2d3e4f5);
    bytes16 internal constant SITE = bytes16(0x0192f0c1000070008000aaaabbbbcccc);
    bytes32 internal constant KEY1 = keccak256("ed25519 key 1");
    bytes32 internal constant KEY2 = keccak256("ed25519 key 2");

    function setUp() public {
        r = new MeterRegistry();
        r.setOperator(OPERATOR, true);
        vm.warp(1_760_000_000);
    }

    function _register(bytes16 agent, bytes16 site, bytes32 key) internal {
        vm.prank(OPERATOR);
        r.register(agent, site, key);
    }

    function test_ownerAndOperators() public {
        eq(r.owner(), address(this), "owner");
        isTrue(r.isOperator(OPERATOR), "operator");
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOwner.selector, STRANGER));
        r.setOperator(STRANGER, true);
        vm.expectRevert(abi.encodeWithSelector(Operated.ZeroAddress.selector));
        r.setOperator(address(0), true);
        r.transferOwnership(STRANGER);
        eq(r.owner(), STRANGER, "transferred");
    }

    // --- register -------------------------------------------------------------------------

    function test_register_storesAndEmits() public {
        vm.expectEmit(true, true, true, true, address(r));
        emit MeterRegistry.Registered(AGENT, SITE, KEY1);
        _register(AGENT, SITE, KEY1);
        (bytes32 key, bytes16 site, uint64 registeredAt, uint64 revokedAt) = r.keyOf(AGENT);
        eq(key, KEY1, "key");
        isTrue(site == SITE, "site");
        eq(registeredAt, 1_760_000_000, "registeredAt");
        eq(revokedAt, 0, "revokedAt");
        isTrue(r.isActive(AGENT), "active");
        isTrue(r.agentOfKey(KEY1) == AGENT, "agentOfKey");
    }

    function test_register_revertsForNonOperator() public {
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOperator.selector, STRANGER));
        r.register(AGENT, SITE, KEY1);
    }

    function test_register_revertsOnZeroKey() public {
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(MeterRegistry.ZeroKey.selector));
        r.register(AGENT, SITE, bytes32(0));
    }

    function test_register_revertsWhenAgentActive() public {
        _register(AGENT, SITE, KEY1);
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(MeterRegistry.AgentActive.selector, AGENT));
        r.register(AGENT, SITE, KEY2);
    }

    function test_register_revertsWhenKeyInUse() public {
        _register(AGENT, SITE, KEY1);
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(MeterRegistry.KeyInUse.selector, KEY1));
        r.register(bytes16(uint128(2)), SITE, KEY1);
    }

    function test_register_revokedKeyIsNeverReused() public {
        _register(AGENT, SITE, KEY1);
        vm.prank(OPERATOR);
        r.revoke(AGENT);
        // Not by the same agent ...
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(MeterRegistry.KeyInUse.selector, KEY1));
        r.register(AGENT, SITE, KEY1);
        // ... nor by another.
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(MeterRegistry.KeyInUse.selector, KEY1));
        r.register(bytes16(uint128(2)), SITE, KEY1);
    }

    function test_register_rotationAfterRevoke() public {
        _register(AGENT, SITE, KEY1);
        vm.warp(1_760_000_900);
        vm.prank(OPERATOR);
        r.revoke(AGENT);
        vm.warp(1_760_001_800);
        bytes16 newSite = bytes16(uint128(7));
        vm.expectEmit(true, true, true, true, address(r));
        emit MeterRegistry.Registered(AGENT, newSite, KEY2);
        _register(AGENT, newSite, KEY2);
        (bytes32 key, bytes16 site, uint64 registeredAt, uint64 revokedAt) = r.keyOf(AGENT);
        eq(key, KEY2, "new key");
        isTrue(site == newSite, "new site");
        eq(registeredAt, 1_760_001_800, "registeredAt");
        eq(revokedAt, 0, "revokedAt cleared");
        isTrue(r.isActive(AGENT), "active again");
        isTrue(r.agentOfKey(KEY1) == AGENT, "old key still maps to the agent");
        isTrue(r.agentOfKey(KEY2) == AGENT, "new key maps to the agent");
    }

    // --- revoke ---------------------------------------------------------------------------

    function test_revoke_storesAndEmits() public {
        _register(AGENT, SITE, KEY1);
        vm.warp(1_760_000_900);
        vm.expectEmit(true, true, true, true, address(r));
        emit MeterRegistry.Revoked(AGENT, KEY1);
        vm.prank(OPERATOR);
        r.revoke(AGENT);
        (bytes32 key, bytes16 site, uint64 registeredAt, uint64 revokedAt) = r.keyOf(AGENT);
        eq(key, KEY1, "key kept");
        isTrue(site == SITE, "site kept");
        eq(registeredAt, 1_760_000_000, "registeredAt");
        eq(revokedAt, 1_760_000_900, "revokedAt");
        isFalse(r.isActive(AGENT), "inactive");
        isTrue(r.agentOfKey(KEY1) == AGENT, "agentOfKey kept");
    }

    function test_revoke_revertsForNonOperator() public {
        _register(AGENT, SITE, KEY1);
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOperator.selector, STRANGER));
        r.revoke(AGENT);
    }

    function test_revoke_revertsForUnknownAgent() public {
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(MeterRegistry.UnknownAgent.selector, AGENT));
        r.revoke(AGENT);
    }

    function test_revoke_revertsWhenNotActive() public {
        _register(AGENT, SITE, KEY1);
        vm.startPrank(OPERATOR);
        r.revoke(AGENT);
        vm.expectRevert(abi.encodeWithSelector(MeterRegistry.NotActive.selector, AGENT));
        r.revoke(AGENT);
        vm.stopPrank();
    }

    // --- views ----------------------------------------------------------------------------

    function test_views_unknownAgentAndKey() public view {
        (bytes32 key, bytes16 site, uint64 registeredAt, uint64 revokedAt) = r.keyOf(AGENT);
        isTrue(key == 0 && site == 0 && registeredAt == 0 && revokedAt == 0, "all zero");
        isFalse(r.isActive(AGENT), "inactive");
        isTrue(r.agentOfKey(KEY1) == bytes16(0), "no agent");
    }

    /// Any sequence of register / rotate keeps exactly one active key per agent, and every key
    /// ever used maps back to its agent.
    function testFuzz_rotations(bytes16 agent, bytes16 site, bytes32 seed, uint8 roundsRaw) public {
        uint256 rounds = bound(roundsRaw, 1, 8);
        for (uint256 i = 0; i < rounds; ++i) {
            bytes32 key = keccak256(abi.encode(seed, i));
            _register(agent, site, key);
            isTrue(r.isActive(agent), "active after register");
            (bytes32 current,,,) = r.keyOf(agent);
            eq(current, key, "current key");
            vm.prank(OPERATOR);
            r.revoke(agent);
            isFalse(r.isActive(agent), "inactive after revoke");
        }
        for (uint256 i = 0; i < rounds; ++i) {
            isTrue(r.agentOfKey(keccak256(abi.encode(seed, i))) == agent, "key maps to agent");
        }
    }
}
