-- Charged jobs whose payer's Escrow balance could not pay for them when their batch was settled:
-- the payer withdrew while they were still unsettled (settlement had fallen behind its withdrawal
-- delay, e.g. through a chain outage). Settling them would revert the whole batch, and every
-- later batch behind it, so the settler leaves them out: their payer is not debited and their
-- earners are not paid (payments/settler.ts). Their reservations are dropped; this keeps the
-- record of what went unpaid, and why.
CREATE TABLE unfunded_jobs (
  reservation_id TEXT PRIMARY KEY,
  payer          TEXT NOT NULL,   -- lowercase 0x address
  price_wei      TEXT NOT NULL,   -- decimal
  job_id         TEXT NOT NULL,
  seq            INTEGER NOT NULL,
  batch_root     TEXT NOT NULL,   -- the attestation batch whose settlement left it out
  balance_wei    TEXT NOT NULL,   -- the payer's Escrow balance the settlement read
  recorded_at    INTEGER NOT NULL
);
CREATE INDEX unfunded_jobs_by_batch ON unfunded_jobs (batch_root);
