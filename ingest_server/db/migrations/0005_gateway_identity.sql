-- factory-evidence schema, version 5: gateway identities (`ingest-server gateway add`) and
-- revoked report signing keys (`ingest-server keys rotate --compromised`).

-- The gateway's broker login as Mosquitto's password-file hash (PBKDF2-SHA512; the password
-- itself is shown once, never stored), when its secrets were issued and when it was
-- revoked. A revoked gateway has no HMAC key (its batches are dead-lettered) and no
-- broker login (`gateway broker-files` leaves it out).
ALTER TABLE gateways ADD COLUMN broker_password_hash text;
ALTER TABLE gateways ADD COLUMN issued_at timestamptz;
ALTER TABLE gateways ADD COLUMN revoked_at timestamptz;

-- A retired signing key (a planned rotation) still vouches for the reports it signed
-- before it was retired; a revoked one (compromised) for none.
ALTER TABLE signing_keys ADD COLUMN revoked_at timestamptz;
