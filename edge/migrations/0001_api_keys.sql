-- API keys are stored only as the SHA-256 of the key: keys are 32 random bytes, so a fast hash
-- is enough (there is nothing to brute-force), and a leaked table reveals no usable key.
CREATE TABLE api_keys (
  key_hash   TEXT PRIMARY KEY,
  label      TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);
