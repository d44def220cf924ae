// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

import {GridToken} from "./GridToken.sol";
import {MerkleProof} from "./MerkleProof.sol";
import {Operated} from "./Operated.sol";

/// @title RewardDistributor
/// @notice Publishes each settlement period's reward distribution as a Merkle root and lets
///         households claim their share. It deploys and is the sole minter of its `GridToken`.
///
///         Emission schedule: a period p (quarter-hours since the Unix epoch) may distribute at
///         most `emissionFor(p)` GRID:
///           - 0 for p < genesisPeriod;
///           - INITIAL_PER_PERIOD >> ((p - genesisPeriod) / HALVING_PERIODS) otherwise, that is
///             100 GRID per period in the first year (35040 quarter-hours), halving every year
///             after, and 0 once the shift reaches 256 (in fact from the 67th year on, as
///             100e18 < 2^67).
///
///         Claims: the tree's lines are abi.encodePacked(uint64 period, address account,
///         uint256 amount), 60 bytes, hashed into leaves and nodes by the `MerkleProof` rule.
contract RewardDistributor is Operated {
    /// @notice The distribution of `period` was already published.
    error AlreadyPublished(uint64 period);
    /// @notice The root was zero.
    error EmptyRoot();
    /// @notice `total` is more than the `allowed` emission of the period.
    error OverEmission(uint256 total, uint256 allowed);
    /// @notice The distribution of `period` has not been published.
    error NotPublished(uint64 period);
    /// @notice `account` has already claimed for `period`.
    error AlreadyClaimed(uint64 period, address account);
    /// @notice The proof does not lead to the period's root.
    error InvalidProof();
    /// @notice Paying `amount` would take more than the `remaining` of the period's total (only
    ///         possible if a published tree's amounts add up to more than its total).
    error OverClaim(uint64 period, uint256 amount, uint256 remaining);

    /// @notice The distribution of `period` was published and `total` GRID minted for it.
    event Published(uint64 indexed period, bytes32 root, uint256 total);
    /// @notice `account` received `amount` GRID from the distribution of `period`.
    event Claimed(uint64 indexed period, address indexed account, uint256 amount);

    /// @notice Most GRID (in wei) a period may distribute in the first halving interval.
    uint256 public constant INITIAL_PER_PERIOD = 100e18;
    /// @notice Periods between halvings: one year of 15-minute periods (365 * 96).
    uint64 public constant HALVING_PERIODS = 35040;
    /// @notice The token's cap: 2 * INITIAL_PER_PERIOD * HALVING_PERIODS = 7,008,000 GRID.
    /// @dev Halving interval k (k = 0, 1, ...) has HALVING_PERIODS periods of at most
    ///      INITIAL_PER_PERIOD >> k each, so the whole schedule emits at most
    ///      HALVING_PERIODS * INITIAL_PER_PERIOD * (1 + 1/2 + 1/4 + ...) < 2 * INITIAL_PER_PERIOD *
    ///      HALVING_PERIODS (the shift rounds down, which only lowers the terms). Every period is
    ///      published once with total <= emissionFor(period), so the cap is never reached by
    ///      the schedule; it is a backstop.
    uint256 public constant CAP = 2 * INITIAL_PER_PERIOD * HALVING_PERIODS;

    /// @notice The first period that emits.
    uint64 public immutable genesisPeriod;
    /// @notice The reward token, minted only by this contract.
    GridToken public immutable token;

    // total <= INITIAL_PER_PERIOD < 2^128, and claimed <= total.
    struct Distribution {
        bytes32 root;
        uint128 total;
        uint128 claimed;
    }

    mapping(uint64 => Distribution) private _distributions;
    mapping(uint64 => mapping(address => bool)) private _claimed;

    /// @param genesisPeriod_ The first period that emits (quarter-hours since the Unix epoch).
    constructor(uint64 genesisPeriod_) {
        genesisPeriod = genesisPeriod_;
        token = new GridToken(CAP, address(this));
    }

    /// @notice The most GRID (in wei) the distribution of `period` may total; see the contract's
    ///         description for the schedule.
    /// @param period The settlement period's index.
    /// @return The period's emission.
    function emissionFor(uint64 period) public view returns (uint256) {
        if (period < genesisPeriod) return 0;
        uint256 halvings = (period - genesisPeriod) / HALVING_PERIODS;
        if (halvings >= 256) return 0;
        return INITIAL_PER_PERIOD >> halvings;
    }

    /// @notice Publishes the distribution of `period` and mints its `total` to this contract.
    ///         Operator only; once per period.
    /// @param period The settlement period's index.
    /// @param root Merkle root over the claim lines; must not be zero.
    /// @param total Sum of the claims in the tree; at most `emissionFor(period)`.
    function publish(uint64 period, bytes32 root, uint256 total) external onlyOperator {
        if (_distributions[period].root != bytes32(0)) revert AlreadyPublished(period);
        if (root == bytes32(0)) revert EmptyRoot();
        uint256 allowed = emissionFor(period);
        if (total > allowed) revert OverEmission(total, allowed);
        // casting to 'uint128' is safe because total <= emissionFor(period) <= INITIAL_PER_PERIOD < 2^128
        // forge-lint: disable-next-line(unsafe-typecast)
        _distributions[period] = Distribution({root: root, total: uint128(total), claimed: 0});
        if (total > 0) token.mint(address(this), total);
        emit Published(period, root, total);
    }

    /// @notice Pays `account` its `amount` from the distribution of `period`. Anyone may call;
    ///         the tokens always go to `account`.
    /// @param period The settlement period's index.
    /// @param account The household's address, as in the tree.
    /// @param amount The amount, as in the tree.
    /// @param proof Sibling hashes from the claim's leaf upwards.
    function claim(uint64 period, address account, uint256 amount, bytes32[] calldata proof) external {
        Distribution storage d = _distributions[period];
        bytes32 root = d.root;
        if (root == bytes32(0)) revert NotPublished(period);
        if (_claimed[period][account]) revert AlreadyClaimed(period, account);
        bytes32 leaf = MerkleProof.leafHash(abi.encodePacked(period, account, amount));
        if (!MerkleProof.verify(proof, root, leaf)) revert InvalidProof();
        uint256 remaining = d.total - d.claimed;
        if (amount > remaining) revert OverClaim(period, amount, remaining);
        _claimed[period][account] = true;
        // casting to 'uint128' is safe because amount <= remaining <= total < 2^128
        // forge-lint: disable-next-line(unsafe-typecast)
        d.claimed += uint128(amount);
        emit Claimed(period, account, amount);
        // Our own token: it returns true or reverts, and this contract holds the unclaimed rest
        // of every total, so the transfer succeeds.
        // forge-lint: disable-next-line(erc20-unchecked-transfer)
        token.transfer(account, amount);
    }

    /// @notice Whether `account` has claimed from the distribution of `period`.
    /// @param period The settlement period's index.
    /// @param account The household's address.
    /// @return True when claimed.
    function isClaimed(uint64 period, address account) external view returns (bool) {
        return _claimed[period][account];
    }

    /// @notice The distribution of `period`; all zero when unpublished.
    /// @param period The settlement period's index.
    /// @return root The Merkle root.
    /// @return total GRID (wei) minted for the period.
    /// @return claimed GRID (wei) claimed so far.
    function distributionOf(uint64 period) external view returns (bytes32 root, uint256 total, uint256 claimed) {
        Distribution storage d = _distributions[period];
        return (d.root, d.total, d.claimed);
    }
}
