-- factory-evidence schema, version 14: what kind of refusal a dead letter is, and what kind
-- of failure a TSA's last error is, as codes beside the English text (issue 18): the
-- console words a code in the user's language and shows the server's text as it is.

-- One of ingest/payload.py REFUSAL_CODES (unknown_gateway, schema, signature_mismatch...;
-- docs/ingest.md#dead-letters lists them). NULL for the rows written before: read as
-- `other`. No CHECK: a code added to the vocabulary needs no migration, and an older
-- server beside a newer one writes only codes it knows.
ALTER TABLE dead_letters ADD COLUMN code text;

-- The kind of `last_error` (evidence/timestamp.py error_kind): unreachable, refused,
-- token_invalid or other. NULL with a token, and for the errors stored before: read as
-- `other`.
ALTER TABLE anchor_tokens ADD COLUMN last_error_kind text;
