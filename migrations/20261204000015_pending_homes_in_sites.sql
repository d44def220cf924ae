-- A pending home is a site without a feeder: its owner can enrol its agent and its readings are
-- stored while it waits for a utility or an operator to assign it. Planning, trading and
-- settlement take only assigned homes, and settlement only periods from `assigned_at` on.
ALTER TABLE sites ALTER COLUMN feeder_id DROP NOT NULL;
ALTER TABLE sites ADD COLUMN assigned_at timestamptz;
UPDATE sites SET assigned_at = created_at;
ALTER TABLE sites ADD CONSTRAINT sites_assignment CHECK ((feeder_id IS NULL) = (assigned_at IS NULL));

-- The PV array's orientation when the owner knows it: azimuth in degrees clockwise from north
-- (180 faces south), tilt in degrees from horizontal.
ALTER TABLE sites ADD COLUMN pv_azimuth_deg smallint
    CONSTRAINT sites_pv_azimuth CHECK (pv_azimuth_deg BETWEEN 0 AND 359);
ALTER TABLE sites ADD COLUMN pv_tilt_deg smallint
    CONSTRAINT sites_pv_tilt CHECK (pv_tilt_deg BETWEEN 0 AND 90);

INSERT INTO sites (id, owner_id, feeder_id, assigned_at, name, address, latitude, longitude, rated_pv_w,
    battery_capacity_wh, battery_max_charge_w, battery_max_discharge_w, grid_import_limit_w,
    grid_export_limit_w, created_at)
SELECT id, owner_id, NULL, NULL, name, address, latitude, longitude, rated_pv_w, battery_capacity_wh,
    battery_max_charge_w, battery_max_discharge_w, grid_import_limit_w, grid_export_limit_w, created_at
FROM site_registrations;
DROP TABLE site_registrations;

CREATE INDEX sites_pending ON sites (created_at) WHERE feeder_id IS NULL;
