/**
 * API-key authentication: `Authorization: Bearer <key>` (RFC 6750), checked against the
 * SHA-256 hashes in D1. Positive answers are cached in the isolate for a short while so a hot
 * path does not query D1 on every request; a revoked key stops working within that time. A key
 * revoked through this isolate (DELETE /api/keys/{id}, `forgetApiKey`) stops here at once.
 */
import { isAddress, sha256Hex, type Hex } from '@depinfer/shared'
import type { MiddlewareHandler } from 'hono'
import type { Env } from '../env.js'
import { UnauthorizedError } from '../errors/request.js'

const CACHE_TTL_MS = 30_000
/** Keys seen valid recently, by the key itself: hashing every request cost ~4% of the edge's CPU. */
const validKeys = new Map<string, { until: number; label: string; keyHash: string; payer: Hex | null; byOperator: boolean; account: string }>()
/**
 * Hashes of keys revoked through this isolate in the last CACHE_TTL_MS, with when that ends: a
 * request that read the key's row just before the revocation must not cache it again after.
 */
const revokedHere = new Map<string, number>()

/**
 * Forgets a key this isolate may have cached as valid, by its hash (the key itself is never
 * stored): call it right after revoking the key in D1. Other isolates keep their cached answer
 * for up to CACHE_TTL_MS (30 s).
 */
export function forgetApiKey(keyHash: string): void {
  const now = Date.now()
  for (const [hash, until] of revokedHere) if (until < now) revokedHere.delete(hash)
  revokedHere.set(keyHash, now + CACHE_TTL_MS)
  for (const [key, entry] of validKeys) if (entry.keyHash === keyHash) validKeys.delete(key)
}

/** What authentication tells the routes after it: whose key it was. */
export interface AuthVariables {
  /** The label the API key was created with (`npm run key:create -- <label>`). */
  apiKeyLabel: string
  /**
   * The key's SHA-256 (api_keys.key_hash): what identifies a key, as labels are not unique. Not
   * a secret (the key is 24 random bytes); a key without a payer owns the model names it publishes by it.
   */
  apiKeyHash: string
  /**
   * Made by the operator outside the edge (`npm run key:create`'s wrangler command, `npm start`),
   * not through POST /api/keys, where anyone with a key picks any label.
   */
  apiKeyByOperator: boolean
  /**
   * The Escrow account that pays for this key's priced jobs (lowercase), or null: the key can
   * only run free jobs (`npm run key:create -- <label> --payer 0x…`).
   */
  payer: Hex | null
  /**
   * Whose key it is, across keys: `payer:<address>` for a key with a payer (every key of that
   * payer), else `key:<hash>` of the account's first key (keys made by a key without a payer
   * share its account, api_keys.account_root). What per-caller limits count.
   */
  apiKeyAccount: string
}

const EXPECTED = 'expected `Authorization: Bearer <api key>`'

/**
 * The API key of an `Authorization: Bearer <key>` header, or a 401 saying what is wrong with
 * the header: absent, another scheme, no key, or more than one value. Only the scheme is ever
 * quoted back: anything else in the header may be a secret.
 */
export function bearerKey(header: string | undefined): string {
  const value = header?.trim() ?? ''
  if (value === '') throw new UnauthorizedError(`missing or empty Authorization header; ${EXPECTED}`)
  // A repeated Authorization header reaches us as one value, the copies joined by commas.
  if (value.includes(',')) {
    throw new UnauthorizedError(`malformed Authorization header: it holds several values (a repeated header, or a comma); ${EXPECTED}, once`)
  }
  const [scheme = '', ...rest] = value.split(/\s+/)
  if (scheme.toLowerCase() !== 'bearer') {
    // One word is a credential without a scheme more often than a scheme without a credential.
    const what = rest.length === 0 ? 'has no scheme' : /^[A-Za-z][A-Za-z0-9_-]{0,19}$/.test(scheme) ? `uses the ${scheme} scheme` : 'does not use the Bearer scheme'
    throw new UnauthorizedError(`malformed Authorization header: it ${what}; ${EXPECTED}`)
  }
  if (rest.length === 0) throw new UnauthorizedError(`malformed Authorization header: Bearer without an API key; ${EXPECTED}`)
  if (rest.length > 1) {
    throw new UnauthorizedError(`malformed Authorization header: ${rest.length} words after Bearer, where the key is one; ${EXPECTED}`)
  }
  return rest[0]!
}

export const apiKeyAuth: MiddlewareHandler<{ Bindings: Env; Variables: AuthVariables }> = async (c, next) => {
  const key = bearerKey(c.req.header('Authorization'))
  const now = Date.now()
  let known = validKeys.get(key)
  if (!known || known.until < now) {
    const keyHash = sha256Hex(key)
    const row = await c.env.DB.prepare('SELECT label, payer_address, created_by, account_root FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL')
      .bind(keyHash)
      .first<{ label: string; payer_address: string | null; created_by: string | null; account_root: string | null }>()
    if (!row || (revokedHere.get(keyHash) ?? 0) >= now) throw new UnauthorizedError('API key not recognised or revoked')
    // Only a well-formed address is a payer: anything else would fail on-chain reads later.
    const payer = row.payer_address && isAddress(row.payer_address) ? (row.payer_address.toLowerCase() as Hex) : null
    const account = payer ? `payer:${payer}` : `key:${row.account_root ?? keyHash}`
    known = { until: now + CACHE_TTL_MS, label: row.label, keyHash, payer, byOperator: row.created_by === null, account }
    validKeys.set(key, known)
  }
  c.set('apiKeyLabel', known.label)
  c.set('apiKeyHash', known.keyHash)
  c.set('apiKeyByOperator', known.byOperator)
  c.set('payer', known.payer)
  c.set('apiKeyAccount', known.account)
  await next()
}
