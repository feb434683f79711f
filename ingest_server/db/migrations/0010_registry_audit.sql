-- factory-evidence schema, version 10: the trail of every change `registry import` makes
-- to an enterprise's declared registry other than an equipment attribute (issue 17).
--
-- An equipment attribute changed by an import is a row of equipment_audit, as an edit
-- through the API is (version 3). Everything else an import changes is a row here: a
-- site's time zone, grid region or calendar, a calendar's definition, a process's
-- key_process (which moves the NC rate), a meter's attributes, the enterprise's own, and
-- an equipment, site, calendar, process or meter inserted or removed (`field` '*': `old`
-- null and `new` the row for an insert, `old` the row and `new` null for a removal).
-- `field` is the column of registry.json (the bundle's registry) it changed; `old` and
-- `new` its values as JSON. The import that creates an enterprise writes no row: the
-- trail records changes to a registry that exists (docs/ingest.md#the-edit-trail).
CREATE TABLE registry_audit (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    enterprise_id text NOT NULL,
    kind          text NOT NULL CONSTRAINT registry_audit_kind CHECK (
                      kind IN ('enterprise', 'site', 'calendar', 'process', 'meter', 'equipment')),
    entity_id     text NOT NULL,
    field         text NOT NULL,
    old           jsonb,
    new           jsonb,
    account       text NOT NULL,
    note          text NOT NULL DEFAULT ''
);
CREATE INDEX registry_audit_enterprise ON registry_audit (enterprise_id, at, id);
