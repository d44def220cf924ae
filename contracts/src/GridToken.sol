// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

/// @title GridToken
/// @notice gridmesh's reward token: a minimal ERC-20 ("gridmesh reward", GRID, 18 decimals) with
///         a fixed cap and a single minter, both set at construction.
/// @dev An allowance of type(uint256).max is treated as unlimited and is not decreased by
///      `transferFrom`. `transferFrom` emits only `Transfer`.
contract GridToken {
    /// @notice Minting `requested` would go past the cap; `remaining` can still be minted.
    error CapExceeded(uint256 requested, uint256 remaining);
    /// @notice `account` holds `balance`, less than the `needed` amount.
    error InsufficientBalance(address account, uint256 balance, uint256 needed);
    /// @notice `spender` may move `allowance` for the owner, less than the `needed` amount.
    error InsufficientAllowance(address spender, uint256 allowance, uint256 needed);
    /// @notice The caller is not the minter.
    error NotMinter(address caller);
    /// @notice An address argument was zero.
    error ZeroAddress();

    /// @notice ERC-20: `value` tokens moved from `from` to `to` (from 0 when minted).
    event Transfer(address indexed from, address indexed to, uint256 value);
    /// @notice ERC-20: `spender` may now move `value` of `owner`'s tokens.
    event Approval(address indexed owner, address indexed spender, uint256 value);

    /// @notice ERC-20 token name.
    string public constant name = "gridmesh reward";
    /// @notice ERC-20 token symbol.
    string public constant symbol = "GRID";
    /// @notice ERC-20 decimals.
    uint8 public constant decimals = 18;

    /// @notice The most that can ever be minted.
    uint256 public immutable cap;
    /// @notice The only address that may mint.
    address public immutable minter;

    /// @notice ERC-20: tokens in existence.
    uint256 public totalSupply;
    /// @notice ERC-20: tokens held by an account.
    mapping(address => uint256) public balanceOf;
    /// @notice ERC-20: what a spender may still move for an owner.
    mapping(address => mapping(address => uint256)) public allowance;

    /// @param cap_ The most that can ever be minted.
    /// @param minter_ The only address that may mint; must not be zero.
    constructor(uint256 cap_, address minter_) {
        if (minter_ == address(0)) revert ZeroAddress();
        cap = cap_;
        minter = minter_;
    }

    /// @notice Creates `amount` tokens for `to`. Minter only; never past the cap.
    /// @param to The receiver; must not be zero.
    /// @param amount The amount to create.
    function mint(address to, uint256 amount) external {
        if (msg.sender != minter) revert NotMinter(msg.sender);
        if (to == address(0)) revert ZeroAddress();
        uint256 remaining = cap - totalSupply;
        if (amount > remaining) revert CapExceeded(amount, remaining);
        unchecked {
            // totalSupply + amount <= cap, so neither sum overflows.
            totalSupply += amount;
            balanceOf[to] += amount;
        }
        emit Transfer(address(0), to, amount);
    }

    /// @notice ERC-20: moves `amount` of the caller's tokens to `to`.
    /// @param to The receiver; must not be zero.
    /// @param amount The amount to move.
    /// @return Always true (failures revert).
    function transfer(address to, uint256 amount) external returns (bool) {
        _transfer(msg.sender, to, amount);
        return true;
    }

    /// @notice ERC-20: lets `spender` move up to `amount` of the caller's tokens.
    /// @param spender The spender; must not be zero.
    /// @param amount The new allowance (replaces the old one).
    /// @return Always true (failures revert).
    function approve(address spender, uint256 amount) external returns (bool) {
        if (spender == address(0)) revert ZeroAddress();
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    /// @notice ERC-20: moves `amount` of `from`'s tokens to `to`, spending the caller's allowance.
    /// @param from The owner of the tokens.
    /// @param to The receiver; must not be zero.
    /// @param amount The amount to move.
    /// @return Always true (failures revert).
    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            if (allowed < amount) revert InsufficientAllowance(msg.sender, allowed, amount);
            unchecked {
                allowance[from][msg.sender] = allowed - amount;
            }
        }
        _transfer(from, to, amount);
        return true;
    }

    function _transfer(address from, address to, uint256 amount) private {
        if (to == address(0)) revert ZeroAddress();
        uint256 balance = balanceOf[from];
        if (balance < amount) revert InsufficientBalance(from, balance, amount);
        unchecked {
            // The sum of all balances is totalSupply, so the receiver's cannot overflow.
            balanceOf[from] = balance - amount;
            balanceOf[to] += amount;
        }
        emit Transfer(from, to, amount);
    }
}
