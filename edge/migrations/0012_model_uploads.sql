-- Resumable uploads of large model files (edge/src/models/uploads.ts): an R2 multipart upload
-- under uploads/<id>, in parts of part_bytes (the last one shorter). Once complete and checked
-- (sha256, ONNX), the file is copied to models/<sha256>.onnx and recorded in model_files, and
-- the session's rows and staging object are deleted; sessions older than a day are aborted by
-- the scheduled handler.
CREATE TABLE model_uploads (
  id            TEXT PRIMARY KEY,      -- random UUID: the session's id in the API
  r2_upload_id  TEXT NOT NULL,         -- R2's multipart upload id
  sha256        TEXT NOT NULL,         -- declared when the upload began; checked at completion
  size          INTEGER NOT NULL,
  part_bytes    INTEGER NOT NULL,
  key_hash      TEXT NOT NULL,         -- the API key that began it: only it sees and sends parts
  uploaded_by   TEXT NOT NULL,         -- that key's label, for model_files.uploaded_by
  created_at    INTEGER NOT NULL
);
CREATE INDEX model_uploads_by_key ON model_uploads (key_hash);
CREATE INDEX model_uploads_by_age ON model_uploads (created_at);

CREATE TABLE model_upload_parts (
  upload_id    TEXT NOT NULL REFERENCES model_uploads (id),
  part_number  INTEGER NOT NULL,       -- 1-based
  etag         TEXT NOT NULL,          -- R2's, needed to complete the upload
  PRIMARY KEY (upload_id, part_number)
);
