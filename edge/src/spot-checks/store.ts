/** Spot checks in D1 (migrations/0011_spot_checks.sql): written by the Gateway, read by /api. */
import { isAddress, type Hex } from '@depinfer/shared'
import { refundStatement } from '../payments/reservations.js'
import type { CheckRecord, SpotCheckOutcome, SpotCheckVerdict } from './spot-check.js'

export interface SpotCheckView {
  /** The checked job: its answer, and attestation at /api/jobs/{jobId}/attestation. */
  jobId: Hex
  model: { name: string; version: string; sha256: string }
  answeredBy: { deviceId: string; address: Hex; salt: Hex }
  verdict: SpotCheckVerdict
  /** Device ids the majority contradicts. */
  faulty: string[]
  checks: CheckRecord[]
  /** The job was priced and refuted, and its payer was not charged (its reservation was dropped before settlement). */
  refunded: boolean
  checkedAt: number
  /** Pass as `?before=` for the next (older) page. */
  cursor: number
}

export interface SpotCheckToRecord extends SpotCheckOutcome {
  jobId: Hex
  model: { name: string; version: string; sha256: string }
  answeredBy: { deviceId: string; address: Hex; salt: Hex }
  checkedAt: number
  /** The priced job's reservation, to drop when the verdict is `refuted` (refundStatement). */
  reservationId?: string
}

interface SpotCheckRow {
  id: number
  job_id: Hex
  model_name: string
  model_version: string
  file_sha256: string
  answered_by: string
  answered_by_address: Hex
  answer_salt: Hex
  verdict: SpotCheckVerdict
  faulty: string
  checks: string
  refunded: number
  checked_at: number
}

/**
 * Records a check and, for a refuted priced job, drops its reservation (refundStatement) in the
 * same transaction, `refunded` saying whether it did: the record never claims a refund that did
 * not happen, nor misses one that did.
 */
export async function recordSpotCheck(db: D1Database, check: SpotCheckToRecord): Promise<void> {
  const refund = check.verdict === 'refuted' && check.reservationId !== undefined ? refundStatement(db, check.reservationId) : undefined
  const insert = db
    .prepare(
      `INSERT INTO spot_checks (job_id, model_name, model_version, file_sha256, answered_by, answered_by_address, answer_salt, verdict, faulty, checks, refunded, checked_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ${refund ? 'changes()' : '0'}, ?)`,
    )
    .bind(
      check.jobId.toLowerCase(),
      check.model.name,
      check.model.version,
      check.model.sha256,
      check.answeredBy.deviceId,
      check.answeredBy.address.toLowerCase(),
      check.answeredBy.salt,
      check.verdict,
      JSON.stringify(check.faulty),
      JSON.stringify(check.checks),
      check.checkedAt,
    )
  // changes(): rows the statement before changed, in this batch's one transaction.
  await db.batch(refund ? [refund, insert] : [insert])
}

/** Whether a spot check refuted this job (its reservation may be gone for that reason). */
export async function wasRefuted(db: D1Database, jobId: string): Promise<boolean> {
  return (await db.prepare("SELECT 1 AS one FROM spot_checks WHERE job_id = ? AND verdict = 'refuted'").bind(jobId.toLowerCase()).first()) !== null
}

export async function spotCheckOfJob(db: D1Database, jobId: string): Promise<SpotCheckView | undefined> {
  const row = await db.prepare('SELECT * FROM spot_checks WHERE job_id = ?').bind(jobId.toLowerCase()).first<SpotCheckRow>()
  return row ? viewOf(row) : undefined
}

export interface SpotCheckQuery {
  limit: number
  /** Only rows older than this cursor. */
  before?: number
  verdict?: SpotCheckVerdict
  /** Only checks a device took part in (answered or checked), by device id or address. */
  device?: string
}

/** Newest first. */
export async function listSpotChecks(db: D1Database, query: SpotCheckQuery): Promise<SpotCheckView[]> {
  const where: string[] = []
  const binds: (string | number)[] = []
  if (query.before !== undefined) {
    where.push('id < ?')
    binds.push(query.before)
  }
  if (query.verdict !== undefined) {
    where.push('verdict = ?')
    binds.push(query.verdict)
  }
  if (query.device !== undefined) {
    // Checkers appear only inside the JSON of `checks`, quoted: match the quoted value exactly.
    const device = isAddress(query.device) ? query.device.toLowerCase() : query.device
    where.push('(answered_by = ? OR answered_by_address = ? OR instr(checks, ?) > 0)')
    binds.push(device, device, JSON.stringify(device))
  }
  const sql = `SELECT * FROM spot_checks ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`
  const { results } = await db.prepare(sql).bind(...binds, query.limit).all<SpotCheckRow>()
  return results.map(viewOf)
}

function viewOf(row: SpotCheckRow): SpotCheckView {
  return {
    jobId: row.job_id,
    model: { name: row.model_name, version: row.model_version, sha256: row.file_sha256 },
    answeredBy: { deviceId: row.answered_by, address: row.answered_by_address, salt: row.answer_salt },
    verdict: row.verdict,
    faulty: JSON.parse(row.faulty) as string[],
    checks: JSON.parse(row.checks) as CheckRecord[],
    refunded: row.refunded === 1,
    checkedAt: row.checked_at,
    cursor: row.id,
  }
}
