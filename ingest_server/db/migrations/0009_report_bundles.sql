-- factory-evidence schema, version 9: each issued report's evidence bundle, kept with it
-- (issue 17; docs/console.md, "Evidence bundles").

-- One row per issued report whose bundle was attempted: built (its SHA-256, size in bytes,
-- sample count, and `chunks` rows of bytes below) or not (`error`: why; the report was
-- issued all the same). A report without a row was issued before bundles were kept.
-- In the database rather than a file under the data directory: it commits in the report's
-- transaction (no report without its row, no file without its report), the API may run
-- with --dsn and no data directory, on several hosts, and a backup of the database holds it.
CREATE TABLE report_bundles (
    report_id  uuid PRIMARY KEY REFERENCES reports ON DELETE CASCADE,
    sha256     bytea CONSTRAINT report_bundles_sha256 CHECK (octet_length(sha256) = 32),
    bytes      bigint CONSTRAINT report_bundles_bytes CHECK (bytes > 0),
    samples    bigint CONSTRAINT report_bundles_samples CHECK (samples >= 0),
    chunks     integer CONSTRAINT report_bundles_chunks CHECK (chunks > 0),
    error      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT report_bundles_built_or_error CHECK (
        (sha256 IS NOT NULL AND bytes IS NOT NULL AND samples IS NOT NULL
         AND chunks IS NOT NULL AND error IS NULL)
        OR (sha256 IS NULL AND bytes IS NULL AND chunks IS NULL AND error IS NOT NULL)
    )
);

-- The zip in pieces of at most 8 MiB, numbered from 0: a download streams them one by
-- one (memory stays bounded) and no value comes near bytea's 1 GB limit (a month of 100
-- machines is about 215 M samples, some 0.8 GB at ~3.6 bytes a sample). EXTERNAL: the zip
-- is compressed already, so TOAST does not try again.
CREATE TABLE report_bundle_chunks (
    report_id uuid NOT NULL REFERENCES report_bundles ON DELETE CASCADE,
    n         integer NOT NULL CONSTRAINT report_bundle_chunks_n CHECK (n >= 0),
    data      bytea NOT NULL,
    PRIMARY KEY (report_id, n)
);
ALTER TABLE report_bundle_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
