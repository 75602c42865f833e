-- Models published by developers. The file lives in R2 under its sha256; a (name, version) is
-- immutable, and a new upload of a name is its next version.
CREATE TABLE models (
  name            TEXT NOT NULL,
  version         TEXT NOT NULL,
  version_number  INTEGER NOT NULL,      -- 1, 2, 3… per name: orders versions
  sha256          TEXT NOT NULL,
  size            INTEGER NOT NULL,
  description     TEXT NOT NULL DEFAULT '',
  price_wei       TEXT NOT NULL,         -- the developer's price per inference (uint256, decimal)
  payout_address  TEXT NOT NULL,         -- where the developer's earnings go
  inputs_json     TEXT NOT NULL,         -- TensorSpec[] read from the file
  outputs_json    TEXT NOT NULL,
  published_by    TEXT NOT NULL,         -- label of the API key that published it
  published_at    INTEGER NOT NULL,
  PRIMARY KEY (name, version),
  UNIQUE (name, version_number)
);
CREATE INDEX models_by_sha256 ON models (sha256);
