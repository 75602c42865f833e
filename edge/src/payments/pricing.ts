/**
 * The price of a job on a model (issue 6): the published version's developer price plus the
 * provider fee (price.ts). A model that is not published (the agent's bundled demo models) has
 * developer price 0.
 *
 * A published (name, version) prices any served model of that name and version; the job is then
 * pinned to the published file's sha256, so the developer is only paid for running its file.
 */
import type { Hex } from '@depinfer/shared'
import type { PaymentsConfig } from './config.js'
import { priceOf, type JobPrice } from './price.js'

export interface JobQuote extends JobPrice {
  /** The version the price is for, when it had to be resolved (the job is sent for it). */
  version: string | undefined
  /** The published file the job must run, when a published version prices it. */
  sha256: string | undefined
}

interface PublishedPrice {
  version: string
  sha256: string
  priceWei: bigint
  payoutAddress: Hex
}

/**
 * Published versions by name, briefly cached in the isolate: every priced request needs them,
 * and a new version only matters once devices have downloaded it (far longer than this).
 */
const PRICE_CACHE_MS = 2_000
const PRICE_CACHE_SIZE = 1_000
const priceCache = new Map<string, { until: number; prices: PublishedPrice[] }>()

async function publishedPrices(db: D1Database, name: string, now: number): Promise<PublishedPrice[]> {
  const cached = priceCache.get(name)
  if (cached && cached.until > now) return cached.prices
  const { results } = await db
    .prepare('SELECT version, sha256, price_wei, payout_address FROM models WHERE name = ?')
    .bind(name)
    .all<{ version: string; sha256: string; price_wei: string; payout_address: string }>()
  const prices = results.map((r) => ({ version: r.version, sha256: r.sha256, priceWei: BigInt(r.price_wei), payoutAddress: r.payout_address as Hex }))
  if (priceCache.size >= PRICE_CACHE_SIZE) priceCache.delete(priceCache.keys().next().value!)
  priceCache.set(name, { until: now + PRICE_CACHE_MS, prices })
  return prices
}

/**
 * The quote for a job on `name` (and `version`, when the request names one). Without a version
 * and with published versions of the name, the price depends on which version the gateway
 * would pick: `resolveVersion` asks it (one extra RPC, only on this path).
 */
export async function quoteJob(
  db: D1Database,
  config: PaymentsConfig,
  name: string,
  version: string | undefined,
  resolveVersion: () => Promise<string>,
  now: number = Date.now(),
): Promise<JobQuote> {
  const published = await publishedPrices(db, name, now)
  if (published.length === 0) return { ...priceOf(config, 0n, null), version, sha256: undefined }
  const resolved = version ?? (await resolveVersion())
  const match = published.find((p) => p.version === resolved)
  if (!match) return { ...priceOf(config, 0n, null), version: resolved, sha256: undefined }
  return { ...priceOf(config, match.priceWei, match.payoutAddress), version: resolved, sha256: match.sha256 }
}
