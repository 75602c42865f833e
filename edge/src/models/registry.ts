/**
 * Published models: files in R2 under their sha256 (so identical files are stored once and a
 * device can verify what it downloads), metadata in D1 (edge/migrations/0003_models.sql, and
 * 0005_model_variants.sql for variants). A (name, version) never changes, its variants included:
 * a version is recorded with its variants in one transaction, and publishing a name again makes
 * its next version.
 */
import { readOnnxModelInfo, sha256Hex, type PublishedVariant, type TensorSpec, type VariantReport } from '@depinfer/shared'
import { checkSameTensors, VariantRejectedError } from './variants.js'

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
  publishedBy: string
  publishedAt: number
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

interface VariantRow {
  name: string
  version: string
  kind: 'int8'
  sha256: string
  size: number
  top1_agreement: number
  max_abs_error: number
  samples: number
  min_agreement: number
}

interface FileRow {
  sha256: string
  size: number
  inputs_json: string
  outputs_json: string
  uploaded_by: string
  uploaded_at: number
}

function variantFromRow(row: VariantRow): PublishedVariant {
  return {
    kind: row.kind,
    sha256: row.sha256,
    size: row.size,
    report: { top1Agreement: row.top1_agreement, maxAbsError: row.max_abs_error, samples: row.samples },
    minAgreement: row.min_agreement,
  }
}

function fromRow(row: ModelRow, variants: PublishedVariant[]): PublishedModel {
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

export interface PublishRequest {
  name: string
  description: string
  priceWei: string
  payoutAddress: string
  publishedBy: string
  bytes: Uint8Array
  variants: VariantRequest[]
}

/** The outcome: the new version, or the existing one when the latest version is this very file. */
export interface PublishOutcome {
  model: PublishedModel
  created: boolean
}

/**
 * Validates the file (an ONNX model whose inputs and outputs depinfer can serve; throws
 * OnnxFormatError otherwise) and its variants (uploaded files with exactly its tensors; throws
 * VariantRejectedError otherwise), stores the file and records the next version of `name` with
 * its variants.
 */
export async function publishModel(db: D1Database, bucket: R2Bucket, request: PublishRequest, now: number): Promise<PublishOutcome> {
  const info = readOnnxModelInfo(request.bytes)
  const sha256 = sha256Hex(request.bytes)
  const variants: PublishedVariant[] = []
  for (const variant of request.variants) {
    const field = `${variant.kind}_sha256`
    if (variant.sha256 === sha256) throw new VariantRejectedError(`${field} is the sha256 of the model file itself, not of a ${variant.kind} variant`, field)
    const file = await db.prepare('SELECT * FROM model_files WHERE sha256 = ?').bind(variant.sha256).first<FileRow>()
    if (!file) {
      throw new VariantRejectedError(`no uploaded file has sha256 ${variant.sha256}: upload the ${variant.kind} file first (POST /api/models/files)`, field)
    }
    checkSameTensors(variant.kind, info, { inputs: JSON.parse(file.inputs_json) as TensorSpec[], outputs: JSON.parse(file.outputs_json) as TensorSpec[] })
    variants.push({ kind: variant.kind, sha256: variant.sha256, size: file.size, report: variant.report, minAgreement: variant.minAgreement })
  }
  const latest = await db
    .prepare('SELECT * FROM models WHERE name = ? ORDER BY version_number DESC LIMIT 1')
    .bind(request.name)
    .first<ModelRow>()
  // Uploading the latest version again (a retried upload) is not a new version; the same file
  // with other variants (or another report) is.
  if (latest && latest.sha256 === sha256) {
    const existing = fromRow(latest, await variantsOf(db, latest.name, latest.version))
    if (sameVariants(existing.variants, variants)) return { model: existing, created: false }
  }
  await bucket.put(modelObjectKey(sha256), request.bytes, {
    sha256,
    httpMetadata: { contentType: 'application/octet-stream' },
  })
  const versionNumber = (latest?.version_number ?? 0) + 1
  const row: ModelRow = {
    name: request.name,
    version: String(versionNumber),
    version_number: versionNumber,
    sha256,
    size: request.bytes.byteLength,
    description: request.description,
    price_wei: request.priceWei,
    payout_address: request.payoutAddress.toLowerCase(),
    inputs_json: JSON.stringify(info.inputs),
    outputs_json: JSON.stringify(info.outputs),
    published_by: request.publishedBy,
    published_at: now,
  }
  // One transaction: a version is never seen without its variants. A concurrent publish of the
  // same name takes the same number: the UNIQUE constraint makes one of them fail rather than
  // both claim it (the caller retries).
  await db.batch([
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
          `INSERT INTO model_variants (name, version, kind, sha256, size, top1_agreement, max_abs_error, samples, min_agreement)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .bind(row.name, row.version, v.kind, v.sha256, v.size, v.report.top1Agreement, v.report.maxAbsError, v.report.samples, v.minAgreement),
    ),
  ])
  return { model: fromRow(row, variants), created: true }
}

function sameVariants(a: readonly PublishedVariant[], b: readonly PublishedVariant[]): boolean {
  const key = (v: PublishedVariant) => JSON.stringify([v.kind, v.sha256, v.report.top1Agreement, v.report.maxAbsError, v.report.samples, v.minAgreement])
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
  // OR IGNORE: the same bytes uploaded twice at once are one file.
  await db
    .prepare('INSERT OR IGNORE INTO model_files (sha256, size, inputs_json, outputs_json, uploaded_by, uploaded_at) VALUES (?, ?, ?, ?, ?, ?)')
    .bind(sha256, file.size, JSON.stringify(info.inputs), JSON.stringify(info.outputs), request.uploadedBy, now)
    .run()
  return { file, created: true }
}

async function variantsOf(db: D1Database, name: string, version: string): Promise<PublishedVariant[]> {
  const { results } = await db.prepare('SELECT * FROM model_variants WHERE name = ? AND version = ? ORDER BY kind').bind(name, version).all<VariantRow>()
  return results.map(variantFromRow)
}

/** Every published version, by name then version, with its variants. */
export async function listPublishedModels(db: D1Database, name?: string): Promise<PublishedModel[]> {
  const [models, variants] = name === undefined
    ? await db.batch<ModelRow | VariantRow>([
        db.prepare('SELECT * FROM models ORDER BY name, version_number'),
        db.prepare('SELECT * FROM model_variants ORDER BY kind'),
      ])
    : await db.batch<ModelRow | VariantRow>([
        db.prepare('SELECT * FROM models WHERE name = ? ORDER BY version_number').bind(name),
        db.prepare('SELECT * FROM model_variants WHERE name = ? ORDER BY kind').bind(name),
      ])
  const byVersion = new Map<string, PublishedVariant[]>()
  for (const row of variants!.results as VariantRow[]) {
    const key = `${row.name}\u0000${row.version}`
    byVersion.set(key, [...(byVersion.get(key) ?? []), variantFromRow(row)])
  }
  return (models!.results as ModelRow[]).map((row) => fromRow(row, byVersion.get(`${row.name}\u0000${row.version}`) ?? []))
}

export async function publishedModel(db: D1Database, name: string, version: string): Promise<PublishedModel | undefined> {
  const row = await db.prepare('SELECT * FROM models WHERE name = ? AND version = ?').bind(name, version).first<ModelRow>()
  return row ? fromRow(row, await variantsOf(db, name, version)) : undefined
}
