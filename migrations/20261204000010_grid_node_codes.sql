-- A grid node's code in the utility's own systems (the feeder id in its GIS, say): what grid
-- files refer to nodes by, so that importing the same file again changes nothing.
ALTER TABLE grid_nodes ADD COLUMN code text CHECK (length(code) BETWEEN 1 AND 100);
CREATE UNIQUE INDEX grid_nodes_code ON grid_nodes (code) WHERE code IS NOT NULL;
