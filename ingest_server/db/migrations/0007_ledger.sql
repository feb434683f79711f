-- factory-evidence schema, version 7: the ledger of signed batches (contract v2, issue 16).

-- Each batch a gateway signed (docs/mqtt.md, "Contract v2") keeps what a verifier needs to
-- check it later without trusting this server: the chain link `prev` (the digest of the
-- batch the gateway sealed before it), the batch `digest` the gateway signed, and its
-- Ed25519 `signature`; `n_total` is the number of samples the gateway signed (stored in
-- `samples` or `samples_aside`, see below). `id` is what a sample refers to. A v1 batch
-- (HMAC, contract 1) has none of these: the server could have made it.
ALTER TABLE batches ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE batches ADD CONSTRAINT batches_id_unique UNIQUE (id);
ALTER TABLE batches ADD COLUMN contract smallint NOT NULL DEFAULT 1
    CONSTRAINT batches_contract_known CHECK (contract IN (1, 2));
ALTER TABLE batches ADD COLUMN prev bytea
    CONSTRAINT batches_prev_digest CHECK (octet_length(prev) = 32);
ALTER TABLE batches ADD COLUMN digest bytea
    CONSTRAINT batches_digest_digest CHECK (octet_length(digest) = 32);
ALTER TABLE batches ADD COLUMN signature bytea
    CONSTRAINT batches_signature_ed25519 CHECK (octet_length(signature) = 64);
ALTER TABLE batches ADD COLUMN n_total integer;
ALTER TABLE batches ADD CONSTRAINT batches_v2_signed CHECK (
    contract = 1
    OR (prev IS NOT NULL AND digest IS NOT NULL AND signature IS NOT NULL AND n_total IS NOT NULL)
);
-- the chain is followed by digest: which stored batch does `prev` name?
CREATE INDEX batches_digest ON batches (gid, digest) WHERE digest IS NOT NULL;
-- `ledger check` and `status` read a gateway's batches by when they were sent
CREATE INDEX batches_sent ON batches (gid, sent);

-- A sample of a v2 batch names its batch and its 0-based place in it; a v1 sample has
-- neither (and is "not gateway-attested" in reports).
ALTER TABLE samples ADD COLUMN batch_id bigint;
ALTER TABLE samples ADD COLUMN batch_pos integer;

-- Every sample of a v2 batch that is not in `samples` under that batch, so that the batch's
-- digest can always be recomputed from stored rows: reason 1, its (series, ts) was already
-- stored (by another batch, or earlier in the same one: `samples` keeps one row per key);
-- reason 2, set aside for an implausible time (also in `dead_letters`, as for v1).
CREATE TABLE samples_aside (
    batch_id  bigint NOT NULL,
    batch_pos integer NOT NULL,
    series_id integer NOT NULL,
    ts        timestamptz NOT NULL,
    value     double precision,
    text      text,
    quality   smallint NOT NULL,
    status    text,
    reason    smallint NOT NULL CONSTRAINT samples_aside_reason CHECK (reason IN (1, 2)),
    PRIMARY KEY (batch_id, batch_pos)
);

-- Every public key a gateway has had, so that a batch signed before a key was replaced
-- (`gateway enroll --replace`) or revoked still verifies under the key that was enrolled
-- when it arrived. `gateways.public_key` stays the current one.
CREATE TABLE gateway_public_keys (
    gid         integer NOT NULL REFERENCES gateways ON DELETE CASCADE,
    public_key  bytea NOT NULL CONSTRAINT gateway_public_keys_ed25519
        CHECK (octet_length(public_key) = 32),
    enrolled_at timestamptz NOT NULL,
    retired_at  timestamptz,
    PRIMARY KEY (gid, public_key)
);
INSERT INTO gateway_public_keys (gid, public_key, enrolled_at)
    SELECT gid, public_key, coalesce(enrolled_at, now()) FROM gateways
    WHERE public_key IS NOT NULL;

-- What a gateway declared it lost: a contract-2 status may list the batches its outbox
-- dropped under its bounds (docs/mqtt.md, `dropped`). The signed status is kept verbatim,
-- so that `ledger check` can verify the declaration itself (Ed25519, the key enrolled when
-- it arrived) before it reports a gap as the gateway's own loss rather than a deletion on
-- the server. Only a status that declares something new is kept.
CREATE TABLE gateway_declarations (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gid         integer NOT NULL REFERENCES gateways ON DELETE CASCADE,
    received_at timestamptz NOT NULL,
    payload     bytea NOT NULL
);
-- The ranges declared, parsed: batches boot/first_seq..last_seq, dropped for `reason`,
-- the last of them at `dropped_at` (the gateway's clock), declared in the status
-- `declaration_id` sent at `declared_at`. The same range declared again changes nothing;
-- a range the gateway extended (later drops continuing it) takes the longer one and the
-- status that declares it.
CREATE TABLE declared_gaps (
    gid            integer NOT NULL REFERENCES gateways ON DELETE CASCADE,
    boot           integer NOT NULL,
    first_seq      bigint NOT NULL,
    last_seq       bigint NOT NULL,
    reason         text NOT NULL CONSTRAINT declared_gaps_reason
        CHECK (reason IN ('full', 'expired')),
    dropped_at     timestamptz NOT NULL,
    declared_at    timestamptz NOT NULL,
    declaration_id bigint NOT NULL REFERENCES gateway_declarations ON DELETE CASCADE,
    PRIMARY KEY (gid, boot, first_seq),
    CONSTRAINT declared_gaps_range CHECK (first_seq <= last_seq)
);
CREATE INDEX declared_gaps_declaration ON declared_gaps (declaration_id);
