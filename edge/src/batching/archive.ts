/**
 * Moves old attestation batches out of D1 into R2 (edge/migrations/0008_attestation_archive.sql).
 * D1 has a size limit, and the attestation log grows by ~1 KB per job (plus ~0.7 KB per priced
 * job's reservation): at 100 jobs a second it would reach 10 GB within days, and then every
 * write, the job path's included, fails.
 *
 * A batch is archived once it is confirmed on-chain, settled (when payments are on), and older
 * than ATTESTATION_RETENTION_DAYS: its attestation rows and its settled reservations are written
 * to R2 as one JSON object, and then, in one D1 transaction, deleted. The batch's row keeps the
 * earliest and latest minting time of its job ids (gateway/job-id.ts), so `GET
 * /api/jobs/{id}/attestation` still finds the job's batch from its id and serves it with its
 * proof (from the R2 object), with nothing left in D1 per job. The R2 write comes first: a tick
 * that dies between the two leaves the rows in D1 and writes the same object again next time.
 */
import { buildMerkleTree, messageOf } from '@depinfer/shared'
import type { AttestationRow, BatchRow } from '../attestations/rows.js'
import { nonNegativeVar, type Env } from '../env.js'
import { DepinferError } from '../errors/base.js'
import { jobIdTimeMs } from '../gateway/job-id.js'
import { paymentsSetting } from '../payments/config.js'
import { attestationsOfBatch } from './batch-store.js'
import { batchLeaves } from './batcher.js'

const DEFAULT_RETENTION_DAYS = 30
const DAY_MS = 86_400_000
/**
 * At most this many batches per tick: each is a tree rebuilt and an R2 write of up to
 * BATCH_MAX_LEAVES rows (~13 MB at 10,000), inside a cron invocation's CPU limit. Five a minute
 * keeps up with a batch a minute and works off a backlog.
 */
const MAX_BATCHES_PER_TICK = 5
/**
 * A settled reservation still counts against its payer for balance reads made before it
 * settled (payments/reservations.ts); those are cached for seconds. Its batch is archived (and
 * the reservation deleted) no sooner than this after the settlement, whatever the retention.
 */
const SETTLED_RESERVATION_KEEP_MS = 10 * 60_000
/**
 * A job id carries the time it was minted when that is at most this long before the Gateway
 * accepted the job's attestation (a job lives for its deadline, seconds to minutes). A random
 * 48-bit prefix lands in such a window about once in 3 million.
 */
const MINTED_BEFORE_ACCEPTED_MAX_MS = 24 * 60 * 60_000

/** What R2 holds for an archived batch. */
export interface ArchivedBatch {
  format: 'depinfer-attestation-batch-1'
  root: string
  fromSeq: number
  toSeq: number
  /** The batch's rows of `attestations`, in seq order: the leaves of its Merkle tree. */
  attestations: AttestationRow[]
  /** Its priced jobs' rows of `reservations` (who paid what for which job), in seq order. */
  reservations: Record<string, unknown>[]
}

/** Where R2 keeps the archive of the batch with Merkle root `root`, in the MODELS bucket. */
const archiveKey = (root: string) => `attestation-batches/${root}.json`

/** How long a confirmed batch's rows stay in D1, in ms: ATTESTATION_RETENTION_DAYS (≥ 0, default 30). */
function retentionMs(env: Pick<Env, 'ATTESTATION_RETENTION_DAYS'>): number {
  return nonNegativeVar(env.ATTESTATION_RETENTION_DAYS, DEFAULT_RETENTION_DAYS) * DAY_MS
}

export interface ArchiveTickReport {
  archived: { root: string; fromSeq: number; toSeq: number }[]
  /** Why the tick stopped early, if it did: the batch stays for the next tick. */
  error?: string
}

/** Archives the batches due at `now`, oldest first. Never throws: failures are reported. */
export async function runArchiveTick(env: Env, now: number): Promise<ArchiveTickReport> {
  const report: ArchiveTickReport = { archived: [] }
  try {
    const retention = retentionMs(env)
    const { results: due } = await env.DB.prepare(
      `SELECT b.* FROM batches b
       WHERE b.archived_at IS NULL AND b.status = 'confirmed' AND b.confirmed_at <= ?1
         AND (?2 = 0 OR EXISTS (SELECT 1 FROM settlements s WHERE s.attestation_root = b.root
               AND (s.status = 'skipped' OR (s.status = 'confirmed' AND s.confirmed_at <= ?3))))
       ORDER BY b.from_seq LIMIT ?4`,
    )
      .bind(now - retention, paymentsSetting(env).enabled ? 1 : 0, now - Math.max(retention, SETTLED_RESERVATION_KEEP_MS), MAX_BATCHES_PER_TICK)
      .all<BatchRow>()
    for (const batch of due) {
      await archiveBatch(env, batch, now)
      report.archived.push({ root: batch.root, fromSeq: batch.from_seq, toSeq: batch.to_seq })
    }
  } catch (error) {
    report.error = messageOf(error)
  }
  // Like the batcher's and the settler's: the batch stays in D1, and the operator's log says why.
  if (report.error) console.warn(`archiver: ${report.error}`)
  return report
}

async function archiveBatch(env: Env, batch: BatchRow, now: number): Promise<void> {
  const attestations = await attestationsOfBatch(env.DB, batch.root)
  // Never delete rows that would not prove the on-chain root again.
  const root = attestations.length === batch.count ? buildMerkleTree(batchLeaves(attestations)).root : undefined
  if (root !== batch.root) {
    throw new Error(`batch ${batch.root}: its ${attestations.length} of ${batch.count} rows in D1 do not rebuild its root; not archived`)
  }
  const { results: reservations } = await env.DB.prepare("SELECT * FROM reservations WHERE settlement_root = ? AND status = 'settled' ORDER BY seq")
    .bind(batch.root)
    .all<Record<string, unknown>>()
  const archive: ArchivedBatch = { format: 'depinfer-attestation-batch-1', root: batch.root, fromSeq: batch.from_seq, toSeq: batch.to_seq, attestations, reservations }
  await env.MODELS.put(archiveKey(batch.root), JSON.stringify(archive), { httpMetadata: { contentType: 'application/json' } })
  // The span of the ids that carry their minting time. Ids minted before they did (random first
  // bytes: jobs recorded before migration 0009) would make it meaningless; such a batch lists
  // its jobs in archived_jobs instead, as batches did before.
  let jobsFromMs: number | null = null
  let jobsToMs: number | null = null
  let untimed = false
  for (const row of attestations) {
    const minted = jobIdTimeMs(row.job_id)
    if (minted > row.accepted_at || row.accepted_at - minted > MINTED_BEFORE_ACCEPTED_MAX_MS) {
      untimed = true
      continue
    }
    jobsFromMs = Math.min(jobsFromMs ?? minted, minted)
    jobsToMs = Math.max(jobsToMs ?? minted, minted)
  }
  await env.DB.batch([
    ...(untimed
      ? [
          env.DB.prepare('INSERT OR IGNORE INTO archived_jobs (job_id, from_seq) SELECT unhex(substr(job_id, 3)), ? FROM attestations WHERE batch_root = ?')
            .bind(batch.from_seq, batch.root),
        ]
      : []),
    env.DB.prepare("DELETE FROM reservations WHERE settlement_root = ? AND status = 'settled'").bind(batch.root),
    env.DB.prepare('DELETE FROM attestations WHERE batch_root = ?').bind(batch.root),
    env.DB.prepare('UPDATE batches SET archived_at = ?, jobs_from_ms = ?, jobs_to_ms = ? WHERE root = ?').bind(now, jobsFromMs, jobsToMs, batch.root),
  ])
}

/** The archive of a job's batch could not be read: the job exists, its proof is not at hand. */
export class ArchiveUnavailableError extends DepinferError {
  constructor(detail: string) {
    super(503, 'attestation-archive-unavailable', 'Attestation archive unavailable', detail, { field: 'jobId', retryAfterSec: 30 })
  }
}

/** Archives read lately: proving several jobs of one batch reads its object once. */
const archiveCache = new Map<string, ArchivedBatch>()
const ARCHIVE_CACHE_SIZE = 2

/**
 * Archived batches whose job times span the time a job id was minted, at most this many: a
 * batch spans its batching interval and its slowest job, so one or two do, more only when jobs
 * waited long for a batch (the chain was down).
 */
const MAX_TIME_CANDIDATES = 16

/** The archived batch holding job `jobId` (0x hex) and that job's row, or undefined when no archived batch has it. */
export async function archivedJob(
  env: Pick<Env, 'DB' | 'MODELS'>,
  jobId: string,
): Promise<{ batch: BatchRow; archive: ArchivedBatch; row: AttestationRow } | undefined> {
  const minted = jobIdTimeMs(jobId)
  const { results: spanning } = await env.DB.prepare(
    'SELECT * FROM batches WHERE archived_at IS NOT NULL AND jobs_to_ms >= ?1 ORDER BY jobs_to_ms LIMIT ?2',
  )
    .bind(minted, MAX_TIME_CANDIDATES)
    .all<BatchRow>()
  const candidates = spanning.filter((batch) => batch.jobs_from_ms !== null && batch.jobs_from_ms <= minted)
  let missing: BatchRow | undefined
  const lookIn = async (batch: BatchRow) => {
    const archive = await archiveOf(env, batch)
    if (!archive) missing ??= batch
    const row = archive?.attestations.find((r) => r.job_id === jobId)
    return archive && row ? { batch, archive, row } : undefined
  }
  for (const batch of candidates) {
    const found = await lookIn(batch)
    if (found) return found
  }
  // Jobs whose ids carry no time (minted before migration 0009) are listed.
  const listed = await env.DB.prepare('SELECT b.* FROM archived_jobs j JOIN batches b ON b.from_seq = j.from_seq WHERE j.job_id = unhex(?)')
    .bind(jobId.slice(2))
    .first<BatchRow>()
  const found = listed ? await lookIn(listed) : undefined
  if (found) return found
  if (missing) {
    throw new ArchiveUnavailableError(`job ${jobId} may be in batch ${missing.root}, whose archive ${archiveKey(missing.root)} is missing from R2`)
  }
  return undefined
}

/** The archive of `batch` from R2 (or the cache), or undefined when R2 has no object for it. */
async function archiveOf(env: Pick<Env, 'MODELS'>, batch: BatchRow): Promise<ArchivedBatch | undefined> {
  const cached = archiveCache.get(batch.root)
  if (cached) return cached
  const object = await env.MODELS.get(archiveKey(batch.root))
  if (!object) return undefined
  const archive = await object.json<ArchivedBatch>()
  if (archiveCache.size >= ARCHIVE_CACHE_SIZE) archiveCache.delete(archiveCache.keys().next().value!)
  archiveCache.set(batch.root, archive)
  return archive
}
