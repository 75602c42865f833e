-- Pay per inference (issue 6): API keys belong to a payer (an Escrow depositor); each priced
-- job reserves its price before it is sent, is charged when its attestation is recorded, and is
-- settled on-chain with its attestation batch, which also posts the cumulative payout root.

-- The Escrow account that pays for this key's jobs; NULL: the key can only run free jobs.
ALTER TABLE api_keys ADD COLUMN payer_address TEXT;

-- One row per priced job. Amounts are exact decimal strings (uint256); the price is also split
-- into whole gwei and the wei below a gwei, so SQLite can sum a payer's holds in 64-bit integers
-- (a sum in wei would overflow at ~9.2 ETH) inside the one conditional INSERT that reserves.
CREATE TABLE reservations (
  id                TEXT PRIMARY KEY,
  payer             TEXT NOT NULL,          -- lowercase address
  status            TEXT NOT NULL CHECK (status IN ('reserved', 'charged', 'settled')),
  price_wei         TEXT NOT NULL,          -- what the device signs: developer price + provider fee
  price_gwei        INTEGER NOT NULL,       -- price_wei / 10^9
  price_rem         INTEGER NOT NULL,       -- price_wei % 10^9
  developer_wei     TEXT NOT NULL,          -- the developer's share (its price minus the protocol fee)
  developer_address TEXT,                   -- the published model's payout address (NULL: no share)
  provider_fee_wei  TEXT NOT NULL,          -- to the device's provider
  protocol_fee_wei  TEXT NOT NULL,
  protocol_address  TEXT,                   -- NULL when protocol_fee_wei is 0
  model_name        TEXT NOT NULL,
  model_version     TEXT NOT NULL,
  api_key_label     TEXT NOT NULL,
  job_id            TEXT UNIQUE,            -- set when charged, with the attestation's seq
  seq               INTEGER,
  settlement_root   TEXT,                   -- the attestation batch it is settled with
  created_at        INTEGER NOT NULL,
  expires_at        INTEGER NOT NULL,       -- a 'reserved' row older than this was abandoned
  charged_at        INTEGER,
  settled_at        INTEGER
);
CREATE INDEX reservations_held ON reservations (payer, status, settled_at);
CREATE INDEX reservations_charged_by_seq ON reservations (seq) WHERE status = 'charged';
CREATE INDEX reservations_by_settlement ON reservations (settlement_root);
CREATE INDEX reservations_expiring ON reservations (expires_at) WHERE status = 'reserved';

-- One row per confirmed attestation batch, in batch order, written before its settlement is
-- sent (like `batches`): a retry re-sends the same debits and payout root, never a second one.
-- Batches without charged jobs are recorded as 'skipped' (nothing to send).
CREATE TABLE settlements (
  attestation_root  TEXT PRIMARY KEY,
  from_seq          INTEGER NOT NULL,
  to_seq            INTEGER NOT NULL,
  status            TEXT NOT NULL CHECK (status IN ('skipped', 'pending', 'sent', 'confirmed')),
  jobs              INTEGER NOT NULL,       -- charged jobs settled
  payers_json       TEXT NOT NULL,          -- settleBatch's payers[] and amounts[] (decimal strings)
  amounts_json      TEXT NOT NULL,
  total_wei         TEXT NOT NULL,          -- sum of amounts
  payout_root       TEXT,                   -- NULL when skipped
  payout_total      TEXT NOT NULL,          -- Escrow.totalDebited after this settlement
  tx_hash           TEXT,
  block_number      INTEGER,
  attempts          INTEGER NOT NULL DEFAULT 0,
  last_error        TEXT,
  recorded_at       INTEGER NOT NULL,
  confirmed_at      INTEGER
);
CREATE INDEX settlements_by_seq ON settlements (from_seq);

-- The cumulative earnings of each account that earned in a settlement, after it (so applying
-- them twice is harmless). Folded into payout_accounts when the settlement is confirmed.
CREATE TABLE settlement_earnings (
  attestation_root  TEXT NOT NULL,
  account           TEXT NOT NULL,          -- lowercase address
  cumulative_wei    TEXT NOT NULL,
  PRIMARY KEY (attestation_root, account)
);

-- Every account's cumulative earnings as of the latest confirmed settlement: the leaves of the
-- payout tree whose root is on-chain, from which GET /api/payouts/{address} serves proofs.
CREATE TABLE payout_accounts (
  account           TEXT PRIMARY KEY,       -- lowercase address
  cumulative_wei    TEXT NOT NULL,
  updated_root      TEXT NOT NULL           -- the attestation root of the settlement that set it
);
