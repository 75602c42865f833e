-- Spot checks (edge/src/spot-checks/): a share of answered jobs re-run on other devices. One row
-- per checked job, with the verdict and every checker's signed attestation: the evidence an
-- operator needs before slashing a provider whose device answered wrongly.
CREATE TABLE spot_checks (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  -- The checked job (its attestation is in `attestations` under the same id), lowercase 0x hex.
  job_id         TEXT NOT NULL UNIQUE,
  model_name     TEXT NOT NULL,
  model_version  TEXT NOT NULL,
  -- The file every device in the check ran (a variant's, when the answer ran one).
  file_sha256    TEXT NOT NULL,
  answered_by    TEXT NOT NULL,   -- device id of the answer
  answered_by_address TEXT NOT NULL,
  -- The answer's input salt: with the inputs (which the edge does not keep), it opens the answer's
  -- input commitment, as each checker's salt in `checks` opens its own.
  answer_salt    TEXT NOT NULL,
  verdict        TEXT NOT NULL CHECK (verdict IN ('confirmed', 'refuted', 'inconclusive')),
  faulty         TEXT NOT NULL,   -- JSON array of device ids the majority contradicts
  checks         TEXT NOT NULL,   -- JSON array of the checkers' runs (spot-check.ts CheckRecord)
  -- 1: the job was priced, refuted, and its reservation dropped before any settlement took it.
  refunded       INTEGER NOT NULL DEFAULT 0,
  checked_at     INTEGER NOT NULL -- Unix epoch ms
);
CREATE INDEX spot_checks_verdict ON spot_checks (verdict, id);
