-- A site's earlier ratings, each valid until the edit that replaced it: plausibility checks a
-- reading against the ratings valid when it was measured, so a late reading from before a
-- change is judged as the home was then.
CREATE TABLE site_rating_history (
    site_id                 uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    valid_until             timestamptz NOT NULL,
    rated_pv_w              bigint NOT NULL CHECK (rated_pv_w >= 0),
    battery_capacity_wh     bigint CHECK (battery_capacity_wh >= 0),
    battery_max_charge_w    bigint CHECK (battery_max_charge_w >= 0),
    battery_max_discharge_w bigint CHECK (battery_max_discharge_w >= 0),
    grid_import_limit_w     bigint NOT NULL CHECK (grid_import_limit_w >= 0),
    grid_export_limit_w     bigint NOT NULL CHECK (grid_export_limit_w >= 0),
    PRIMARY KEY (site_id, valid_until)
);
