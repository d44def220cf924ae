-- The distribution grid: a tree of transformers and feeders with power limits.
CREATE TABLE grid_nodes (
    id             uuid PRIMARY KEY,
    parent_id      uuid REFERENCES grid_nodes (id) ON DELETE RESTRICT,
    kind           text NOT NULL CHECK (kind IN ('transformer', 'feeder')),
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    import_limit_w bigint NOT NULL CHECK (import_limit_w >= 0),
    export_limit_w bigint NOT NULL CHECK (export_limit_w >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT grid_nodes_not_own_parent CHECK (parent_id IS DISTINCT FROM id),
    -- Lets sites reference (id, 'feeder') so that a site can only hang off a feeder.
    CONSTRAINT grid_nodes_id_kind UNIQUE (id, kind)
);
CREATE INDEX grid_nodes_parent ON grid_nodes (parent_id);

-- A node may not become its own ancestor: the grid stays a tree.
CREATE FUNCTION grid_nodes_no_cycle() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    at    uuid := NEW.parent_id;
    steps integer := 0;
BEGIN
    -- Serialise changes to the tree: two concurrent moves (A under B, B under A) would each
    -- see the old tree and together close a cycle. The walk below runs after the lock, and in
    -- READ COMMITTED each of its statements sees what the other transaction committed.
    PERFORM pg_advisory_xact_lock(hashtext('gridmesh_grid_nodes_tree'));
    WHILE at IS NOT NULL LOOP
        IF at = NEW.id OR steps > 100000 THEN
            RAISE EXCEPTION 'grid node % would become its own ancestor', NEW.id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'grid_nodes_no_cycle';
        END IF;
        SELECT parent_id INTO at FROM grid_nodes WHERE id = at;
        steps := steps + 1;
    END LOOP;
    RETURN NEW;
END
$$;
CREATE TRIGGER grid_nodes_no_cycle
    BEFORE INSERT OR UPDATE OF parent_id ON grid_nodes
    FOR EACH ROW EXECUTE FUNCTION grid_nodes_no_cycle();

-- A household's grid connection point.
CREATE TABLE sites (
    id                      uuid PRIMARY KEY,
    owner_id                uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    feeder_id               uuid NOT NULL,
    feeder_kind             text NOT NULL DEFAULT 'feeder' CHECK (feeder_kind = 'feeder'),
    name                    text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    latitude                double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude               double precision CHECK (longitude BETWEEN -180 AND 180),
    timezone                text NOT NULL DEFAULT 'UTC',
    rated_pv_w              bigint NOT NULL DEFAULT 0 CHECK (rated_pv_w >= 0),
    battery_capacity_wh     bigint CHECK (battery_capacity_wh >= 0),
    battery_max_charge_w    bigint CHECK (battery_max_charge_w >= 0),
    battery_max_discharge_w bigint CHECK (battery_max_discharge_w >= 0),
    grid_import_limit_w     bigint NOT NULL CHECK (grid_import_limit_w >= 0),
    grid_export_limit_w     bigint NOT NULL CHECK (grid_export_limit_w >= 0),
    created_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sites_feeder FOREIGN KEY (feeder_id, feeder_kind)
        REFERENCES grid_nodes (id, kind) ON UPDATE RESTRICT ON DELETE RESTRICT,
    CONSTRAINT sites_location_complete CHECK ((latitude IS NULL) = (longitude IS NULL)),
    CONSTRAINT sites_battery_complete CHECK (
        (battery_capacity_wh IS NULL) = (battery_max_charge_w IS NULL)
        AND (battery_capacity_wh IS NULL) = (battery_max_discharge_w IS NULL))
);
CREATE INDEX sites_owner ON sites (owner_id);
CREATE INDEX sites_feeder_idx ON sites (feeder_id);
