-- Settlement: each period's lines (the leaves of its Merkle tree), a double-entry ledger of
-- transfers between accounts, on-chain anchors of the roots, and token reward distributions.

-- One row per settled period and revision; revision 1 is the one anchored on chain. Later
-- revisions come from late or reviewed data and only ever add adjusting ledger entries.
CREATE TABLE settlements (
    period_start timestamptz NOT NULL,
    revision     integer NOT NULL CHECK (revision >= 1),
    settled_at   timestamptz NOT NULL DEFAULT now(),
    line_count   integer NOT NULL CHECK (line_count >= 0),
    total_wh     bigint NOT NULL CHECK (total_wh >= 0),
    root         bytea NOT NULL CHECK (length(root) = 32),
    tariffs      jsonb NOT NULL,
    PRIMARY KEY (period_start, revision)
);

CREATE TABLE settlement_lines (
    period_start timestamptz NOT NULL,
    revision     integer NOT NULL,
    site_id      uuid NOT NULL REFERENCES sites (id) ON DELETE RESTRICT,
    -- Position in the tree (lines ordered by site id).
    idx          integer NOT NULL,
    status       text NOT NULL CHECK (status IN ('metered', 'flagged', 'missing')),
    net_amount   bigint NOT NULL,
    -- The canonical encoding (docs/anchoring.md); the leaf is keccak256(0x00 || line).
    line         bytea NOT NULL,
    PRIMARY KEY (period_start, revision, site_id),
    FOREIGN KEY (period_start, revision) REFERENCES settlements (period_start, revision) ON DELETE RESTRICT
);
CREATE INDEX settlement_lines_site ON settlement_lines (site_id, period_start);

-- Money moves only as transfers: every row debits `from_account` and credits `to_account` by
-- the same positive amount, so the ledger balances to zero across accounts by construction.
-- Rows are never updated or deleted.
CREATE TABLE ledger_entries (
    id           bigserial PRIMARY KEY,
    period_start timestamptz NOT NULL,
    revision     integer NOT NULL,
    from_account text NOT NULL,
    to_account   text NOT NULL,
    amount       bigint NOT NULL CHECK (amount > 0),
    kind         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_entries_two_accounts CHECK (from_account <> to_account),
    FOREIGN KEY (period_start, revision) REFERENCES settlements (period_start, revision) ON DELETE RESTRICT
);
CREATE INDEX ledger_entries_period ON ledger_entries (period_start);
CREATE INDEX ledger_entries_from ON ledger_entries (from_account);
CREATE INDEX ledger_entries_to ON ledger_entries (to_account);

CREATE FUNCTION ledger_entries_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are never changed; post an adjusting entry instead'
        USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_append_only';
END
$$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();

-- A period's root on chain. One row per period: a period is anchored at most once.
CREATE TABLE anchors (
    period_start timestamptz PRIMARY KEY,
    chain_id     bigint NOT NULL,
    contract     bytea NOT NULL CHECK (length(contract) = 20),
    root         bytea NOT NULL CHECK (length(root) = 32),
    tx_hash      bytea CHECK (length(tx_hash) = 32),
    block_number bigint,
    status       text NOT NULL CHECK (status IN ('pending', 'confirmed')),
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- The revision anchored: always the first.
    revision     integer NOT NULL DEFAULT 1 CHECK (revision = 1),
    FOREIGN KEY (period_start, revision) REFERENCES settlements (period_start, revision) ON DELETE RESTRICT
);

-- Where a user's token rewards go.
CREATE TABLE reward_addresses (
    user_id    uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    address    bytea NOT NULL CHECK (length(address) = 20),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reward_distributions (
    period_start timestamptz PRIMARY KEY,
    root         bytea NOT NULL CHECK (length(root) = 32),
    -- Token amounts in 10^-18 units exceed bigint: kept as numeric.
    total        numeric(78, 0) NOT NULL CHECK (total >= 0),
    claim_count  integer NOT NULL,
    tx_hash      bytea,
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'published', 'empty')),
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reward_claims (
    period_start timestamptz NOT NULL REFERENCES reward_distributions (period_start) ON DELETE RESTRICT,
    address      bytea NOT NULL CHECK (length(address) = 20),
    idx          integer NOT NULL,
    verified_wh  bigint NOT NULL,
    amount       numeric(78, 0) NOT NULL CHECK (amount > 0),
    PRIMARY KEY (period_start, address)
);

-- Agent keys mirrored to the MeterRegistry contract, so anyone can check which device key
-- signed for which site, and when it was revoked.
CREATE TABLE chain_agent_keys (
    key_id        uuid PRIMARY KEY REFERENCES agent_keys (id) ON DELETE RESTRICT,
    registered_tx bytea CHECK (length(registered_tx) = 32),
    revoked_tx    bytea CHECK (length(revoked_tx) = 32),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
