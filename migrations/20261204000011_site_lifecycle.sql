-- Homes registered by their owners wait here until a utility or an operator assigns them to a
-- feeder; assignment moves the row into `sites` under the same id. Only assigned homes are
-- planned, trade and settle.
CREATE TABLE site_registrations (
    id                      uuid PRIMARY KEY,
    owner_id                uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                    text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    address                 text CHECK (length(address) <= 500),
    latitude                double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude               double precision CHECK (longitude BETWEEN -180 AND 180),
    rated_pv_w              bigint NOT NULL DEFAULT 0 CHECK (rated_pv_w >= 0),
    battery_capacity_wh     bigint CHECK (battery_capacity_wh >= 0),
    battery_max_charge_w    bigint CHECK (battery_max_charge_w >= 0),
    battery_max_discharge_w bigint CHECK (battery_max_discharge_w >= 0),
    grid_import_limit_w     bigint NOT NULL CHECK (grid_import_limit_w >= 0),
    grid_export_limit_w     bigint NOT NULL CHECK (grid_export_limit_w >= 0),
    created_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT site_registrations_location_complete CHECK ((latitude IS NULL) = (longitude IS NULL)),
    CONSTRAINT site_registrations_battery_complete CHECK (
        (battery_capacity_wh IS NULL) = (battery_max_charge_w IS NULL)
        AND (battery_capacity_wh IS NULL) = (battery_max_discharge_w IS NULL))
);
CREATE INDEX site_registrations_owner ON site_registrations (owner_id);

-- The address as the owner typed it, stored as given.
ALTER TABLE sites ADD COLUMN address text CHECK (length(address) <= 500);
-- A decommissioned home keeps its history; its agents are revoked and it no longer trades or
-- is planned.
ALTER TABLE sites ADD COLUMN decommissioned_at timestamptz;
