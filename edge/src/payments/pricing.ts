/**
 * The price of a job on a model (issue 6): the published version's developer price plus the
 * provider fee (price.ts). A model that is not published (the agent's bundled demo models) has
 * developer price 0.
 *
 * A published (name, version) prices any served model of that name and version; the job is then
 * pinned to the published file's sha256, so the developer is only paid for running its file (or
 * a variant it published with that version, see gateway/served-file.ts): the same price either way.
 */
import { publishedVersions } from '../models/published-versions.js'
import type { PaymentsConfig } from './config.js'
import { priceOf, type JobPrice } from './price.js'

export interface JobQuote extends JobPrice {
  /** The version the price is for, when it had to be resolved (the job is sent for it). */
  version: string | undefined
  /** The published file the job must run, when a published version prices it. */
  sha256: string | undefined
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
  const published = await publishedVersions(db, name, now)
  if (published.length === 0) return { ...priceOf(config, 0n, null), version, sha256: undefined }
  const resolved = version ?? (await resolveVersion())
  const match = published.find((p) => p.version === resolved)
  if (!match) return { ...priceOf(config, 0n, null), version: resolved, sha256: undefined }
  return { ...priceOf(config, match.priceWei, match.payoutAddress), version: resolved, sha256: match.sha256 }
}
