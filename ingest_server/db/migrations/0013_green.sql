-- factory-evidence schema, version 13: the green-factory and carbon packs (issue 18,
-- docs/green-ghg.md).
--
-- A meter's `role`: `consumption` (the default: what every meter was before) or
-- `generation`, on-site generation such as rooftop PV. The KPI engine keeps a generation
-- meter out of consumption, comprehensive energy and CO2, and the renewable share of the
-- green-factory sheet reads it. A column of registry.json and of the edit trail
-- (registry_audit) by this name.
ALTER TABLE meters ADD COLUMN role text NOT NULL DEFAULT 'consumption'
    CONSTRAINT meters_role CHECK (role IN ('consumption', 'generation'));

-- What the enterprise enters for a period's green-factory sheet and GHG report:
-- `entries` as evidence/green.py GreenEntries dumps it (baseline and leading values per
-- indicator with their reference, entered indicators with their evidence, on-site
-- generation and renewable power bought), `process` the process emissions from its
-- ledger as evidence/ghg.py ProcessEmission dumps them. Never updated nor deleted: each
-- `ingest-server green set` adds a row, the newest row of a period is the one a report
-- of exactly that period reads, and the older ones are the trail of who entered what
-- and when.
CREATE TABLE green_entries (
    id            bigserial PRIMARY KEY,
    enterprise_id text NOT NULL REFERENCES enterprises ON DELETE CASCADE,
    period_from   date NOT NULL,                     -- local dates, inclusive
    period_to     date NOT NULL,
    entries       jsonb NOT NULL,
    process       jsonb NOT NULL DEFAULT '[]',
    note          text NOT NULL DEFAULT '',
    entered_at    timestamptz NOT NULL DEFAULT now(),
    entered_by    text NOT NULL,
    CHECK (period_to >= period_from)
);
CREATE INDEX green_entries_period ON green_entries (enterprise_id, period_from, period_to, id);
