-- Readings, one row per (agent, sequence number), partitioned by measurement day (UTC).
--
-- The primary key makes a replayed batch a no-op (INSERT .. ON CONFLICT DO NOTHING). PostgreSQL
-- requires the partition key in every unique index of a partitioned table, so the key is
-- (agent_id, seq, measured_at): a replay carries the same timestamp because the agent resends
-- the reading it stored. A sequence number reused with another timestamp is not caught by this
-- key; ingest tracks each agent's committed sequence ranges and refuses such a reuse.
CREATE TABLE telemetry (
    agent_id              uuid NOT NULL,
    seq                   bigint NOT NULL CHECK (seq >= 0),
    site_id               uuid NOT NULL,
    measured_at           timestamptz NOT NULL,
    received_at           timestamptz NOT NULL DEFAULT now(),
    grid_power_w          bigint,
    -- May be slightly negative: inverters draw a few watts in standby.
    pv_power_w            bigint,
    battery_power_w       bigint,
    battery_soc_bp        smallint CHECK (battery_soc_bp BETWEEN 0 AND 10000),
    grid_import_wh        bigint CHECK (grid_import_wh >= 0),
    grid_export_wh        bigint CHECK (grid_export_wh >= 0),
    pv_energy_wh          bigint CHECK (pv_energy_wh >= 0),
    battery_charged_wh    bigint CHECK (battery_charged_wh >= 0),
    battery_discharged_wh bigint CHECK (battery_discharged_wh >= 0),
    -- Plausibility flags set by ingest (bit set; 0 = none). Flagged rows stay, marked.
    flags                 integer NOT NULL DEFAULT 0,
    CONSTRAINT telemetry_pkey PRIMARY KEY (agent_id, seq, measured_at),
    -- One check covers both "unknown agent" and "agent reporting for another site's meter".
    CONSTRAINT telemetry_agent_site FOREIGN KEY (agent_id, site_id) REFERENCES agents (id, site_id)
) PARTITION BY RANGE (measured_at);

-- "One site's day" and "latest reading of a site".
CREATE INDEX telemetry_site_time ON telemetry (site_id, measured_at DESC);

-- Creates the daily partitions covering [first_day, first_day + days), UTC, if missing.
-- Returns how many were created. Safe to call concurrently from several processes.
CREATE FUNCTION gridmesh_ensure_telemetry_partitions(first_day date, days integer)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d       date;
    part    text;
    created integer := 0;
BEGIN
    IF days < 0 OR days > 3660 THEN
        RAISE EXCEPTION 'days must be between 0 and 3660, got %', days
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('gridmesh_telemetry_partitions'));
    FOR i IN 0 .. days - 1 LOOP
        d := first_day + i;
        part := 'telemetry_' || to_char(d, 'YYYYMMDD');
        IF to_regclass(part) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF telemetry FOR VALUES FROM (%L) TO (%L)',
                part, d::text || ' 00:00:00+00', (d + 1)::text || ' 00:00:00+00');
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END
$$;
