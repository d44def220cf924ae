// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

import {Operated} from "./Operated.sol";

/// @title MeterRegistry
/// @notice Public register of the ed25519 keys with which home agents sign their readings. The
///         operator registers and revokes; anyone reads. An agent has at most one active key;
///         a revoked agent may be registered again with a new key (rotation). A key, once
///         registered, is never accepted again, for any agent.
contract MeterRegistry is Operated {
    /// @notice The agent already has an active key; revoke it first.
    error AgentActive(bytes16 agent);
    /// @notice The key was registered before (keys are never reused).
    error KeyInUse(bytes32 publicKey);
    /// @notice The key was zero.
    error ZeroKey();
    /// @notice The agent was never registered.
    error UnknownAgent(bytes16 agent);
    /// @notice The agent's key is already revoked.
    error NotActive(bytes16 agent);

    /// @notice `agent` of `site` now signs with `publicKey`.
    event Registered(bytes16 indexed agent, bytes16 indexed site, bytes32 publicKey);
    /// @notice `agent`'s key `publicKey` is no longer valid.
    event Revoked(bytes16 indexed agent, bytes32 publicKey);

    // The latest registration of an agent. Second slot: 128 + 48 + 48 + 8 bits.
    struct Agent {
        bytes32 publicKey;
        bytes16 site;
        uint48 registeredAt;
        uint48 revokedAt;
        bool active;
    }

    // Every key ever registered, with the agent it was registered for.
    struct KeyRecord {
        bytes16 agent;
        bool used;
    }

    mapping(bytes16 => Agent) private _agents;
    mapping(bytes32 => KeyRecord) private _keys;

    /// @notice Registers `publicKey` as `agent`'s signing key. Operator only.
    /// @param agent The agent's id (a UUID's 16 bytes).
    /// @param site The id of the site the agent belongs to.
    /// @param publicKey The agent's ed25519 public key; not zero, never registered before.
    function register(bytes16 agent, bytes16 site, bytes32 publicKey) external onlyOperator {
        if (publicKey == bytes32(0)) revert ZeroKey();
        if (_agents[agent].active) revert AgentActive(agent);
        if (_keys[publicKey].used) revert KeyInUse(publicKey);
        _keys[publicKey] = KeyRecord({agent: agent, used: true});
        _agents[agent] = Agent({
            publicKey: publicKey, site: site, registeredAt: uint48(block.timestamp), revokedAt: 0, active: true
        });
        emit Registered(agent, site, publicKey);
    }

    /// @notice Revokes `agent`'s active key. Operator only. The key stays spent.
    /// @param agent The agent's id.
    function revoke(bytes16 agent) external onlyOperator {
        Agent storage a = _agents[agent];
        if (a.publicKey == bytes32(0)) revert UnknownAgent(agent);
        if (!a.active) revert NotActive(agent);
        a.active = false;
        a.revokedAt = uint48(block.timestamp);
        emit Revoked(agent, a.publicKey);
    }

    /// @notice The agent's latest registration; all zero for an unknown agent.
    /// @param agent The agent's id.
    /// @return publicKey The latest key (revoked or not).
    /// @return site The site it was registered for.
    /// @return registeredAt Block timestamp of the registration.
    /// @return revokedAt Block timestamp of the revocation, 0 while active.
    function keyOf(bytes16 agent)
        external
        view
        returns (bytes32 publicKey, bytes16 site, uint64 registeredAt, uint64 revokedAt)
    {
        Agent storage a = _agents[agent];
        return (a.publicKey, a.site, a.registeredAt, a.revokedAt);
    }

    /// @notice Whether `agent` has an active key.
    /// @param agent The agent's id.
    /// @return True when the agent's latest key is not revoked.
    function isActive(bytes16 agent) external view returns (bool) {
        return _agents[agent].active;
    }

    /// @notice The agent `publicKey` was registered for (even if since revoked); zero if never.
    /// @param publicKey An ed25519 public key.
    /// @return The agent's id.
    function agentOfKey(bytes32 publicKey) external view returns (bytes16) {
        return _keys[publicKey].agent;
    }
}
