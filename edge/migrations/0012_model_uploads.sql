-- Resumable uploads of large model files (edge/src/models/uploads.ts): an R2 multipart upload
-- under uploads/<id>, in parts of part_bytes (the last one shorter). Once complete and checked
-- (sha256, ONNX), the file is copied to models/<sha256>.onnx and recorded in model_files, the
-- session's parts and staging object are deleted and its row marked completed (a retried
-- completion answers the file); sessions older than a day are deleted by the scheduled handler,
-- aborting open ones.
CREATE TABLE model_uploads (
  id            TEXT PRIMARY KEY,      -- random UUID: the session's id in the API
  r2_upload_id  TEXT NOT NULL,         -- R2's multipart upload id
  sha256        TEXT NOT NULL,         -- declared when the upload began; checked at completion
  size          INTEGER NOT NULL,
  part_bytes    INTEGER NOT NULL,
  key_hash      TEXT NOT NULL,         -- the API key that began it: only it sees and sends parts
  uploaded_by   TEXT NOT NULL,         -- that key's label, for model_files.uploaded_by
  created_at    INTEGER NOT NULL,
  completed_at  INTEGER                -- NULL while parts may be sent
);
CREATE INDEX model_uploads_by_key ON model_uploads (key_hash);
-- One open upload per key and file: a second begin resumes it.
CREATE UNIQUE INDEX model_uploads_open_file ON model_uploads (key_hash, sha256, size) WHERE completed_at IS NULL;
CREATE INDEX model_uploads_by_age ON model_uploads (created_at);

CREATE TABLE model_upload_parts (
  upload_id    TEXT NOT NULL REFERENCES model_uploads (id),
  part_number  INTEGER NOT NULL,       -- 1-based
  etag         TEXT NOT NULL,          -- R2's, needed to complete the upload
  PRIMARY KEY (upload_id, part_number)
);
