/**
 * Self-service API keys (mounted at `/api/keys`, behind API-key auth): the same under `npm start`
 * (D1 in Miniflare) as in production, so nobody needs database access to get a second key.
 *
 *   POST   /api/keys        {label, payer?, key_hash?, signature?}   a new key (201)
 *   GET    /api/keys                                                 the account's keys
 *   DELETE /api/keys/{id}                                            revokes one of them
 *
 * Accounts. A key with a payer belongs to that payer's account (every key tied to the address);
 * a key without one to the account of the first key-without-payer it descends from
 * (api_keys.account_root, migration 0007). A key lists and revokes its own account's keys only.
 *
 * Which payer a new key gets:
 * - `payer` left out, or the caller's own payer: the caller's payer (or none) and account —
 *   key rotation, one key per app. No signature: the account already holds a key.
 * - `payer: null`: no payer (free jobs only), in an account of its own when the caller has a
 *   payer (a separate identity, e.g. a model developer's key that spends nothing).
 * - another address: only with that payer's consent, `signature` = its EIP-191 personal_sign
 *   over the message keys/payer-binding.ts defines (key hash, payer, this edge's chain and Escrow). The client
 *   makes the key and sends only `key_hash`, its SHA-256, which the signature names: it cannot tie
 *   any other key, and a hash is stored once (revoked rows stay), so it cannot be replayed. A
 *   challenge from the server would need state between two requests and add nothing to that.
 *   A key is never tied to a payer that did not sign (403 naming `signature`).
 *
 * With `key_hash` the key never reaches the edge; without it (allowed except for another payer)
 * the edge makes one and answers it once, in the 201. A key's id is the first 16 hex digits of
 * its hash. Every management call re-reads the calling key in D1, so a key revoked elsewhere,
 * still cached as valid by this isolate's auth for up to 30 s, cannot make or revoke keys.
 * A revocation clears this isolate's cache at once; other isolates may accept the key for up to
 * 30 s more (auth.ts CACHE_TTL_MS).
 */
import { addressProblem, isAddress, sha256Hex, type Hex } from '@depinfer/shared'
import { Hono, type Context } from 'hono'
import type { Env } from '../env.js'
import { DepinferError } from '../errors/base.js'
import { InvalidRequestError, NotFoundError, UnauthorizedError } from '../errors/request.js'
import { readBodyCapped } from '../http/read-body.js'
import { KEY_HASH_PATTERN, payerBindingMessage, payerBindingSigner, SIGNATURE_PATTERN } from '../keys/payer-binding.js'
import { apiKeyAuth, forgetApiKey, type AuthVariables } from '../middleware/auth.js'
import { paymentsSetting } from '../payments/config.js'
import { labelProblem, MAX_LABEL_LENGTH } from '../keys/label.js'

type KeysEnv = { Bindings: Env; Variables: AuthVariables }

export const keys = new Hono<KeysEnv>()

keys.use('*', apiKeyAuth)

/** Hex digits of the key hash that make a key's id: 64 bits, unique in any real account. */
const ID_LENGTH = 16
const MAX_BODY_BYTES = 16 * 1024
const BODY_FIELDS = ['label', 'payer', 'key_hash', 'signature'] as const

/** 403: the payer's signature is missing its consent (signed by someone else, or over another message). */
class PayerSignatureError extends DepinferError {
  constructor(detail: string) {
    super(403, 'payer-signature-invalid', "Not the payer's signature", detail, { field: 'signature' })
  }
}

class KeyConflictError extends DepinferError {
  constructor(detail: string, field: 'key_hash' | 'id') {
    super(409, field === 'id' ? 'ambiguous-key-id' : 'key-exists', field === 'id' ? 'Ambiguous key id' : 'Key exists', detail, { field })
  }
}

interface KeyRow {
  key_hash: string
  label: string
  created_at: number
  payer_address: string | null
  revoked_at: number | null
  created_by: string | null
}

/** Who is calling, read from D1 now rather than from auth's cache. */
interface Caller {
  keyHash: string
  payer: Hex | null
  /** The account of a caller without a payer: its first key's hash (null when it has a payer). */
  root: string | null
}

/** As auth.ts reads it: only a well-formed address is a payer. */
const payerOf = (value: string | null): Hex | null => (value && isAddress(value) ? (value.toLowerCase() as Hex) : null)

async function caller(c: Context<KeysEnv>): Promise<Caller> {
  const keyHash = c.get('apiKeyHash')
  const row = await c.env.DB.prepare('SELECT payer_address, account_root FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL')
    .bind(keyHash)
    .first<{ payer_address: string | null; account_root: string | null }>()
  if (!row) {
    // Revoked through another isolate: this one's cache is stale.
    forgetApiKey(keyHash)
    throw new UnauthorizedError('API key not recognised or revoked')
  }
  const payer = payerOf(row.payer_address)
  return { keyHash, payer, root: payer ? null : (row.account_root ?? keyHash) }
}

/** Every key of the caller's account, revoked ones included, oldest first. */
async function accountKeys(db: D1Database, who: Caller): Promise<KeyRow[]> {
  const columns = 'key_hash, label, created_at, payer_address, revoked_at, created_by'
  if (who.payer) {
    const { results } = await db.prepare(`SELECT ${columns} FROM api_keys WHERE lower(payer_address) = ? ORDER BY created_at, key_hash`).bind(who.payer).all<KeyRow>()
    return results
  }
  const { results } = await db
    .prepare(`SELECT ${columns} FROM api_keys WHERE account_root = ?1 OR key_hash = ?1 ORDER BY created_at, key_hash`)
    .bind(who.root)
    .all<KeyRow>()
  return results.filter((row) => payerOf(row.payer_address) === null)
}

function view(row: KeyRow, who: Caller) {
  return {
    id: row.key_hash.slice(0, ID_LENGTH),
    label: row.label,
    payer: payerOf(row.payer_address),
    createdAt: row.created_at,
    revokedAt: row.revoked_at,
    createdBy: row.created_by && row.created_by.slice(0, ID_LENGTH),
    current: row.key_hash === who.keyHash,
  }
}

async function jsonBody(c: Context<KeysEnv>): Promise<Record<string, unknown>> {
  const bytes = await readBodyCapped(c.req.raw, MAX_BODY_BYTES)
  let body: unknown
  try {
    body = JSON.parse(new TextDecoder().decode(bytes))
  } catch {
    throw new InvalidRequestError('body must be a JSON object: {"label": "…", "payer"?: "0x…", "key_hash"?: "<sha256 hex>", "signature"?: "0x…"}', 'body')
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new InvalidRequestError('body must be a JSON object', 'body')
  const unknown = Object.keys(body).find((field) => !(BODY_FIELDS as readonly string[]).includes(field))
  if (unknown !== undefined) {
    throw new InvalidRequestError(`${JSON.stringify(unknown.slice(0, 40))} is not a field of a new key (fields: ${BODY_FIELDS.join(', ')}; keys do not expire, revoke them instead)`, unknown.slice(0, 40))
  }
  return body as Record<string, unknown>
}

function parseLabel(value: unknown): string {
  if (typeof value !== 'string') throw new InvalidRequestError(`label is required: a name for the key, 1-${MAX_LABEL_LENGTH} characters`, 'label')
  const label = value.trim()
  const problem = labelProblem(label)
  if (problem) throw new InvalidRequestError(problem, 'label')
  return label
}

function newKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(24))
  return `dpi_${btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')}`
}

keys.post('/', async (c) => {
  const who = await caller(c)
  const body = await jsonBody(c)
  const label = parseLabel(body.label)

  // The payer the key asks for, and whether that is the caller's own (no consent needed).
  let payer: Hex | null
  if (body.payer === undefined) payer = who.payer
  else if (body.payer === null) payer = null
  else if (typeof body.payer !== 'string' || !isAddress(body.payer)) {
    throw new InvalidRequestError(`payer must be an address (0x and 40 hex digits) or null, got ${JSON.stringify(body.payer).slice(0, 80)}`, 'payer')
  } else {
    const typo = addressProblem(body.payer)
    if (typo !== undefined) throw new InvalidRequestError(`payer ${typo}, got ${body.payer}`, 'payer')
    payer = body.payer.toLowerCase() as Hex
  }
  const otherPayer = payer !== null && payer !== who.payer ? payer : undefined

  let keyHash: string | undefined
  if (body.key_hash !== undefined) {
    if (typeof body.key_hash !== 'string' || !KEY_HASH_PATTERN.test(body.key_hash.toLowerCase())) {
      throw new InvalidRequestError(`key_hash must be the SHA-256 of the new key, 64 hex digits, got ${JSON.stringify(body.key_hash).slice(0, 80)}`, 'key_hash')
    }
    keyHash = body.key_hash.toLowerCase()
  }

  if (otherPayer) {
    if (keyHash === undefined) {
      throw new InvalidRequestError(
        `a key for another payer (${otherPayer}) is made by the client: send key_hash, the SHA-256 of the key, and signature, the payer's personal_sign over the message edge/src/keys/payer-binding.ts defines (it names the key hash, the payer, this edge's chain and Escrow; README "API keys")`,
        'key_hash',
      )
    }
    // The signature names the Escrow this edge charges: without payments there is none to name.
    const payments = paymentsSetting(c.env)
    if (!payments.enabled) throw new InvalidRequestError(`this edge charges no payer (${payments.reason}): a key cannot be tied to one`, 'payer')
    const domain = { chainId: payments.config.chainId, escrow: payments.config.escrow }
    const message = payerBindingMessage(keyHash, otherPayer, domain)
    if (body.signature === undefined || body.signature === null) {
      throw new InvalidRequestError(`signature is required to tie a key to another payer (${otherPayer}): its EIP-191 personal_sign over ${JSON.stringify(message)}`, 'signature')
    }
    if (typeof body.signature !== 'string' || !SIGNATURE_PATTERN.test(body.signature)) {
      throw new InvalidRequestError('signature must be 0x and 65 bytes of hex (r, s, v), as personal_sign returns it', 'signature')
    }
    const signer = await payerBindingSigner(keyHash, otherPayer, domain, body.signature)
    if (signer === undefined) throw new InvalidRequestError('signature is not a valid secp256k1 signature', 'signature')
    if (signer !== otherPayer) {
      throw new PayerSignatureError(
        `the signature over ${JSON.stringify(message)} recovers to ${signer}, not the payer ${otherPayer}: only the payer can tie a key to itself (was it signed over another key_hash or by another account?)`,
      )
    }
  }

  const key = keyHash === undefined ? newKey() : undefined
  const hash = keyHash ?? sha256Hex(key!)
  // Same payer (or none, staying in the caller's account): the caller's account; a payer's
  // account is its address; a key without a payer made by a payer's key starts its own account.
  const root = payer === null && who.payer === null ? who.root : null
  const createdAt = Date.now()
  const result = await c.env.DB.prepare(
    `INSERT INTO api_keys (key_hash, label, created_at, payer_address, account_root, created_by) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (key_hash) DO NOTHING`,
  )
    .bind(hash, label, createdAt, payer, root, who.keyHash)
    .run()
  if (result.meta.changes === 0) {
    throw new KeyConflictError('a key with this key_hash exists already (a key is stored once, and revoked keys stay revoked): make a new key', 'key_hash')
  }
  const row: KeyRow = { key_hash: hash, label, created_at: createdAt, payer_address: payer, revoked_at: null, created_by: who.keyHash }
  if (key !== undefined) c.header('Cache-Control', 'no-store')
  // The key itself only when the edge made it: shown this once, only its hash is kept.
  return c.json({ ...view(row, who), ...(key !== undefined && { key }) }, 201)
})

keys.get('/', async (c) => {
  const who = await caller(c)
  const rows = await accountKeys(c.env.DB, who)
  return c.json({ payer: who.payer, keys: rows.map((row) => view(row, who)) })
})

keys.delete('/:id', async (c) => {
  const id = c.req.param('id').toLowerCase()
  if (!/^[0-9a-f]{16,64}$/.test(id)) {
    throw new InvalidRequestError(`id must be a key's id (the first ${ID_LENGTH} hex digits of its hash, as GET /api/keys lists it), got ${JSON.stringify(c.req.param('id').slice(0, 80))}`, 'id')
  }
  const who = await caller(c)
  const matches = (await accountKeys(c.env.DB, who)).filter((row) => row.key_hash.startsWith(id))
  // Another account's key is as unknown as no key: its existence is not this caller's to learn.
  if (matches.length === 0) throw new NotFoundError(`this account has no key ${id} (GET /api/keys lists its keys)`, 'id')
  if (matches.length > 1) throw new KeyConflictError(`${matches.length} keys of this account have ids starting ${id}: give more hex digits of the hash`, 'id')
  const row = matches[0]!
  if (row.revoked_at === null) {
    const revokedAt = Date.now()
    await c.env.DB.prepare('UPDATE api_keys SET revoked_at = ? WHERE key_hash = ? AND revoked_at IS NULL').bind(revokedAt, row.key_hash).run()
    const stored = await c.env.DB.prepare('SELECT revoked_at FROM api_keys WHERE key_hash = ?').bind(row.key_hash).first<{ revoked_at: number | null }>()
    row.revoked_at = stored?.revoked_at ?? revokedAt
  }
  // Now, in this isolate; other isolates' caches let it through for up to 30 s more.
  forgetApiKey(row.key_hash)
  return c.json(view(row, who))
})
