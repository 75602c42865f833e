-- An archived job's batch is found from its id alone (edge/src/gateway/job-id.ts: a job id's
-- first 6 bytes are the time it was minted), not from a row per job: `archived_jobs` grew by
-- ~50 bytes a job forever (10 GB, D1's limit, at ~200 million jobs). Each archived batch keeps
-- the earliest and latest minting time of its jobs instead.
ALTER TABLE batches ADD COLUMN jobs_from_ms INTEGER;
ALTER TABLE batches ADD COLUMN jobs_to_ms INTEGER;
CREATE INDEX batches_archived_job_times ON batches (jobs_to_ms) WHERE archived_at IS NOT NULL;

-- `archived_jobs` is written only for batches holding jobs recorded before this migration (ids
-- that carry no time), and read when the time finds nothing.
