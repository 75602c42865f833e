-- Old attestations move out of D1 (issue 4's log would otherwise grow by ~1 KB per job, plus
-- ~0.7 KB per priced job's reservation, until D1's size limit stops every write): once a batch
-- has been confirmed on-chain, settled, and kept for ATTESTATION_RETENTION_DAYS, its rows are
-- written to R2 as one object (attestation-batches/<root>.json) and deleted here.

-- When the batch's rows went to R2 (NULL: they are still in `attestations`).
ALTER TABLE batches ADD COLUMN archived_at INTEGER;
CREATE INDEX batches_unarchived ON batches (from_seq) WHERE archived_at IS NULL;

-- Which batch an archived job is in, so its proof can still be served: the job id's 32 bytes
-- and the batch's from_seq, ~50 bytes a job instead of ~1 KB.
CREATE TABLE archived_jobs (
  job_id    BLOB PRIMARY KEY,
  from_seq  INTEGER NOT NULL
) WITHOUT ROWID;
