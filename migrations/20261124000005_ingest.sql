-- Ingest bookkeeping: which sequence numbers each agent has delivered (gaps are the holes),
-- the latest reading of every site, and 15-minute energy per site maintained incrementally.

-- Committed sequence numbers per agent as a multirange: [0,100) + [105,200) means 100..104 are
-- missing. Ingest adds each committed batch; late data closes the holes by itself.
CREATE TABLE agent_sequences (
    agent_id   uuid PRIMARY KEY REFERENCES agents (id) ON DELETE RESTRICT,
    ranges     int8multirange NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The most recent reading (by measurement time) of each site, kept by ingest so that "latest
-- reading of every site" reads one row per site instead of searching the telemetry partitions.
CREATE TABLE site_latest (
    site_id               uuid PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
    agent_id              uuid NOT NULL,
    seq                   bigint NOT NULL,
    measured_at           timestamptz NOT NULL,
    received_at           timestamptz NOT NULL,
    grid_power_w          bigint,
    pv_power_w            bigint,
    battery_power_w       bigint,
    battery_soc_bp        smallint,
    grid_import_wh        bigint,
    grid_export_wh        bigint,
    pv_energy_wh          bigint,
    battery_charged_wh    bigint,
    battery_discharged_wh bigint,
    flags                 integer NOT NULL
);

-- Per site and 15-minute period: the first and last reading's counters in the period. The energy
-- of period P is last(P) - last(P-1) for each counter (see site_energy_15min), so it is exact in
-- integer Wh, independent of the order readings arrive in, and corrected by late data: a late
-- reading can only move a period's first or last point (ordered by time, then sequence number). `flags` ORs the flags of every reading
-- in the period; `flagged` counts flagged readings. Settlement skips periods with unresolved
-- flags (resolved_at is set when an operator has reviewed them).
CREATE TABLE site_period_counters (
    site_id                     uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    period_start                timestamptz NOT NULL
        CHECK (extract(epoch FROM period_start)::bigint % 900 = 0),
    readings                    integer NOT NULL CHECK (readings > 0),
    flagged                     integer NOT NULL DEFAULT 0 CHECK (flagged >= 0),
    flags                       integer NOT NULL DEFAULT 0,
    resolved_at                 timestamptz,
    first_at                    timestamptz NOT NULL,
    first_seq                   bigint NOT NULL,
    last_at                     timestamptz NOT NULL,
    last_seq                    bigint NOT NULL,
    first_grid_import_wh        bigint,
    first_grid_export_wh        bigint,
    first_pv_energy_wh          bigint,
    first_battery_charged_wh    bigint,
    first_battery_discharged_wh bigint,
    last_grid_import_wh         bigint,
    last_grid_export_wh         bigint,
    last_pv_energy_wh           bigint,
    last_battery_charged_wh     bigint,
    last_battery_discharged_wh  bigint,
    PRIMARY KEY (site_id, period_start)
);

-- Energy per site and period in Wh. A counter that ran backwards gives a negative delta here;
-- such periods carry the counter flag and settlement does not use them until resolved. The
-- energy of P starts from the last point of P-1, so P shows P-1's flags too, and counts as
-- resolved only when both are reviewed.
CREATE VIEW site_energy_15min AS
SELECT
    c.site_id,
    c.period_start,
    c.readings,
    c.flagged,
    c.flags | coalesce(prev.flags, 0) AS flags,
    CASE WHEN coalesce(prev.flags, 0) <> 0 AND prev.resolved_at IS NULL THEN NULL
         ELSE c.resolved_at END AS resolved_at,
    c.last_grid_import_wh - coalesce(prev.last_grid_import_wh, c.first_grid_import_wh)
        AS imported_wh,
    c.last_grid_export_wh - coalesce(prev.last_grid_export_wh, c.first_grid_export_wh)
        AS exported_wh,
    c.last_pv_energy_wh - coalesce(prev.last_pv_energy_wh, c.first_pv_energy_wh)
        AS pv_wh,
    c.last_battery_charged_wh - coalesce(prev.last_battery_charged_wh, c.first_battery_charged_wh)
        AS battery_in_wh,
    c.last_battery_discharged_wh
        - coalesce(prev.last_battery_discharged_wh, c.first_battery_discharged_wh)
        AS battery_out_wh,
    -- True when the previous period had data, so the delta covers the whole period.
    prev.site_id IS NOT NULL AS complete_start
FROM site_period_counters c
LEFT JOIN site_period_counters prev
    ON prev.site_id = c.site_id AND prev.period_start = c.period_start - interval '15 minutes';

-- Drops daily telemetry partitions that end on or before `before_day` (UTC); returns how many.
CREATE FUNCTION gridmesh_drop_telemetry_partitions_before(before_day date)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    part    record;
    dropped integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('gridmesh_telemetry_partitions'));
    FOR part IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = 'telemetry' AND c.relname ~ '^telemetry_[0-9]{8}$'
          AND to_date(substr(c.relname, 11), 'YYYYMMDD') < before_day
    LOOP
        EXECUTE format('DROP TABLE %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;
