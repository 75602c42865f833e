-- A model name is owned whatever its letter case: another publisher's `PPOCR-CLS` next to
-- `ppocr-cls` would pass for the original in listings and `published:*` agents would serve it.
-- The owner check (edge/src/models/registry.ts checkOwner) looks names up by lower(name). Not
-- UNIQUE: a deployment may already hold such look-alikes, which stay with their owners.
CREATE INDEX model_owners_lower_name ON model_owners (lower(name));
