/**
 * API-key authentication: `Authorization: Bearer <key>` (RFC 6750), checked against the
 * SHA-256 hashes in D1. Positive answers are cached in the isolate for a short while so a hot
 * path does not query D1 on every request; a revoked key stops working within that time.
 */
import { sha256Hex, type Hex } from '@depinfer/shared'
import type { MiddlewareHandler } from 'hono'
import type { Env } from '../env.js'
import { UnauthorizedError } from '../errors/request.js'

const CACHE_TTL_MS = 30_000
/** Keys seen valid recently, by the key itself: hashing every request cost ~4% of the edge's CPU. */
const validKeys = new Map<string, { until: number; label: string; payer: Hex | null }>()

/** What authentication tells the routes after it: whose key it was. */
export interface AuthVariables {
  /** The label the API key was created with (`npm run key:create -- <label>`). */
  apiKeyLabel: string
  /**
   * The Escrow account that pays for this key's priced jobs (lowercase), or null: the key can
   * only run free jobs (`npm run key:create -- <label> --payer 0x…`).
   */
  payer: Hex | null
}

export const apiKeyAuth: MiddlewareHandler<{ Bindings: Env; Variables: AuthVariables }> = async (c, next) => {
  const header = c.req.header('Authorization')
  const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null
  if (!match) throw new UnauthorizedError('missing Authorization: Bearer <api key> header')
  const key = match[1]!
  const now = Date.now()
  let known = validKeys.get(key)
  if (!known || known.until < now) {
    const row = await c.env.DB.prepare('SELECT label, payer_address FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL')
      .bind(sha256Hex(key))
      .first<{ label: string; payer_address: string | null }>()
    if (!row) throw new UnauthorizedError('API key not recognised or revoked')
    // Only a well-formed address is a payer: anything else would fail on-chain reads later.
    const payer = row.payer_address && /^0x[0-9a-fA-F]{40}$/.test(row.payer_address) ? (row.payer_address.toLowerCase() as Hex) : null
    known = { until: now + CACHE_TTL_MS, label: row.label, payer }
    validKeys.set(key, known)
  }
  c.set('apiKeyLabel', known.label)
  c.set('payer', known.payer)
  await next()
}
