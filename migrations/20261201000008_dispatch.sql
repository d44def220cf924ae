-- Grid balancing: utility requests, the optimizer's plans, and the setpoints sent from them
-- with the agents' answers.

-- A utility's request on a grid node's net power (import positive), or on the whole area's
-- when node_id is NULL, over a window. Deviation costs price_minor_per_kwh per kWh.
CREATE TABLE utility_requests (
    id                  uuid PRIMARY KEY,
    node_id             uuid REFERENCES grid_nodes (id) ON DELETE RESTRICT,
    kind                text NOT NULL CHECK (kind IN ('target', 'cap', 'floor')),
    power_w             bigint NOT NULL,
    starts_at           timestamptz NOT NULL,
    ends_at             timestamptz NOT NULL,
    price_minor_per_kwh bigint NOT NULL CHECK (price_minor_per_kwh >= 0),
    created_by          uuid REFERENCES users (id) ON DELETE RESTRICT,
    created_at          timestamptz NOT NULL DEFAULT now(),
    cancelled_at        timestamptz,
    CONSTRAINT utility_requests_window CHECK (ends_at > starts_at)
);
CREATE INDEX utility_requests_active ON utility_requests (ends_at) WHERE cancelled_at IS NULL;

-- One solve: when, over which horizon, the hash of its inputs, the result.
CREATE TABLE dispatch_plans (
    id            uuid PRIMARY KEY,
    created_at    timestamptz NOT NULL DEFAULT now(),
    horizon_start timestamptz NOT NULL,
    steps         integer NOT NULL CHECK (steps > 0),
    step_seconds  integer NOT NULL CHECK (step_seconds > 0),
    trigger       text NOT NULL,
    input_hash    bytea NOT NULL CHECK (length(input_hash) = 32),
    objective     double precision NOT NULL,
    solve_seconds double precision NOT NULL,
    summary       jsonb NOT NULL,
    plan          jsonb NOT NULL
);
CREATE INDEX dispatch_plans_recent ON dispatch_plans (created_at DESC);

-- A setpoint sent to a site's agent from a plan, and the agent's answer.
CREATE TABLE dispatch_setpoints (
    command_id               uuid PRIMARY KEY,
    plan_id                  uuid NOT NULL REFERENCES dispatch_plans (id) ON DELETE CASCADE,
    site_id                  uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    valid_from               timestamptz NOT NULL,
    valid_until              timestamptz NOT NULL,
    battery_power_w          bigint,
    pv_limit_w               bigint,
    -- What the plan expects at the grid connection meanwhile (import positive), to compare.
    planned_grid_w           bigint NOT NULL,
    sent_at                  timestamptz NOT NULL DEFAULT now(),
    outcome                  text CHECK (outcome IN ('applied', 'clamped', 'refused', 'expired')),
    applied_battery_power_w  bigint,
    applied_pv_limit_w       bigint,
    reason                   text,
    answered_at              timestamptz
);
CREATE INDEX dispatch_setpoints_site ON dispatch_setpoints (site_id, valid_from DESC);
