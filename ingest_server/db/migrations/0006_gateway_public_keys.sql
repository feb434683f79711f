-- factory-evidence schema, version 6: a gateway's own public key (contract v2, issue 16;
-- `ingest-server gateway enroll`, `gateway add --public-key`).

-- Contract v2: each gateway signs its batches with an Ed25519 key made on the gateway
-- (`edge-agent keys init`); its private key never leaves it, the server keeps only the raw
-- 32-byte public key and so can check the gateway's batches but never make one. `contract`
-- says which contract the gateway speaks: 1, batches signed with the HMAC key the server
-- issued (`hmac_key`); 2, its public key is enrolled (`enrolled_at`: when). During the
-- move from v1 to v2 a gateway may hold both keys; until the server accepts v2 batches
-- (a later step) a gateway enrolled for v2 keeps publishing with its HMAC key.
-- A revoked gateway has no public key either (its key is cleared with its HMAC key and
-- broker login); its `contract` and `enrolled_at` stay as they were, for the record.
ALTER TABLE gateways ADD COLUMN public_key bytea
    CONSTRAINT gateways_public_key_ed25519 CHECK (octet_length(public_key) = 32);
ALTER TABLE gateways ADD COLUMN contract smallint NOT NULL DEFAULT 1
    CONSTRAINT gateways_contract_known CHECK (contract IN (1, 2));
ALTER TABLE gateways ADD COLUMN enrolled_at timestamptz;

-- A gateway that speaks v2 and is not revoked has its public key.
ALTER TABLE gateways ADD CONSTRAINT gateways_v2_has_public_key
    CHECK (contract = 1 OR public_key IS NOT NULL OR revoked_at IS NOT NULL);

-- One key, one gateway: each gateway makes its own, so the same public key enrolled for
-- two gateways is a copied key file (`gateway enroll` refuses it and says so).
CREATE UNIQUE INDEX gateways_public_key_once ON gateways (public_key)
    WHERE public_key IS NOT NULL;
