-- factory-evidence schema, version 11: what the enterprise declares beyond the figures'
-- inputs (issue 18): each meter's nameplate and calibration certificate (the report's
-- meter register, GB 17167), the enterprise's declaration (承诺) a report ends with, and
-- the targets of its chosen programme or grade.
--
-- `calibration` is the certificate as the registry gives it: {certificate, issued_by,
-- calibrated_on, valid_until} (ISO dates), null for a meter without one. `declaration`
-- is {text, text_en, signatory, position}, null when the enterprise entered none; `targets`
-- a list of targets as reference/targets.py TargetDef dumps them. Each is a column of
-- registry.json and of the edit trail (registry_audit) by these names.
ALTER TABLE meters
    ADD COLUMN serial         text,
    ADD COLUMN model          text,
    ADD COLUMN accuracy_class text,                   -- 准确度等级, as on the nameplate
    ADD COLUMN calibration    jsonb;

ALTER TABLE enterprises
    ADD COLUMN declaration jsonb,
    ADD COLUMN targets     jsonb NOT NULL DEFAULT '[]';
