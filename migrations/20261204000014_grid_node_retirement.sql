-- A retired grid node stays for the history that names it (orders in its zone, requests on it),
-- but is no longer part of the grid; its code may be used again by a new node.
ALTER TABLE grid_nodes ADD COLUMN retired_at timestamptz;
DROP INDEX grid_nodes_code;
CREATE UNIQUE INDEX grid_nodes_code_live ON grid_nodes (code) WHERE code IS NOT NULL AND retired_at IS NULL;
