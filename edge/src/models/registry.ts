/**
 * Published models: files in R2 under their sha256 (so identical files are stored once and a
 * device can verify what it downloads), metadata in D1 (edge/migrations/0003_models.sql, and
 * 0005_model_variants.sql for variants). A (name, version) never changes, its variants included:
 * a version is recorded with its variants in one transaction, and publishing a name again makes
 * its next version. A name belongs to whoever first published it (0006_model_owners.sql): only
 * they publish its later versions, since devices following the name move to each new one.
 */
import { messageOf, readOnnxModelInfo, sha256Hex, type Hex, type PublishedVariant, type TensorSpec, type VariantReport } from '@depinfer/shared'
import { checkClassOutputs, checkSameTensors, VariantRejectedError } from './variants.js'

export interface PublishedModel {
  name: string
  version: string
  sha256: string
  size: number
  description: string
  priceWei: string
  payoutAddress: string
  inputs: TensorSpec[]
  outputs: TensorSpec[]
  /** Label of the API key that published this version. */
  publishedBy: string
  publishedAt: number
  /** Who owns the name, and alone publishes its versions: `account:<payer>`, `key:<key hash>` or `label:<label>` (see ownerIdentity). */
  owner: string
  /** Files published with the version to run instead of its own (an int8 one), with the publisher's report. */
  variants: PublishedVariant[]
}

interface ModelRow {
  name: string
  version: string
  version_number: number
  sha256: string
  size: number
  description: string
  price_wei: string
  payout_address: string
  inputs_json: string
  outputs_json: string
  published_by: string
  published_at: number
}

/** A models row with its name's owner (model_owners), as listings read it. */
interface OwnedModelRow extends ModelRow {
  owner: string
}

interface VariantRow {
  name: string
  version: string
  kind: 'int8'
  sha256: string
  size: number
  top1_agreement: number
  /** JSON string[]: the outputs top1_agreement was judged on; NULL when the publisher did not say. */
  class_outputs_json: string | null
  max_abs_error: number
  samples: number
  min_agreement: number
}

/** What a stored file's row says of it, in model_files and models alike. */
interface StoredFileRow {
  sha256: string
  size: number
  inputs_json: string
  outputs_json: string
}

const classOutputsJson = (report: VariantReport): string | null => (report.classOutputs === undefined ? null : JSON.stringify(report.classOutputs))

function variantFromRow(row: VariantRow): PublishedVariant {
  return {
    kind: row.kind,
    sha256: row.sha256,
    size: row.size,
    report: {
      top1Agreement: row.top1_agreement,
      ...(row.class_outputs_json !== null && { classOutputs: JSON.parse(row.class_outputs_json) as string[] }),
      maxAbsError: row.max_abs_error,
      samples: row.samples,
    },
    minAgreement: row.min_agreement,
  }
}

function fromRow(row: OwnedModelRow, variants: PublishedVariant[]): PublishedModel {
  return {
    name: row.name,
    version: row.version,
    sha256: row.sha256,
    size: row.size,
    description: row.description,
    priceWei: row.price_wei,
    payoutAddress: row.payout_address,
    inputs: JSON.parse(row.inputs_json) as TensorSpec[],
    outputs: JSON.parse(row.outputs_json) as TensorSpec[],
    publishedBy: row.published_by,
    publishedAt: row.published_at,
    owner: row.owner,
    variants,
  }
}

/** R2 key of a model file. */
export const modelObjectKey = (sha256: string) => `models/${sha256}.onnx`

/** A variant named by a publish: an uploaded file (uploadModelFile), the publisher's report and threshold. */
export interface VariantRequest {
  kind: PublishedVariant['kind']
  sha256: string
  report: VariantReport
  minAgreement: number
}

/** Who publishes: the API key as authentication saw it (middleware/auth.ts). */
export interface Publisher {
  label: string
  /** api_keys.key_hash: identifies the key itself (labels are not unique). */
  keyHash: string
  /** The key's Escrow account, or null. */
  payer: Hex | null
  /** Made by the operator (outside the edge), not through POST /api/keys: see mayPublishAs. */
  byOperator: boolean
}

/**
 * The identity a publisher claims new names as: its account when the key has a payer (every key of
 * the account may then publish them, so keys can be rotated), else the key itself.
 */
export function ownerIdentity(publisher: Publisher): string {
  return publisher.payer ? `account:${publisher.payer}` : `key:${publisher.keyHash}`
}

function mayPublishAs(owner: string, publisher: Publisher): boolean {
  // The key itself still owns what it claimed before it was tied to a payer. `label:` owners are
  // names published before owners were recorded whose label did not single out one identity:
  // only operator-made keys with that label publish them, since anyone with a key can make
  // another with any label through POST /api/keys.
  return (
    owner === ownerIdentity(publisher) ||
    owner === `key:${publisher.keyHash}` ||
    (publisher.byOperator && owner === `label:${publisher.label}`)
  )
}

/**
 * A new name whose letter-case look-alike this publisher owns under another identity: the
 * database refuses the claim (0014), which cannot tell that identity from another owner's.
 */
export class LookalikeConflictError extends Error {
  override name = 'LookalikeConflictError'
  readonly field = 'name'
  constructor(readonly modelName: string) {
    super(`model name ${modelName} differs only in letter case from a name you own under another identity (your key's, or an operator label's): publish under that name`)
  }
}

/** The name was first published by someone else: only its owner publishes its versions. */
export class NameOwnedError extends Error {
  override name = 'NameOwnedError'
  readonly field = 'name'
  constructor(
    readonly modelName: string,
    readonly owner: string,
    /** The owned name `modelName` differs from in letter case only, when that is the conflict. */
    readonly lookalike?: string,
  ) {
    super(
      lookalike === undefined
        ? `model name ${modelName} belongs to ${owner}, who published it first: only they publish its versions; publish yours under another name`
        : `model name ${modelName} differs only in letter case from ${lookalike}, which belongs to ${owner}: a look-alike name is theirs too; publish yours under another name`,
    )
  }
}

/**
 * The owner of `name` (undefined: nobody published it yet, the publisher would claim it); throws
 * NameOwnedError when it is not `publisher`. The route asks before reading the upload.
 */
export async function checkOwner(db: D1Database, name: string, publisher: Publisher): Promise<string | undefined> {
  // Names are ASCII (ID_PATTERN), so SQLite's ASCII-only lower() folds every letter.
  const { results } = await db.prepare('SELECT name, owner FROM model_owners WHERE lower(name) = lower(?)').bind(name).all<{ name: string; owner: string }>()
  const exact = results.find((row) => row.name === name)
  if (exact) {
    if (!mayPublishAs(exact.owner, publisher)) throw new NameOwnedError(name, exact.owner)
    // An owned name stays its owner's, look-alikes of others or not (they may predate this check).
    return exact.owner
  }
  // A new name: `PPOCR-CLS` next to someone's `ppocr-cls` would pass for theirs in a listing.
  // (Two owners claiming two case-variants of a new name at the same moment both pass this check:
  // the claim's own insert is refused then, by 0014_model_owner_lookalike_trigger.sql.)
  const lookalike = results.find((row) => row.name !== name && !mayPublishAs(row.owner, publisher))
  if (lookalike) throw new NameOwnedError(name, lookalike.owner, lookalike.name)
  return undefined
}

export interface PublishRequest {
  name: string
  description: string
  priceWei: string
  payoutAddress: string
  publisher: Publisher
  /** The file itself, or the sha256 of one stored before (a resumable upload, models/uploads.ts). */
  file: { bytes: Uint8Array } | { sha256: string }
  variants: VariantRequest[]
}

/** The outcome: the new version, or the existing one when the latest version is this very file with these very terms. */
export interface PublishOutcome {
  model: PublishedModel
  created: boolean
}

/**
 * Checks that the publisher owns `name` or is the first to publish it (throws NameOwnedError
 * otherwise), validates the file (an ONNX model whose inputs and outputs depinfer can serve; throws
 * OnnxFormatError otherwise; one named by sha256 was validated when it was stored, and is an
 * UnknownFileError if the edge holds none) and its variants (uploaded files with exactly its
 * tensors; throws VariantRejectedError otherwise), stores the file and records the next version
 * of `name` with its variants (and, for a new name, its owner).
 */
export async function publishModel(db: D1Database, bucket: R2Bucket, request: PublishRequest, now: number): Promise<PublishOutcome> {
  const owner = await checkOwner(db, request.name, request.publisher)
  const file = await publishedFile(db, request.file)
  const { sha256, size } = file
  const variants: PublishedVariant[] = []
  for (const variant of request.variants) {
    const field = `${variant.kind}_sha256`
    if (variant.sha256 === sha256) throw new VariantRejectedError(`${field} is the sha256 of the model file itself: its ${variant.kind} variant must be a file of its own`, field)
    // Any file the edge holds: uploaded for this, or another version's own (a resumable upload
    // answers such a file as stored, and sends nothing).
    const variantFile = await storedModelFile(db, variant.sha256)
    if (!variantFile) {
      throw new VariantRejectedError(`no uploaded file has sha256 ${variant.sha256}: upload the ${variant.kind} file first (POST /api/models/files, or /api/models/uploads for a large one)`, field)
    }
    checkSameTensors(variant.kind, file, variantFile)
    checkClassOutputs(variant.kind, file, variant.report.classOutputs ?? [])
    variants.push({ kind: variant.kind, sha256: variant.sha256, size: variantFile.size, report: variant.report, minAgreement: variant.minAgreement })
  }
  const latest = await db
    .prepare('SELECT * FROM models WHERE name = ? ORDER BY version_number DESC LIMIT 1')
    .bind(request.name)
    .first<ModelRow>()
  // Uploading the latest version again with the same terms (a retried upload) is not a new
  // version. The same file with any other term (price, payout, description, variants or their
  // report) is: returning the old version would silently drop the new terms.
  if (latest && latest.sha256 === sha256 && owner !== undefined) {
    const existing = fromRow({ ...latest, owner }, await variantsOf(db, latest.name, latest.version))
    if (sameTerms(existing, request, variants)) return { model: existing, created: false }
  }
  if ('bytes' in request.file) {
    await bucket.put(modelObjectKey(sha256), request.file.bytes, {
      sha256,
      httpMetadata: { contentType: 'application/octet-stream' },
    })
  }
  const versionNumber = (latest?.version_number ?? 0) + 1
  const row: OwnedModelRow = {
    name: request.name,
    version: String(versionNumber),
    version_number: versionNumber,
    sha256,
    size,
    description: request.description,
    price_wei: request.priceWei,
    payout_address: request.payoutAddress.toLowerCase(),
    inputs_json: JSON.stringify(file.inputs),
    outputs_json: JSON.stringify(file.outputs),
    published_by: request.publisher.label,
    published_at: now,
    owner: owner ?? ownerIdentity(request.publisher),
  }
  // One transaction: a version is never seen without its variants, nor a new name without its
  // owner. A concurrent publish of the same name takes the same number (and, for a new name, the
  // same owner row): the UNIQUE constraints make one of them fail rather than both claim it (the
  // caller retries, and then finds the name owned).
  await db.batch([
    // The claim of a new name: refused in this transaction (a trigger) when another owner
    // claimed a look-alike since checkOwner looked; publishModel's caller then asks it again.
    ...(owner === undefined
      ? [db.prepare('INSERT INTO model_owners (name, owner, claimed_at) VALUES (?, ?, ?)').bind(row.name, row.owner, now)]
      : []),
    db
      .prepare(
        `INSERT INTO models (name, version, version_number, sha256, size, description, price_wei, payout_address,
          inputs_json, outputs_json, published_by, published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .bind(row.name, row.version, row.version_number, row.sha256, row.size, row.description, row.price_wei, row.payout_address,
        row.inputs_json, row.outputs_json, row.published_by, row.published_at),
    ...variants.map((v) =>
      db
        .prepare(
          `INSERT INTO model_variants (name, version, kind, sha256, size, top1_agreement, class_outputs_json, max_abs_error, samples, min_agreement)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .bind(row.name, row.version, v.kind, v.sha256, v.size, v.report.top1Agreement, classOutputsJson(v.report), v.report.maxAbsError, v.report.samples, v.minAgreement),
    ),
  ]).catch(async (error: unknown) => {
    if (!/look-alike owned by another publisher/.test(messageOf(error))) throw error
    // Another owner claimed a look-alike of this new name since it was checked: the check, again, says so.
    await checkOwner(db, request.name, request.publisher)
    // Or the look-alike is this publisher's under another of its identities (its key's, before
    // the key had a payer; an operator label's), which the trigger cannot tell from another owner's.
    throw new LookalikeConflictError(request.name)
  })
  return { model: fromRow(row, variants), created: true }
}

/** Whether a publish asks for exactly the terms `existing` was published with (its file aside). */
function sameTerms(existing: PublishedModel, request: PublishRequest, variants: readonly PublishedVariant[]): boolean {
  return (
    existing.priceWei === request.priceWei &&
    existing.payoutAddress === request.payoutAddress.toLowerCase() &&
    existing.description === request.description &&
    sameVariants(existing.variants, variants)
  )
}

function sameVariants(a: readonly PublishedVariant[], b: readonly PublishedVariant[]): boolean {
  // The class outputs as a set: the agreement is the lowest over them, whatever order they were named in.
  const classOutputs = (v: PublishedVariant) => (v.report.classOutputs === undefined ? null : [...v.report.classOutputs].sort())
  const key = (v: PublishedVariant) => JSON.stringify([v.kind, v.sha256, v.report.top1Agreement, classOutputs(v), v.report.maxAbsError, v.report.samples, v.minAgreement])
  return JSON.stringify(a.map(key).sort()) === JSON.stringify(b.map(key).sort())
}

/** A file uploaded to become a variant: what the edge read from it. */
export interface UploadedFile {
  sha256: string
  size: number
  inputs: TensorSpec[]
  outputs: TensorSpec[]
}

/**
 * Stores a file a later publish can name as a variant (POST /api/models/files), after reading it
 * as an ONNX model (throws OnnxFormatError otherwise). `created` is false when it was uploaded before.
 */
export async function uploadModelFile(
  db: D1Database,
  bucket: R2Bucket,
  request: { bytes: Uint8Array; uploadedBy: string },
  now: number,
): Promise<{ file: UploadedFile; created: boolean }> {
  const info = readOnnxModelInfo(request.bytes)
  const sha256 = sha256Hex(request.bytes)
  const file: UploadedFile = { sha256, size: request.bytes.byteLength, inputs: info.inputs, outputs: info.outputs }
  if (await db.prepare('SELECT 1 FROM model_files WHERE sha256 = ?').bind(sha256).first()) return { file, created: false }
  await bucket.put(modelObjectKey(sha256), request.bytes, { sha256, httpMetadata: { contentType: 'application/octet-stream' } })
  return { file, created: await recordModelFile(db, file, request.uploadedBy, now) }
}

/** Records a file stored in R2 under its sha256 (model_files); false when it was recorded before. */
export async function recordModelFile(db: D1Database, file: UploadedFile, uploadedBy: string, now: number): Promise<boolean> {
  // OR IGNORE: the same bytes uploaded twice at once are one file.
  const result = await db
    .prepare('INSERT OR IGNORE INTO model_files (sha256, size, inputs_json, outputs_json, uploaded_by, uploaded_at) VALUES (?, ?, ?, ?, ?, ?)')
    .bind(file.sha256, file.size, JSON.stringify(file.inputs), JSON.stringify(file.outputs), uploadedBy, now)
    .run()
  return result.meta.changes > 0
}

/** How long an uploaded file no version names is kept (a publish names it within minutes). */
export const UNPUBLISHED_FILE_TTL_MS = 7 * 24 * 60 * 60 * 1000

/**
 * Deletes files uploaded before `now` − UNPUBLISHED_FILE_TTL_MS that no version or variant names
 * (the scheduled handler; at most 100 a tick): any key may upload files of up to MAX_UPLOAD_BYTES,
 * one after another, and nothing else would ever delete them (an audit). The row goes first, in
 * one statement that checks nothing names the file, then the R2 object. Returns how many.
 */
export async function expireUnpublishedFiles(db: D1Database, bucket: R2Bucket, now: number): Promise<number> {
  const unnamed = `NOT EXISTS (SELECT 1 FROM models m WHERE m.sha256 = f.sha256) AND NOT EXISTS (SELECT 1 FROM model_variants v WHERE v.sha256 = f.sha256)`
  const { results } = await db
    .prepare(`SELECT f.sha256 FROM model_files f WHERE f.uploaded_at < ? AND ${unnamed} LIMIT 100`)
    .bind(now - UNPUBLISHED_FILE_TTL_MS)
    .all<{ sha256: string }>()
  let deleted = 0
  for (const { sha256 } of results) {
    // A publish naming the file between this statement and the R2 delete would name a file
    // about to go; a week-old file published at that very moment is the one case not covered.
    const removed = await db.prepare(`DELETE FROM model_files AS f WHERE f.sha256 = ? AND ${unnamed}`).bind(sha256).run()
    if (removed.meta.changes !== 1) continue
    await bucket.delete(modelObjectKey(sha256))
    deleted++
  }
  return deleted
}

/** A file the edge holds, by sha256: uploaded (model_files) or published with a version (models). */
export async function storedModelFile(db: D1Database, sha256: string): Promise<UploadedFile | undefined> {
  const row =
    (await db.prepare('SELECT sha256, size, inputs_json, outputs_json FROM model_files WHERE sha256 = ?').bind(sha256).first<StoredFileRow>()) ??
    (await db.prepare('SELECT sha256, size, inputs_json, outputs_json FROM models WHERE sha256 = ? LIMIT 1').bind(sha256).first<StoredFileRow>())
  if (!row) return undefined
  return { sha256: row.sha256, size: row.size, inputs: JSON.parse(row.inputs_json) as TensorSpec[], outputs: JSON.parse(row.outputs_json) as TensorSpec[] }
}

/** Thrown when a publish names by sha256 a file the edge does not hold. */
export class UnknownFileError extends Error {
  override name = 'UnknownFileError'
  constructor(readonly sha256: string) {
    super(`no uploaded file has sha256 ${sha256}: upload it first (POST /api/models/uploads, or send it as this request's body)`)
  }
}

/** The file a publish is of: read and hashed from its bytes, or the stored one it names (UnknownFileError if none). */
async function publishedFile(db: D1Database, file: PublishRequest['file']): Promise<UploadedFile> {
  if ('bytes' in file) {
    const info = readOnnxModelInfo(file.bytes)
    return { sha256: sha256Hex(file.bytes), size: file.bytes.byteLength, inputs: info.inputs, outputs: info.outputs }
  }
  const stored = await storedModelFile(db, file.sha256)
  if (!stored) throw new UnknownFileError(file.sha256)
  return stored
}

async function variantsOf(db: D1Database, name: string, version: string): Promise<PublishedVariant[]> {
  const { results } = await db.prepare('SELECT * FROM model_variants WHERE name = ? AND version = ? ORDER BY kind').bind(name, version).all<VariantRow>()
  return results.map(variantFromRow)
}

/** Every published version, by name then version, with its variants. */
export async function listPublishedModels(db: D1Database, name?: string): Promise<PublishedModel[]> {
  const [models, variants] = name === undefined
    ? await db.batch<OwnedModelRow | VariantRow>([
        db.prepare('SELECT m.*, o.owner FROM models m JOIN model_owners o ON o.name = m.name ORDER BY m.name, m.version_number'),
        db.prepare('SELECT * FROM model_variants ORDER BY kind'),
      ])
    : await db.batch<OwnedModelRow | VariantRow>([
        db.prepare('SELECT m.*, o.owner FROM models m JOIN model_owners o ON o.name = m.name WHERE m.name = ? ORDER BY m.version_number').bind(name),
        db.prepare('SELECT * FROM model_variants WHERE name = ? ORDER BY kind').bind(name),
      ])
  const byVersion = new Map<string, PublishedVariant[]>()
  for (const row of variants!.results as VariantRow[]) {
    const key = `${row.name}\u0000${row.version}`
    byVersion.set(key, [...(byVersion.get(key) ?? []), variantFromRow(row)])
  }
  return (models!.results as OwnedModelRow[]).map((row) => fromRow(row, byVersion.get(`${row.name}\u0000${row.version}`) ?? []))
}

export async function publishedModel(db: D1Database, name: string, version: string): Promise<PublishedModel | undefined> {
  const row = await db
    .prepare('SELECT m.*, o.owner FROM models m JOIN model_owners o ON o.name = m.name WHERE m.name = ? AND m.version = ?')
    .bind(name, version)
    .first<OwnedModelRow>()
  return row ? fromRow(row, await variantsOf(db, name, version)) : undefined
}
