-- factory-evidence schema, version 12: downtime reasons (issue 18). An enterprise's
-- catalogue of reasons (停机原因), declared in the registry (`downtime_reasons:`), the
-- reason an operator attached to a DOWN or IDLE interval of a machine, and the trail of
-- every such attachment, change and removal (docs/ingest.md#downtime-reasons).
--
-- An assignment is keyed by the machine and the instant its interval starts, not by
-- `state_intervals`' row: derived intervals are deleted and rewritten when late samples
-- arrive (derive/intervals.py), and a reason must outlive that. While an interval of the
-- machine's device starts at `interval_start` in `state`, the reason is that interval's
-- (its end may have moved: the same stop, heard longer); when none does any more, the
-- assignment is kept and shown as "interval changed", counted nowhere, until an operator
-- attaches the reason again to the interval as it now stands.

CREATE TABLE downtime_reasons (
    enterprise_id text NOT NULL REFERENCES enterprises ON DELETE CASCADE,
    id            text NOT NULL,
    name          text NOT NULL,
    name_en       text NOT NULL,
    category      text NOT NULL,                     -- planned, unplanned, or a grouping
    applies_to    text NOT NULL CONSTRAINT downtime_reasons_applies_to
                      CHECK (applies_to IN ('DOWN', 'IDLE', 'both')),
    active        boolean NOT NULL DEFAULT true,     -- false: kept for what it was given to
    PRIMARY KEY (enterprise_id, id)
);

CREATE TABLE downtime_assignments (
    enterprise_id  text NOT NULL REFERENCES enterprises ON DELETE CASCADE,
    equipment_id   text NOT NULL,
    interval_start timestamptz NOT NULL,
    state          text NOT NULL CONSTRAINT downtime_assignments_state
                       CHECK (state IN ('DOWN', 'IDLE')),
    reason_id      text NOT NULL,
    note           text NOT NULL DEFAULT '',
    account        text NOT NULL,
    at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (enterprise_id, equipment_id, interval_start),
    FOREIGN KEY (enterprise_id, reason_id) REFERENCES downtime_reasons
);

-- `old` and `new`: {reason, note} before and after; null for none (attached, cleared).
CREATE TABLE downtime_audit (
    id             bigserial PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    enterprise_id  text NOT NULL REFERENCES enterprises ON DELETE CASCADE,
    equipment_id   text NOT NULL,
    interval_start timestamptz NOT NULL,
    state          text NOT NULL,
    account        text NOT NULL,
    old            jsonb,
    new            jsonb
);
CREATE INDEX downtime_audit_equipment ON downtime_audit (enterprise_id, equipment_id, at, id);
