-- Variants of published model versions (issue 6): an int8 file made from the version's own
-- (fp32) file, with its publisher's report of how closely it follows fp32 and the publisher's
-- threshold. Devices run the variant only where the report meets the threshold.

-- Files uploaded to become a variant (POST /api/models/files), by sha256, with the tensors the
-- edge read from each: a publish that names one checks it against the model without reading it
-- again. The bytes are in R2 under models/<sha256>.onnx, like every model file. A file no
-- version names is never served.
CREATE TABLE model_files (
  sha256        TEXT PRIMARY KEY,
  size          INTEGER NOT NULL,
  inputs_json   TEXT NOT NULL,         -- TensorSpec[] read from the file
  outputs_json  TEXT NOT NULL,
  uploaded_by   TEXT NOT NULL,         -- label of the API key that first uploaded it
  uploaded_at   INTEGER NOT NULL
);

-- A version's variants, written in the same transaction as the version (models): a version's
-- variants never change, like its file.
CREATE TABLE model_variants (
  name            TEXT NOT NULL,
  version         TEXT NOT NULL,
  kind            TEXT NOT NULL CHECK (kind IN ('int8')),
  sha256          TEXT NOT NULL,
  size            INTEGER NOT NULL,
  top1_agreement  REAL NOT NULL,       -- the publisher's report: agreement with fp32 (0..1)
  max_abs_error   REAL NOT NULL,
  samples         INTEGER NOT NULL,
  min_agreement   REAL NOT NULL,       -- the publisher's threshold (0..1)
  PRIMARY KEY (name, version, kind),
  FOREIGN KEY (name, version) REFERENCES models (name, version)
);
