-- A node's limits for a while (a seasonal limit, a temporary outage limit), replacing its own
-- import limit, export limit or both from `valid_from` until `valid_until`. The dispatch plan
-- and the market use the limits in force at each step and period.
CREATE TABLE grid_limit_windows (
    id             uuid PRIMARY KEY,
    node_id        uuid NOT NULL REFERENCES grid_nodes (id) ON DELETE CASCADE,
    valid_from     timestamptz NOT NULL,
    valid_until    timestamptz NOT NULL,
    import_limit_w bigint CHECK (import_limit_w >= 0),
    export_limit_w bigint CHECK (export_limit_w >= 0),
    reason         text NOT NULL DEFAULT '' CHECK (length(reason) <= 500),
    created_by     uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT grid_limit_windows_span CHECK (valid_until > valid_from),
    CONSTRAINT grid_limit_windows_some_limit CHECK (import_limit_w IS NOT NULL OR export_limit_w IS NOT NULL)
);
CREATE INDEX grid_limit_windows_time ON grid_limit_windows (valid_until, valid_from);
