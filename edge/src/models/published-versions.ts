/**
 * What an inference needs to know about the published versions of a model name — each version's
 * price, payout address, file and the variants devices may run instead of it — from one D1
 * query, cached briefly in the isolate: every request needs it, and a new version only matters
 * once devices have downloaded it (far longer than the cache lives); a publish clears it in its
 * isolate (forgetPublishedVersions), so a name devices already serve is priced from then on.
 */
import { variantAccepted, type Hex, type PublishedVariant } from '@depinfer/shared'

export interface PublishedVersionTerms {
  version: string
  /** The version's own file: the model's identity, which devices advertise. */
  sha256: string
  /** That file's size in bytes. */
  size: number
  priceWei: bigint
  payoutAddress: Hex
  /** Variants whose publisher's report meets its threshold (variantAccepted): devices may run them. */
  acceptedVariants: { kind: PublishedVariant['kind']; sha256: string }[]
}

const CACHE_MS = 2_000
const CACHE_SIZE = 1_000
/**
 * Values, never promises: a request must not await I/O another request started. workerd then
 * fails the waiter ("Cannot perform I/O on behalf of a different request") or cancels it as hung,
 * and its caller gets workerd's plain-text 500 (a soak test: 815 of 233,000 requests, all while
 * requests for one uncached name overlapped). Concurrent misses each ask D1.
 */
const cache = new Map<string, { until: number; versions: PublishedVersionTerms[] }>()

interface Row {
  version: string
  sha256: string
  size: number
  price_wei: string
  payout_address: string
  kind: PublishedVariant['kind'] | null
  variant_sha256: string | null
  top1_agreement: number | null
  min_agreement: number | null
}

async function query(db: D1Database, name: string): Promise<PublishedVersionTerms[]> {
  const { results } = await db
    .prepare(
      `SELECT m.version, m.sha256, m.size, m.price_wei, m.payout_address, v.kind, v.sha256 AS variant_sha256, v.top1_agreement, v.min_agreement
         FROM models m LEFT JOIN model_variants v ON v.name = m.name AND v.version = m.version
        WHERE m.name = ?`,
    )
    .bind(name)
    .all<Row>()
  const versions = new Map<string, PublishedVersionTerms>()
  for (const row of results) {
    let terms = versions.get(row.version)
    if (!terms) {
      terms = { version: row.version, sha256: row.sha256, size: row.size, priceWei: BigInt(row.price_wei), payoutAddress: row.payout_address as Hex, acceptedVariants: [] }
      versions.set(row.version, terms)
    }
    if (row.kind !== null && row.variant_sha256 !== null && row.top1_agreement !== null && row.min_agreement !== null) {
      if (variantAccepted({ report: { top1Agreement: row.top1_agreement }, minAgreement: row.min_agreement })) {
        terms.acceptedVariants.push({ kind: row.kind, sha256: row.variant_sha256 })
      }
    }
  }
  return [...versions.values()]
}

/** The published versions of `name` (none for a model that is not published, e.g. a bundled one). */
export async function publishedVersions(db: D1Database, name: string, now: number): Promise<PublishedVersionTerms[]> {
  const cached = cache.get(name)
  if (cached && cached.until > now) return cached.versions
  let versions: PublishedVersionTerms[]
  try {
    versions = await query(db, name)
  } catch (error) {
    // D1 unreachable: the last versions read stand in, so a published name never falls back
    // to whatever devices advertise under it (any file); throws only for a name never read.
    // Not cached: the next request asks D1 again.
    const last = lastRead.get(name)
    if (last) return last
    throw error
  }
  remember(lastRead, name, versions)
  remember(cache, name, { until: now + CACHE_MS, versions })
  return versions
}

/** The last versions read from D1 per name, for when D1 cannot be read (bounded like the cache). */
const lastRead = new Map<string, PublishedVersionTerms[]>()

function remember<T>(map: Map<string, T>, name: string, value: T): void {
  map.delete(name)
  if (map.size >= CACHE_SIZE) map.delete(map.keys().next().value!)
  map.set(name, value)
}

/** Drops the cached versions of `name`, after publishing one: the next request reads D1. */
export function forgetPublishedVersions(name: string): void {
  cache.delete(name)
}
