-- factory-evidence schema, version 3: who may use the API.
--
-- Roles: admin (everything), enterprise (its own enterprises: read, enter production
-- figures, make reports), verifier (read-only, the enterprises assigned to it, may run
-- verification). Tokens are stored as SHA-256 hashes of 32 random bytes: a stolen
-- database does not give working tokens, and a lookup by hash needs no slow KDF.

CREATE TABLE accounts (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    role        text NOT NULL CHECK (role IN ('admin', 'enterprise', 'verifier')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);

CREATE TABLE account_enterprises (
    account_id    integer NOT NULL REFERENCES accounts ON DELETE CASCADE,
    enterprise_id text NOT NULL REFERENCES enterprises ON DELETE CASCADE,
    PRIMARY KEY (account_id, enterprise_id)
);

CREATE TABLE api_tokens (
    id           serial PRIMARY KEY,
    account_id   integer NOT NULL REFERENCES accounts ON DELETE CASCADE,
    token_hash   bytea NOT NULL UNIQUE,
    label        text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- Declared attributes edited through the API: who changed what, from what, to what.
CREATE TABLE equipment_audit (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    enterprise_id text NOT NULL,
    equipment_id  text NOT NULL,
    account       text NOT NULL,
    field         text NOT NULL,
    old           jsonb,
    new           jsonb,
    note          text NOT NULL DEFAULT ''
);
CREATE INDEX equipment_audit_equipment ON equipment_audit (enterprise_id, equipment_id, at);
