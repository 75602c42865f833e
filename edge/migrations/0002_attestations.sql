-- Every accepted job's attestation, in acceptance order: `seq` is the sequence number the
-- on-chain batches cover (submitBatch(root, count, fromSeq, toSeq)).
CREATE TABLE attestations (
  seq          INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id       TEXT NOT NULL UNIQUE,   -- bytes32, 0x hex
  model_hash   TEXT NOT NULL,          -- bytes32: the model file's sha256
  input_hash   TEXT NOT NULL,          -- keccak256(salt ‖ canonical inputs)
  output_hash  TEXT NOT NULL,          -- keccak256(canonical outputs)
  device       TEXT NOT NULL,          -- address that signed
  price_wei    TEXT NOT NULL,          -- uint256 as a decimal string
  completed_at INTEGER NOT NULL,       -- unix ms, as signed
  signature    TEXT NOT NULL,          -- 65-byte EIP-712 signature, 0x hex
  batch_root   TEXT,                   -- set when a batch takes it (before the transaction is sent)
  accepted_at  INTEGER NOT NULL
);
CREATE INDEX attestations_unbatched ON attestations (seq) WHERE batch_root IS NULL;

-- One row per batch, written before its transaction is sent, so a retry reuses it.
CREATE TABLE batches (
  root         TEXT PRIMARY KEY,
  from_seq     INTEGER NOT NULL,
  to_seq       INTEGER NOT NULL,
  count        INTEGER NOT NULL,
  status       TEXT NOT NULL CHECK (status IN ('recorded', 'sent', 'confirmed')),
  tx_hash      TEXT,
  block_number INTEGER,
  recorded_at  INTEGER NOT NULL,
  confirmed_at INTEGER
);
