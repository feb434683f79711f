-- factory-evidence schema, version 1: registry, raw samples, derived data, dead letters.
-- Applied by `ingest-server migrate` (and at every start) inside one transaction.
-- Sections after a `--- mode: plain` or `--- mode: timescale` line apply only in that
-- storage mode; `--- mode: timescale-autocommit` runs after the commit (continuous
-- aggregates cannot be created inside a transaction).

-- Registry ------------------------------------------------------------------------------

CREATE TABLE enterprises (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    name_en     text,
    credit_code text                                  -- 统一社会信用代码
);

CREATE TABLE shift_calendars (
    enterprise_id text NOT NULL REFERENCES enterprises ON DELETE CASCADE,
    id            text NOT NULL,
    definition    jsonb NOT NULL,                     -- workdays, holidays, extra_workdays, shifts
    PRIMARY KEY (enterprise_id, id)
);

CREATE TABLE sites (
    enterprise_id text NOT NULL REFERENCES enterprises ON DELETE CASCADE,
    id            text NOT NULL,
    name          text NOT NULL,
    name_en       text,
    timezone      text NOT NULL,
    calendar_id   text,
    PRIMARY KEY (enterprise_id, id),
    FOREIGN KEY (enterprise_id, calendar_id) REFERENCES shift_calendars
);

CREATE TABLE processes (
    enterprise_id text NOT NULL REFERENCES enterprises ON DELETE CASCADE,
    id            text NOT NULL,
    name          text NOT NULL,
    name_en       text,
    key_process   boolean NOT NULL,                  -- 关键工序
    PRIMARY KEY (enterprise_id, id)
);

CREATE TABLE gateways (
    gid           serial PRIMARY KEY,
    enterprise_id text NOT NULL,
    site_id       text NOT NULL,
    id            text NOT NULL,
    hmac_key      bytea,                             -- null: not yet given, messages dead-lettered
    online        boolean,
    status_at     timestamptz,
    boot          integer,
    agent         jsonb,
    birth_at      timestamptz,
    UNIQUE (enterprise_id, site_id, id),
    FOREIGN KEY (enterprise_id, site_id) REFERENCES sites ON DELETE CASCADE
);

CREATE TABLE gateway_status (
    gid         integer NOT NULL REFERENCES gateways ON DELETE CASCADE,
    received_at timestamptz NOT NULL,
    ts          timestamptz,                         -- the agent's time; null for the Will
    boot        integer NOT NULL,
    state       text NOT NULL CHECK (state IN ('online', 'offline'))
);
CREATE INDEX gateway_status_gid_received ON gateway_status (gid, received_at);

-- Equipment: declared attributes; `gid`/`device` say where its data comes from.
CREATE TABLE equipment (
    enterprise_id      text NOT NULL,
    id                 text NOT NULL,
    site_id            text NOT NULL,
    name               text NOT NULL,
    name_en            text,
    process_id         text,
    nc                 boolean NOT NULL DEFAULT false,   -- 数控 / PLC-DCS controlled
    production         boolean NOT NULL DEFAULT true,    -- counts in the networking rate
    interface          text,
    ideal_cycle_time_s double precision,
    product            text,
    vendor             text,
    model              text,
    serial             text,
    year               integer,
    gateway_id         text,
    device             text,
    PRIMARY KEY (enterprise_id, id),
    FOREIGN KEY (enterprise_id, site_id) REFERENCES sites ON DELETE CASCADE,
    FOREIGN KEY (enterprise_id, process_id) REFERENCES processes
);

CREATE TABLE meters (
    enterprise_id text NOT NULL,
    id            text NOT NULL,
    site_id       text NOT NULL,
    name          text,
    name_en       text,
    carrier       text NOT NULL,                     -- electricity, water, gas, ...
    unit          text NOT NULL,
    parent_id     text,                              -- the meter this one is a submeter of
    covers        text[] NOT NULL DEFAULT '{}',      -- equipment measured directly
    gateway_id    text,
    device        text,
    PRIMARY KEY (enterprise_id, id),
    FOREIGN KEY (enterprise_id, site_id) REFERENCES sites ON DELETE CASCADE
);

-- What gateways announce (birth) -------------------------------------------------------

CREATE TABLE devices (
    gid        integer NOT NULL REFERENCES gateways ON DELETE CASCADE,
    device     text NOT NULL,
    protocol   text NOT NULL,
    metadata   jsonb NOT NULL DEFAULT '{}',
    first_seen timestamptz NOT NULL,
    birth_at   timestamptz NOT NULL,
    PRIMARY KEY (gid, device)
);

CREATE TABLE series (
    series_id  serial PRIMARY KEY,
    gid        integer NOT NULL REFERENCES gateways ON DELETE CASCADE,
    device     text NOT NULL,
    tag        text NOT NULL,
    role       text NOT NULL DEFAULT 'generic',
    unit       text,
    data_type  text,
    scale      double precision,
    "offset"   double precision,
    wrap       double precision,                     -- rollover value of an unsigned counter
    UNIQUE (gid, device, tag)
);

-- Raw data ------------------------------------------------------------------------------

CREATE TABLE batches (
    gid         integer NOT NULL,
    boot        integer NOT NULL,
    seq         bigint NOT NULL,
    sent        timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    samples     integer NOT NULL,                    -- samples accepted (new or repeats)
    rejected    integer NOT NULL,                    -- samples dead-lettered (clock)
    PRIMARY KEY (gid, boot, seq)
);

-- quality: 0 good, 1 uncertain, 2 bad. Numbers in `value`, strings (states, programs)
-- in `text`. (series_id, ts) is the sample key: a repeat is dropped.
CREATE TABLE samples (
    series_id integer NOT NULL,
    ts        timestamptz NOT NULL,
    value     double precision,
    text      text,
    quality   smallint NOT NULL DEFAULT 0,
    status    text,
    gw_ts     timestamptz,
    server_ts timestamptz
);

CREATE TABLE dead_letters (
    id            bigserial PRIMARY KEY,
    received_at   timestamptz NOT NULL DEFAULT now(),
    topic         text NOT NULL,
    gid           integer,
    reason        text NOT NULL,
    payload       bytea NOT NULL,                    -- at most the first 64 KiB
    payload_bytes integer NOT NULL
);
CREATE INDEX dead_letters_received ON dead_letters (received_at);

-- Derived data (kept as samples arrive; a pure function of `samples`) --------------------

-- Effective state per device: the machine_state tag overlaid with device_status;
-- OFFLINE while the device is offline, UNKNOWN while its state is bad or not yet known.
-- `end` null: the latest interval, still open.
CREATE TABLE state_intervals (
    gid    integer NOT NULL,
    device text NOT NULL,
    start  timestamptz NOT NULL,
    "end"  timestamptz,
    state  text NOT NULL,
    PRIMARY KEY (gid, device, start)
);

-- One row per counter sample after the first: the increase since the previous good
-- reading. flag: 'rollover' (wrapped at series.wrap), 'reset' (fell back: counted from 0).
CREATE TABLE counter_deltas (
    series_id  integer NOT NULL,
    ts         timestamptz NOT NULL,
    prev_ts    timestamptz NOT NULL,
    prev_value double precision NOT NULL,
    value      double precision NOT NULL,
    delta      double precision NOT NULL,
    flag       text,
    PRIMARY KEY (series_id, ts)
);

CREATE TABLE settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

--- mode: plain
-- One table; the unique index is the sample key and the main access path, BRIN on time
-- keeps range scans and retention cheap.
CREATE UNIQUE INDEX samples_key ON samples (series_id, ts);
CREATE INDEX samples_ts_brin ON samples USING brin (ts);

-- Hourly rollups, kept by the server from the rows each commit adds.
CREATE TABLE samples_hourly (
    series_id   integer NOT NULL,
    bucket      timestamptz NOT NULL,
    n           bigint NOT NULL,
    n_good      bigint NOT NULL,
    v_sum       double precision,
    v_min       double precision,
    v_max       double precision,
    first_ts    timestamptz NOT NULL,
    first_value double precision,
    last_ts     timestamptz NOT NULL,
    last_value  double precision,
    PRIMARY KEY (series_id, bucket)
);

--- mode: timescale
SELECT create_hypertable('samples', 'ts', chunk_time_interval => INTERVAL '1 day');
CREATE UNIQUE INDEX samples_key ON samples (series_id, ts);
ALTER TABLE samples SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'series_id',
    timescaledb.compress_orderby = 'ts'
);

--- mode: timescale-autocommit
CREATE MATERIALIZED VIEW samples_hourly WITH (timescaledb.continuous) AS
SELECT series_id,
       time_bucket(INTERVAL '1 hour', ts) AS bucket,
       count(*) AS n,
       count(*) FILTER (WHERE quality = 0) AS n_good,
       sum(value) AS v_sum,
       min(value) AS v_min,
       max(value) AS v_max,
       min(ts) AS first_ts,
       first(value, ts) AS first_value,
       max(ts) AS last_ts,
       last(value, ts) AS last_value
FROM samples
GROUP BY series_id, time_bucket(INTERVAL '1 hour', ts)
WITH NO DATA;
ALTER MATERIALIZED VIEW samples_hourly SET (timescaledb.materialized_only = false);
SELECT add_continuous_aggregate_policy('samples_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes');
