-- Physical devices at a site.
CREATE TABLE devices (
    id            uuid PRIMARY KEY,
    site_id       uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    kind          text NOT NULL
                  CHECK (kind IN ('inverter', 'battery', 'meter', 'ev_charger', 'heat_pump')),
    protocol      text NOT NULL CHECK (protocol IN ('modbus_tcp', 'modbus_rtu', 'mqtt')),
    manufacturer  text CHECK (length(manufacturer) <= 200),
    model         text CHECK (length(model) <= 200),
    serial        text CHECK (length(serial) <= 200),
    rated_power_w bigint CHECK (rated_power_w >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT devices_unique_serial UNIQUE (site_id, kind, serial)
);

-- An installation of gridmesh-agent; it reports for one site.
-- Agents and their keys are never deleted with a site: readings and signatures stay attributable.
CREATE TABLE agents (
    id         uuid PRIMARY KEY,
    site_id    uuid NOT NULL REFERENCES sites (id) ON DELETE RESTRICT,
    name       text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Lets telemetry reference (agent, site) so that a reading names its agent's own site.
    CONSTRAINT agents_id_site UNIQUE (id, site_id)
);
CREATE INDEX agents_site ON agents (site_id);

-- Enrolled ed25519 device keys. A key is never deleted, only revoked, so old signatures stay
-- attributable; an agent has at most one active key (rotation revokes the old one).
CREATE TABLE agent_keys (
    id             uuid PRIMARY KEY,
    agent_id       uuid NOT NULL REFERENCES agents (id) ON DELETE RESTRICT,
    public_key     bytea NOT NULL CHECK (length(public_key) = 32),
    enrolled_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    revoked_reason text CHECK (length(revoked_reason) <= 500),
    CONSTRAINT agent_keys_unique_key UNIQUE (public_key)
);
CREATE UNIQUE INDEX agent_keys_one_active ON agent_keys (agent_id) WHERE revoked_at IS NULL;
