/**
 * Resumable uploads of model files too large for one request (a Worker takes bodies up to
 * 100 MB, and holds 128 MB of memory): the file goes to R2 in parts, as an R2 multipart upload
 * under a staging key, and is checked as a stream once complete: its sha256 must be the one
 * declared when the upload began, and it must read as an ONNX model (onnxSkeleton: the graph
 * without its tensors' data). Then it is copied to its key under its sha256, where R2 checks the
 * sha256 once more, and recorded in model_files like a file of POST /api/models/files: a publish
 * names it by sha256.
 *
 * A session belongs to the API key that began it: another key neither sees nor touches it. A
 * completed session is kept (without its parts) so that a completion retried after a lost answer
 * gets the file; every session is deleted UPLOAD_TTL_MS after it began, by the scheduled handler.
 */
import { messageOf, OnnxFormatError, onnxSkeleton, readOnnxModelInfo, type TensorSpec } from '@depinfer/shared'
import { bytesToHex } from 'viem'
import { DepinferError } from '../errors/base.js'
import { InvalidRequestError, NotFoundError, PayloadTooLargeError } from '../errors/request.js'
import { modelObjectKey, recordModelFile, storedModelFile, type UploadedFile } from './registry.js'

/** R2's smallest part (all but the last); parts of one upload are all the same size. */
export const MIN_PART_BYTES = 5 * 1024 * 1024
/** Each part is read into memory (a Worker has 128 MB, shared by its concurrent requests). */
export const DEFAULT_PART_BYTES = 8 * 1024 * 1024
/** Protobuf cannot encode a message past 2 GiB: a larger .onnx keeps its weights outside, which depinfer refuses. */
export const DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024 * 1024 * 1024
/** A session not completed in a day is aborted (R2 itself would keep its parts a week). */
export const UPLOAD_TTL_MS = 24 * 60 * 60 * 1000
/** Sessions one key may have open at once: each may hold up to the largest upload in parts. */
export const MAX_OPEN_UPLOADS_PER_KEY = 4
/**
 * The graph without its tensors' data must fit comfortably in a Worker's 128 MB, where it is held
 * about twice while it is put together. A graph of 400,000 nodes is about 26 MiB; usual large
 * models (transformers of a few thousand nodes) a few MiB.
 */
const MAX_SKELETON_BYTES = 16 * 1024 * 1024

export interface UploadLimits {
  maxBytes: number
  partBytes: number
}

/** A session as the API shows it. */
export interface UploadSession {
  /** `complete`: the file is stored; nothing more is sent. */
  state: 'open' | 'complete'
  id: string
  sha256: string
  size: number
  partBytes: number
  partCount: number
  /** Part numbers (1-based) the edge holds; a resumed upload sends the others. */
  receivedParts: number[]
  expiresAt: string
}

interface UploadRow {
  id: string
  r2_upload_id: string
  sha256: string
  size: number
  part_bytes: number
  key_hash: string
  uploaded_by: string
  created_at: number
  completed_at: number | null
}

const stagingKey = (id: string) => `uploads/${id}`
const partCountOf = (row: Pick<UploadRow, 'size' | 'part_bytes'>) => Math.ceil(row.size / row.part_bytes)

/** 409: the upload is not in a state to do this (parts missing, complete already, too many open). */
export class UploadConflictError extends DepinferError {
  constructor(detail: string, field: string) {
    super(409, 'upload-conflict', 'Upload not ready', detail, { field })
  }
}

/** 503: R2 failed at `doing`; the client's to retry (the CLI does, for parts). */
function storageUnavailable(doing: string, cause: unknown): DepinferError {
  return new DepinferError(503, 'storage-unavailable', 'Storage unavailable', `${doing} failed in storage: ${messageOf(cause)}; retry`, { retryAfterSec: 1, cause })
}

async function sessionOf(db: D1Database, row: UploadRow): Promise<UploadSession> {
  const { results } = await db.prepare('SELECT part_number FROM model_upload_parts WHERE upload_id = ? ORDER BY part_number').bind(row.id).all<{ part_number: number }>()
  const complete = row.completed_at !== null
  return {
    state: complete ? 'complete' : 'open',
    id: row.id,
    sha256: row.sha256,
    size: row.size,
    partBytes: row.part_bytes,
    partCount: partCountOf(row),
    receivedParts: complete ? Array.from({ length: partCountOf(row) }, (_, i) => i + 1) : results.map((r) => r.part_number),
    expiresAt: new Date(row.created_at + UPLOAD_TTL_MS).toISOString(),
  }
}

/** The key's session `id`; a session of another key, or none, is a 404 naming `id`. */
async function ownRow(db: D1Database, id: string, keyHash: string): Promise<UploadRow> {
  const row = await db.prepare('SELECT * FROM model_uploads WHERE id = ? AND key_hash = ?').bind(id, keyHash).first<UploadRow>()
  if (!row) throw new NotFoundError(`no upload ${JSON.stringify(id.slice(0, 80))} for this API key (aborted, begun more than 24 h ago, or begun with another key)`, 'id')
  return row
}

/** The key's open session `id`: a completed one is a 409 naming `id`. */
async function openRow(db: D1Database, id: string, keyHash: string): Promise<UploadRow> {
  const row = await ownRow(db, id, keyHash)
  if (row.completed_at !== null) throw new UploadConflictError(`upload ${id} is complete: the edge holds the file (sha256 ${row.sha256}); nothing more is sent to it`, 'id')
  return row
}

/** This key's open sessions, oldest first. */
export async function openUploads(db: D1Database, keyHash: string): Promise<UploadSession[]> {
  const { results } = await db.prepare('SELECT * FROM model_uploads WHERE key_hash = ? AND completed_at IS NULL ORDER BY created_at').bind(keyHash).all<UploadRow>()
  return Promise.all(results.map((row) => sessionOf(db, row)))
}

export type BeginOutcome = { state: 'open'; session: UploadSession; resumed: boolean } | { state: 'stored'; file: UploadedFile }

/**
 * Begins an upload of `size` bytes whose sha256 is `sha256`, or resumes this key's open session
 * for the same file (its received parts are listed); a file the edge already holds needs no
 * upload (`stored`).
 */
export async function beginUpload(
  db: D1Database,
  bucket: R2Bucket,
  request: { sha256: string; size: number; keyHash: string; uploadedBy: string },
  limits: UploadLimits,
  now: number,
): Promise<BeginOutcome> {
  if (request.size > limits.maxBytes) throw new PayloadTooLargeError(limits.maxBytes, `size ${request.size}`, 'size')
  const stored = await storedModelFile(db, request.sha256)
  if (stored) return { state: 'stored', file: stored }
  const same = () =>
    db.prepare('SELECT * FROM model_uploads WHERE key_hash = ? AND sha256 = ? AND size = ? AND completed_at IS NULL').bind(request.keyHash, request.sha256, request.size).first<UploadRow>()
  const resumed = await same()
  if (resumed) return { state: 'open', session: await sessionOf(db, resumed), resumed: true }
  const id = crypto.randomUUID()
  const multipart = await bucket.createMultipartUpload(stagingKey(id), { httpMetadata: { contentType: 'application/octet-stream' } })
  const row: UploadRow = {
    id,
    r2_upload_id: multipart.uploadId,
    sha256: request.sha256,
    size: request.size,
    part_bytes: limits.partBytes,
    key_hash: request.keyHash,
    uploaded_by: request.uploadedBy,
    created_at: now,
    completed_at: null,
  }
  // One statement checks the number open and inserts, so begins at once cannot pass the limit
  // together; a unique index keeps one open session per key and file.
  let inserted: boolean
  try {
    const result = await db
      .prepare(
        `INSERT INTO model_uploads (id, r2_upload_id, sha256, size, part_bytes, key_hash, uploaded_by, created_at)
          SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE (SELECT COUNT(*) FROM model_uploads WHERE key_hash = ?6 AND completed_at IS NULL) < ?9`,
      )
      .bind(row.id, row.r2_upload_id, row.sha256, row.size, row.part_bytes, row.key_hash, row.uploaded_by, row.created_at, MAX_OPEN_UPLOADS_PER_KEY)
      .run()
    inserted = result.meta.changes > 0
  } catch (error) {
    if (!/UNIQUE constraint failed/.test(messageOf(error))) throw error
    inserted = false
  }
  if (inserted) return { state: 'open', session: await sessionOf(db, row), resumed: false }
  await multipart.abort()
  const concurrent = await same()
  if (concurrent) return { state: 'open', session: await sessionOf(db, concurrent), resumed: true }
  const open = await openUploads(db, request.keyHash)
  throw new UploadConflictError(
    `this API key has ${open.length} uploads open (${open.map((u) => `${u.id}: sha256 ${u.sha256}`).join('; ')}): complete or DELETE one (GET /api/models/uploads lists them), or wait for it to expire 24 h after it began`,
    'uploads',
  )
}

export async function uploadSession(db: D1Database, id: string, keyHash: string): Promise<UploadSession> {
  return sessionOf(db, await ownRow(db, id, keyHash))
}

/** Bytes part `part` (1-based) of the upload must have, or a 400 naming `part` for one it does not have. */
function partBytesOf(row: UploadRow, part: number): number {
  const count = partCountOf(row)
  if (!Number.isSafeInteger(part) || part < 1 || part > count) throw new InvalidRequestError(`part must be from 1 to ${count} (${row.size} bytes in parts of ${row.part_bytes}), got ${part}`, 'part')
  return part < count ? row.part_bytes : row.size - (count - 1) * row.part_bytes
}

/** What part `part` of the key's upload `id` must hold, in bytes: read before its body is. */
export async function expectedPartBytes(db: D1Database, id: string, keyHash: string, part: number): Promise<number> {
  return partBytesOf(await openRow(db, id, keyHash), part)
}

/** Stores part `part`; sending a part again replaces it (a retry after a lost answer). */
export async function receivePart(db: D1Database, bucket: R2Bucket, id: string, keyHash: string, part: number, bytes: Uint8Array): Promise<UploadSession> {
  const row = await openRow(db, id, keyHash)
  const expected = partBytesOf(row, part)
  if (bytes.byteLength !== expected) throw new InvalidRequestError(`part ${part} must be exactly ${expected} bytes, got ${bytes.byteLength}`, 'body')
  let uploaded: R2UploadedPart
  try {
    uploaded = await bucket.resumeMultipartUpload(stagingKey(id), row.r2_upload_id).uploadPart(part, bytes)
  } catch (error) {
    if (await bucket.head(stagingKey(id))) throw new UploadConflictError(`the upload's parts were assembled already (its completion is under way or its answer was lost): POST …/complete again rather than sending part ${part}`, 'part')
    throw storageUnavailable(`storing part ${part}`, error)
  }
  // Only while the session is open: a completion, DELETE or expiry meanwhile took its parts.
  const recorded = await db
    .prepare('INSERT OR REPLACE INTO model_upload_parts (upload_id, part_number, etag) SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM model_uploads WHERE id = ?1 AND completed_at IS NULL)')
    .bind(id, part, uploaded.etag)
    .run()
  if (recorded.meta.changes === 0) throw new UploadConflictError(`upload ${id} was completed or aborted while part ${part} was being stored`, 'id')
  return sessionOf(db, row)
}

/** Deletes what a session holds in R2 (its parts, or the assembled staging object). */
async function deleteStaged(bucket: R2Bucket, row: UploadRow): Promise<void> {
  await bucket.resumeMultipartUpload(stagingKey(row.id), row.r2_upload_id).abort().catch(() => undefined) // completed or expired already
  await bucket.delete(stagingKey(row.id))
}

/** Forgets a session and whatever it holds in R2. */
async function discard(db: D1Database, bucket: R2Bucket, row: UploadRow): Promise<void> {
  await deleteStaged(bucket, row)
  await db.batch([
    db.prepare('DELETE FROM model_upload_parts WHERE upload_id = ?').bind(row.id),
    db.prepare('DELETE FROM model_uploads WHERE id = ?').bind(row.id),
  ])
}

export async function abortUpload(db: D1Database, bucket: R2Bucket, id: string, keyHash: string): Promise<void> {
  await discard(db, bucket, await ownRow(db, id, keyHash))
}

/** The object's bytes in order, each chunk also written to `digest`. */
async function* hashedChunks(body: ReadableStream<Uint8Array>, digest: WritableStreamDefaultWriter<ArrayBufferView>): AsyncGenerator<Uint8Array> {
  const reader = body.getReader()
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) return
      await digest.write(value)
      yield value
    }
  } finally {
    reader.releaseLock()
  }
}

/**
 * The assembled file. Gone: a completion running alongside (a retry whose first attempt is still
 * under way) stored it and discarded the upload, or it failed its checks there.
 */
async function stagedObject(bucket: R2Bucket, row: UploadRow): Promise<R2ObjectBody> {
  const object = await bucket.get(stagingKey(row.id))
  if (!object) throw new UploadConflictError(`the assembled upload ${row.id} is gone: another completion of it ran at the same time; complete again to get its outcome`, 'id')
  return object
}

/** Reads the staged file once: its sha256 (hex) and the ONNX metadata of its skeleton. */
async function readStaged(bucket: R2Bucket, row: UploadRow): Promise<{ sha256: string; inputs: TensorSpec[]; outputs: TensorSpec[] }> {
  const object = await stagedObject(bucket, row)
  const digest = new crypto.DigestStream('SHA-256')
  const writer = digest.getWriter()
  const chunks = hashedChunks(object.body, writer)
  let skeleton: Uint8Array | OnnxFormatError
  try {
    skeleton = await onnxSkeleton(chunks, { size: object.size, maxSkeletonBytes: MAX_SKELETON_BYTES })
  } catch (error) {
    if (!(error instanceof OnnxFormatError)) throw error
    skeleton = error // judged after the sha256: bytes other than the declared ones are said so first
  }
  for await (const chunk of chunks) void chunk // the rest, if the walk stopped early, for the hash
  await writer.close()
  const sha256 = bytesToHex(new Uint8Array(await digest.digest)).slice(2) // without viem's 0x
  if (sha256 !== row.sha256) {
    throw new InvalidRequestError(`the uploaded bytes' sha256 is ${sha256}, not ${row.sha256} as declared when the upload began: the upload is discarded; begin it again`, 'sha256')
  }
  if (skeleton instanceof OnnxFormatError) throw skeleton
  try {
    const info = readOnnxModelInfo(skeleton)
    return { sha256, inputs: info.inputs, outputs: info.outputs }
  } catch (error) {
    // Its byte offsets are the skeleton's, not the file's: left out rather than misleading.
    if (error instanceof OnnxFormatError) throw new OnnxFormatError(error.message.replace(/ at byte \d+\)/, ')'), error.field)
    throw error
  }
}

/**
 * Assembles the parts, checks the file (its declared sha256; an ONNX model depinfer can serve:
 * OnnxFormatError otherwise) and stores it under its sha256, as POST /api/models/files does. A
 * file that fails either check is discarded with its session.
 */
export async function completeUpload(db: D1Database, bucket: R2Bucket, id: string, keyHash: string, now: number): Promise<{ file: UploadedFile; created: boolean }> {
  const row = await ownRow(db, id, keyHash)
  // A completion retried after its answer was lost: the file it stored.
  const done = row.completed_at !== null && (await storedModelFile(db, row.sha256))
  if (done) return { file: done, created: false }
  const session = await sessionOf(db, row)
  const missing: number[] = []
  for (let part = 1; part <= session.partCount && missing.length < 10; part++) if (!session.receivedParts.includes(part)) missing.push(part)
  if (missing.length > 0) throw new UploadConflictError(`part(s) ${missing.join(', ')}${missing.length === 10 ? ', …' : ''} of ${session.partCount} not received yet`, 'parts')
  const { results: parts } = await db.prepare('SELECT part_number, etag FROM model_upload_parts WHERE upload_id = ? ORDER BY part_number').bind(id).all<{ part_number: number; etag: string }>()
  // Assembled already by a completion whose answer was lost (or that runs alongside): R2 refuses
  // to complete an upload twice, and the staged object is the same either way.
  if (!(await bucket.head(stagingKey(id)))) {
    try {
      await bucket.resumeMultipartUpload(stagingKey(id), row.r2_upload_id).complete(parts.map((p) => ({ partNumber: p.part_number, etag: p.etag })))
    } catch (error) {
      if (!(await bucket.head(stagingKey(id)))) {
        // A part's recorded etag may not be the one R2 kept (the same part sent twice at once,
        // stored in one order and recorded in the other): sent again, every part is consistent.
        await db.prepare('DELETE FROM model_upload_parts WHERE upload_id = ?').bind(id).run()
        throw new UploadConflictError(`storage could not assemble the parts (${messageOf(error)}): the edge has forgotten them; send every part again, then complete`, 'parts')
      }
    }
  }
  let checked
  try {
    checked = await readStaged(bucket, row)
  } catch (error) {
    if (error instanceof InvalidRequestError || error instanceof OnnxFormatError) await discard(db, bucket, row)
    if (error instanceof DepinferError || error instanceof OnnxFormatError) throw error
    throw storageUnavailable('reading the assembled file', error)
  }
  let created = false
  if (!(await storedModelFile(db, checked.sha256))) {
    const object = await stagedObject(bucket, row)
    // R2 takes a stream only of a known length; its sha256 option makes it refuse other bytes.
    const { readable, writable } = new FixedLengthStream(object.size)
    const copied = object.body.pipeTo(writable)
    try {
      await Promise.all([bucket.put(modelObjectKey(checked.sha256), readable, { sha256: checked.sha256, httpMetadata: { contentType: 'application/octet-stream' } }), copied])
    } catch (error) {
      throw storageUnavailable('storing the file under its sha256', error)
    }
    created = await recordModelFile(db, { sha256: checked.sha256, size: row.size, inputs: checked.inputs, outputs: checked.outputs }, row.uploaded_by, now)
  }
  const file = (await storedModelFile(db, checked.sha256))!
  await deleteStaged(bucket, row)
  await db.batch([
    db.prepare('DELETE FROM model_upload_parts WHERE upload_id = ?').bind(id),
    db.prepare('UPDATE model_uploads SET completed_at = ? WHERE id = ?').bind(now, id),
  ])
  return { file, created }
}

/** Deletes the sessions begun more than UPLOAD_TTL_MS before `now`, aborting open ones (the scheduled handler). */
export async function expireUploads(db: D1Database, bucket: R2Bucket, now: number): Promise<number> {
  const { results } = await db.prepare('SELECT * FROM model_uploads WHERE created_at < ? LIMIT 100').bind(now - UPLOAD_TTL_MS).all<UploadRow>()
  for (const row of results) await discard(db, bucket, row)
  return results.length
}
