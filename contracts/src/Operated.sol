// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

/// @title Operated
/// @notice An owner (the deployer, transferable) who appoints operators; contracts built on it
///         restrict their writes to operators. The owner is not an operator unless appointed.
abstract contract Operated {
    /// @notice The caller is not the owner.
    error NotOwner(address caller);
    /// @notice The caller is not an operator.
    error NotOperator(address caller);
    /// @notice An address argument was zero.
    error ZeroAddress();

    /// @notice Ownership moved from `previousOwner` to `newOwner` (also at deployment, from 0).
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    /// @notice `operator` was appointed (`allowed`) or dismissed.
    event OperatorSet(address indexed operator, bool allowed);

    /// @notice The owner: appoints operators and may hand ownership on.
    address public owner;

    mapping(address => bool) private _operators;

    constructor() {
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    modifier onlyOperator() {
        if (!_operators[msg.sender]) revert NotOperator(msg.sender);
        _;
    }

    /// @notice Appoints (`allowed` = true) or dismisses an operator. Owner only.
    /// @param who The operator's address; must not be zero.
    /// @param allowed Whether `who` may act as operator from now on.
    function setOperator(address who, bool allowed) external onlyOwner {
        if (who == address(0)) revert ZeroAddress();
        _operators[who] = allowed;
        emit OperatorSet(who, allowed);
    }

    /// @notice Whether `who` is currently an operator.
    /// @param who The address to look up.
    /// @return True when `who` is an operator.
    function isOperator(address who) external view returns (bool) {
        return _operators[who];
    }

    /// @notice Hands ownership to `newOwner`. Owner only. Operators are left as they are.
    /// @param newOwner The new owner; must not be zero.
    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }
}
