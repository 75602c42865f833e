-- Self-service API keys (POST /api/keys, GET /api/keys, DELETE /api/keys/{id}): which account a
-- key belongs to, so a key lists and revokes its own account's keys and no one else's.
--
-- A key with a payer belongs to that payer's account: every key tied to the same address,
-- whoever made it (a key is only ever tied to a payer by a key of that payer or by the payer's
-- own signature). A key without a payer belongs to the account of the key-without-payer it
-- descends from: account_root is that first key's hash. NULL: the key is an account's first key
-- itself, as is every key made before this migration or outside the edge (`npm run key:create`'s
-- wrangler command, `npm start`).
ALTER TABLE api_keys ADD COLUMN account_root TEXT;

-- The hash of the key that made this one through POST /api/keys (NULL: made outside the edge).
-- Shown to the account (as an id), so it can see which key made which.
ALTER TABLE api_keys ADD COLUMN created_by TEXT;

CREATE INDEX api_keys_by_account_root ON api_keys (account_root);
-- An account's keys by payer; older rows may hold the address in mixed case.
CREATE INDEX api_keys_by_payer ON api_keys (lower(payer_address));
