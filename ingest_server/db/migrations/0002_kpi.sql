-- factory-evidence schema, version 2: what the KPI engine and the evidence reports need.

-- Hourly sums of counter deltas, kept with the deltas (same transaction), so that a KPI
-- over a month reads hundreds of rows per counter, not tens of thousands. A delta counts
-- in the UTC hour of its `ts`; the report reads the raw deltas at the period's edges.
CREATE TABLE counter_hourly (
    series_id integer NOT NULL,
    bucket    timestamptz NOT NULL,
    n         integer NOT NULL,                      -- deltas
    delta     double precision NOT NULL,             -- their sum
    rollovers integer NOT NULL,
    resets    integer NOT NULL,
    PRIMARY KEY (series_id, bucket)
);
-- Rollovers and resets are rare: the report lists them through this small index
-- instead of scanning the period's deltas.
CREATE INDEX counter_deltas_flagged ON counter_deltas (series_id, ts) WHERE flag IS NOT NULL;

INSERT INTO counter_hourly
SELECT series_id, date_trunc('hour', ts, 'UTC'), count(*), sum(delta),
       count(*) FILTER (WHERE flag = 'rollover'), count(*) FILTER (WHERE flag = 'reset')
FROM counter_deltas GROUP BY 1, 2;

-- 离散型 (discrete) or 流程型 (process industry): which NC-rate variant applies.
ALTER TABLE enterprises ADD COLUMN industry text NOT NULL DEFAULT 'discrete'
    CHECK (industry IN ('discrete', 'process'));

-- The grid region of a site picks its electricity emission factor (national, anhui, ...).
ALTER TABLE sites ADD COLUMN grid_region text NOT NULL DEFAULT 'national';

-- Output and value added, entered per period by the enterprise (API/CLI): the
-- denominators of the intensity KPIs. site_id null: the whole enterprise.
CREATE TABLE production_entries (
    id                  bigserial PRIMARY KEY,
    enterprise_id       text NOT NULL REFERENCES enterprises ON DELETE CASCADE,
    site_id             text,
    period_from         date NOT NULL,               -- local dates, inclusive
    period_to           date NOT NULL,
    output              double precision,            -- good product, in output_unit
    output_unit         text NOT NULL DEFAULT '件',
    value_added_10k_cny double precision,            -- 工业增加值, 万元
    note                text NOT NULL DEFAULT '',
    entered_at          timestamptz NOT NULL DEFAULT now(),
    entered_by          text NOT NULL DEFAULT '',
    CHECK (period_to >= period_from),
    CHECK (output IS NULL OR output >= 0),
    CHECK (value_added_10k_cny IS NULL OR value_added_10k_cny > 0)
);
CREATE INDEX production_entries_enterprise ON production_entries (enterprise_id, period_from);

-- Public keys that signed reports (the private key stays in the server's key file), so a
-- verifier with database access trusts a report's key by its id, also after rotation.
CREATE TABLE signing_keys (
    key_id     text PRIMARY KEY,
    public_key bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz
);
