-- One-time enrolment codes: a home's owner (or an operator) asks for one, and a new agent enrols
-- with the code alone. Only the code's SHA-256 is kept, like API tokens. A code is used once:
-- `agent_id` names the agent it enrolled, and stays for the record.
CREATE TABLE enrolment_codes (
    code_hash  bytea PRIMARY KEY CHECK (length(code_hash) = 32),
    site_id    uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    created_by uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    agent_id   uuid REFERENCES agents (id) ON DELETE RESTRICT,
    CONSTRAINT enrolment_codes_window CHECK (expires_at > created_at),
    CONSTRAINT enrolment_codes_use CHECK ((used_at IS NULL) = (agent_id IS NULL))
);
CREATE INDEX enrolment_codes_site ON enrolment_codes (site_id, created_at);
