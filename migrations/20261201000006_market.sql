-- The peer-to-peer market: orders per 15-minute delivery period, standing strategies that place
-- orders for a site, and each period's clearing (zone prices, trades), written once.

CREATE TABLE market_strategies (
    id          uuid PRIMARY KEY,
    site_id     uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    kind        text NOT NULL
                CHECK (kind IN ('sell_surplus', 'buy_to_charge', 'buy_shortfall', 'sell_from_battery')),
    -- The whole strategy as the API takes it (kind and parameters).
    params      jsonb NOT NULL,
    created_by  uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);
-- One active strategy of each kind per site.
CREATE UNIQUE INDEX market_strategies_one_kind ON market_strategies (site_id, kind) WHERE disabled_at IS NULL;

CREATE TABLE market_orders (
    id            uuid PRIMARY KEY,
    site_id       uuid NOT NULL REFERENCES sites (id) ON DELETE RESTRICT,
    -- The site's feeder when the order was placed: the zone it trades in.
    zone_id       uuid NOT NULL REFERENCES grid_nodes (id) ON DELETE RESTRICT,
    period_start  timestamptz NOT NULL,
    side          text NOT NULL CHECK (side IN ('buy', 'sell')),
    price_per_kwh bigint NOT NULL CHECK (price_per_kwh >= 0),
    energy_wh     bigint NOT NULL CHECK (energy_wh > 0),
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'cancelled', 'replaced', 'cleared')),
    filled_wh     bigint,
    fill_price    bigint,
    placed_by     uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    -- Set when a standing strategy placed the order on the prosumer's behalf.
    strategy_id   uuid REFERENCES market_strategies (id) ON DELETE SET NULL,
    replaces      uuid REFERENCES market_orders (id) ON DELETE RESTRICT,
    submitted_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    closed_at     timestamptz,
    CONSTRAINT market_orders_period_aligned
        CHECK (date_part('epoch', period_start)::bigint % 900 = 0),
    CONSTRAINT market_orders_fill CHECK (
        (status = 'cleared') = (filled_wh IS NOT NULL) AND filled_wh BETWEEN 0 AND energy_wh),
    CONSTRAINT market_orders_closed CHECK ((status = 'open') = (closed_at IS NULL))
);
CREATE INDEX market_orders_open ON market_orders (period_start, zone_id) WHERE status = 'open';
CREATE INDEX market_orders_site ON market_orders (site_id, period_start);
-- A strategy places at most one order per period, even with several replicas running it (and
-- not again after its owner cancelled it).
CREATE UNIQUE INDEX market_orders_strategy_once ON market_orders (strategy_id, period_start);

-- One row per cleared period; its primary key makes the clearing happen exactly once.
CREATE TABLE market_clearings (
    period_start  timestamptz PRIMARY KEY,
    cleared_at    timestamptz NOT NULL DEFAULT now(),
    pricing       text NOT NULL CHECK (pricing IN ('pay_as_clear', 'pay_as_bid')),
    order_count   integer NOT NULL,
    trade_count   integer NOT NULL,
    volume_wh     bigint NOT NULL,
    welfare_milli bigint NOT NULL,
    -- SHA-256 of the result's canonical JSON: the same book always gives the same hash.
    result_sha256 bytea NOT NULL CHECK (length(result_sha256) = 32),
    cleared_by    text NOT NULL
);

CREATE TABLE market_zone_prices (
    period_start  timestamptz NOT NULL REFERENCES market_clearings (period_start) ON DELETE CASCADE,
    zone_id       uuid NOT NULL,
    price_per_kwh bigint,
    bought_wh     bigint NOT NULL,
    sold_wh       bigint NOT NULL,
    net_export_wh bigint NOT NULL,
    congested     boolean NOT NULL,
    PRIMARY KEY (period_start, zone_id)
);

CREATE TABLE market_trades (
    period_start     timestamptz NOT NULL REFERENCES market_clearings (period_start) ON DELETE CASCADE,
    -- Position in the clearing's canonical order.
    seq              integer NOT NULL,
    sell_order       uuid NOT NULL REFERENCES market_orders (id),
    buy_order        uuid NOT NULL REFERENCES market_orders (id),
    seller_site      uuid NOT NULL REFERENCES sites (id),
    buyer_site       uuid NOT NULL REFERENCES sites (id),
    energy_wh        bigint NOT NULL CHECK (energy_wh > 0),
    seller_price     bigint NOT NULL,
    buyer_price      bigint NOT NULL,
    path             uuid[] NOT NULL,
    grid_fee_per_kwh bigint NOT NULL,
    PRIMARY KEY (period_start, seq)
);
CREATE INDEX market_trades_seller ON market_trades (seller_site, period_start);
CREATE INDEX market_trades_buyer ON market_trades (buyer_site, period_start);
