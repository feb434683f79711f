-- factory-evidence schema, version 8: each enterprise's days of signed batches anchored in
-- time (issue 17, docs/evidence.md).

-- A gateway's signature proves who sealed a batch, not when. Per enterprise and local day
-- the server builds an RFC 9162 Merkle tree over the digests of the v2 batches it received
-- that day (in the order `leaf_order` names: 1 = site id, gateway id, boot, seq) and has
-- time-stamping authorities sign its root (RFC 3161). One row per root built: a day
-- re-anchored with `anchor --force` (its batch set changed) keeps its old root, marked
-- `superseded_at`, with the tokens over it, so the rewrite itself stays on record.
CREATE TABLE anchor_days (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    enterprise_id text NOT NULL REFERENCES enterprises ON DELETE CASCADE,
    day           date NOT NULL,
    root          bytea NOT NULL CONSTRAINT anchor_days_root_sha256
        CHECK (octet_length(root) = 32),
    leaves        integer NOT NULL CONSTRAINT anchor_days_leaves CHECK (leaves > 0),
    leaf_order    smallint NOT NULL,
    built_at      timestamptz NOT NULL,
    superseded_at timestamptz
);
-- at most one current root per day
CREATE UNIQUE INDEX anchor_days_current ON anchor_days (enterprise_id, day)
    WHERE superseded_at IS NULL;

-- Per root and TSA: the TSA's answer (the DER TimeStampResp holding the token) and the
-- time it vouches for; or, while the TSA has not granted one, the last error and when it
-- was met. A day with no token from any TSA is pending: the next `anchor` run asks again.
CREATE TABLE anchor_tokens (
    anchor_id    bigint NOT NULL REFERENCES anchor_days ON DELETE CASCADE,
    tsa_url      text NOT NULL,
    tsa_name     text,
    token        bytea,
    gen_time     timestamptz,
    last_error   text,
    attempted_at timestamptz NOT NULL,
    PRIMARY KEY (anchor_id, tsa_url),
    CONSTRAINT anchor_tokens_token_or_error CHECK (
        (token IS NOT NULL AND gen_time IS NOT NULL) OR last_error IS NOT NULL
    )
);

-- a day's leaves are the batches received in it: read by (gateway, received_at)
CREATE INDEX batches_received ON batches (gid, received_at);
