-- Every accepted job's attestation, in acceptance order: `seq` is the sequence number the
-- on-chain batches cover (submitBatch(root, count, fromSeq, toSeq)) and part of the leaf.
CREATE TABLE attestations (
  seq                INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id             TEXT NOT NULL UNIQUE,   -- bytes32, 0x hex
  model_hash         TEXT NOT NULL,          -- bytes32: 0x + the model file's sha256
  input_hash         TEXT NOT NULL,          -- keccak256(salt ‖ canonical inputs)
  output_hash        TEXT NOT NULL,          -- keccak256(canonical outputs)
  device             TEXT NOT NULL,          -- address that signed
  price_wei          TEXT NOT NULL,          -- uint256 as a decimal string
  completed_at       TEXT NOT NULL,          -- unix ms (uint64) as signed, decimal string
  signature          TEXT NOT NULL,          -- 65-byte EIP-712 signature, 0x hex
  chain_id           TEXT NOT NULL,          -- the EIP-712 domain it was signed under
  verifying_contract TEXT NOT NULL,
  device_id          TEXT NOT NULL,          -- the device's name on the network
  batch_root         TEXT,                   -- set when a batch takes it (before the transaction is sent)
  accepted_at        INTEGER NOT NULL
);
CREATE INDEX attestations_unbatched ON attestations (seq) WHERE batch_root IS NULL;
CREATE INDEX attestations_by_batch ON attestations (batch_root, seq);

-- One row per batch, written (with its attestations' batch_root) before its transaction is
-- sent, so a retry re-sends the same root and never builds a second batch of the same rows.
CREATE TABLE batches (
  root          TEXT PRIMARY KEY,
  from_seq      INTEGER NOT NULL,
  to_seq        INTEGER NOT NULL,
  count         INTEGER NOT NULL,
  status        TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'confirmed')),
  tx_hash       TEXT,
  block_number  INTEGER,
  attempts      INTEGER NOT NULL DEFAULT 0,
  last_error    TEXT,
  recorded_at   INTEGER NOT NULL,
  confirmed_at  INTEGER
);
CREATE INDEX batches_by_seq ON batches (from_seq);

-- Keeps overlapping cron invocations from batching at the same time.
CREATE TABLE leases (
  name        TEXT PRIMARY KEY,
  holder      TEXT NOT NULL,
  expires_at  INTEGER NOT NULL
);
