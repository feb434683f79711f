-- factory-evidence schema, version 4: stored evidence reports and console logins.

-- A signed report exactly as it was issued (the JSON text the signature covers is
-- recomputed from it; text, not jsonb, so nothing is renormalised).
CREATE TABLE reports (
    id            uuid PRIMARY KEY,                 -- the report's report_id
    enterprise_id text NOT NULL REFERENCES enterprises ON DELETE CASCADE,
    period_from   date NOT NULL,
    period_to     date NOT NULL,
    partial       boolean NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    key_id        text,
    document      text NOT NULL
);
CREATE INDEX reports_enterprise ON reports (enterprise_id, created_at);

-- Console login: a password (scrypt) per account; a login issues a token that expires.
ALTER TABLE accounts ADD COLUMN password_hash text;
ALTER TABLE api_tokens ADD COLUMN expires_at timestamptz;
