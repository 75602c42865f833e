-- Who owns each published model name (the reviewer's "nobody owns a model name"): a name belongs
-- to whoever first published it, and only they publish its later versions. Without this any API
-- key could publish the next version of anyone's model with its own file and payout address, and
-- devices following the name (`{ "published": name }`) would move to it.
--
-- An owner is an identity string:
--   account:<payer>   a key tied to an Escrow payer (api_keys.payer_address): every key of that
--                     account may publish, so rotating keys keeps the names;
--   key:<key_hash>    a key without a payer: that key alone (labels are not unique, hashes are);
--   label:<label>     only for names published before this migration whose label matches keys
--                     of more than one identity (or none left): any key with that label, as before.
CREATE TABLE model_owners (
  name        TEXT PRIMARY KEY,
  owner       TEXT NOT NULL,
  claimed_at  INTEGER NOT NULL
);

-- Names published before owners existed recorded only the label of the publishing key
-- (models.published_by). Each name goes to the identity of the keys with the label of its first
-- version when they all share one identity; otherwise the label itself stays the owner, so the
-- original publisher keeps publishing (auth.ts only takes a well-formed payer, as here).
INSERT INTO model_owners (name, owner, claimed_at)
SELECT first.name,
       CASE
         WHEN (SELECT COUNT(DISTINCT identity) FROM (
                 SELECT CASE
                          WHEN length(k.payer_address) = 42 AND lower(substr(k.payer_address, 1, 2)) = '0x'
                               AND NOT lower(substr(k.payer_address, 3)) GLOB '*[^0-9a-f]*'
                            THEN 'account:' || lower(k.payer_address)
                          ELSE 'key:' || k.key_hash
                        END AS identity
                   FROM api_keys k WHERE k.label = first.published_by)) = 1
           THEN (SELECT CASE
                          WHEN length(k.payer_address) = 42 AND lower(substr(k.payer_address, 1, 2)) = '0x'
                               AND NOT lower(substr(k.payer_address, 3)) GLOB '*[^0-9a-f]*'
                            THEN 'account:' || lower(k.payer_address)
                          ELSE 'key:' || k.key_hash
                        END
                   FROM api_keys k WHERE k.label = first.published_by LIMIT 1)
         ELSE 'label:' || first.published_by
       END,
       first.published_at
  FROM models first
 WHERE first.version_number = (SELECT MIN(m.version_number) FROM models m WHERE m.name = first.name);
