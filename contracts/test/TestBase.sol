// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

/// @notice The forge cheat codes these tests use, declared by hand (no forge-std).
interface Vm {
    function prank(address) external;
    function startPrank(address) external;
    function stopPrank() external;
    function expectRevert(bytes calldata) external;
    function expectRevert(bytes4) external;
    function expectRevert() external;
    function warp(uint256) external;
    function roll(uint256) external;
    function expectEmit(bool, bool, bool, bool) external;
    function expectEmit(bool, bool, bool, bool, address) external;
    function assume(bool) external;
}

/// @notice Shared base: the cheat-code handle, a few addresses and require-based assertions.
abstract contract TestBase {
    Vm internal constant vm = Vm(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);

    address internal constant OPERATOR = address(0xA11CE);
    address internal constant STRANGER = address(0xBAD);

    function eq(uint256 a, uint256 b, string memory what) internal pure {
        require(a == b, what);
    }

    function eq(bytes32 a, bytes32 b, string memory what) internal pure {
        require(a == b, what);
    }

    function eq(address a, address b, string memory what) internal pure {
        require(a == b, what);
    }

    function isTrue(bool v, string memory what) internal pure {
        require(v, what);
    }

    function isFalse(bool v, string memory what) internal pure {
        require(!v, what);
    }

    /// @dev Returns `x` mapped into [lo, hi].
    function bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        require(lo <= hi, "bound: lo > hi");
        if (lo == 0 && hi == type(uint256).max) return x;
        return lo + (x % (hi - lo + 1));
    }
}
