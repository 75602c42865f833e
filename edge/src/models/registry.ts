/**
 * Published models: files in R2 under their sha256 (so identical files are stored once and a
 * device can verify what it downloads), metadata in D1 (edge/migrations/0003_models.sql).
 * A (name, version) never changes; publishing a name again makes its next version.
 */
import { readOnnxModelInfo, sha256Hex, type TensorSpec } from '@depinfer/shared'

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

function fromRow(row: ModelRow): PublishedModel {
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
  }
}

/** R2 key of a model file. */
export const modelObjectKey = (sha256: string) => `models/${sha256}.onnx`

export interface PublishRequest {
  name: string
  description: string
  priceWei: string
  payoutAddress: string
  publishedBy: string
  bytes: Uint8Array
}

/** The outcome: the new version, or the existing one when the latest version is this very file. */
export interface PublishOutcome {
  model: PublishedModel
  created: boolean
}

/**
 * Validates the file (an ONNX model whose inputs and outputs depinfer can serve; throws
 * OnnxFormatError otherwise), stores it and records the next version of `name`.
 */
export async function publishModel(db: D1Database, bucket: R2Bucket, request: PublishRequest, now: number): Promise<PublishOutcome> {
  const info = readOnnxModelInfo(request.bytes)
  const sha256 = sha256Hex(request.bytes)
  const latest = await db
    .prepare('SELECT * FROM models WHERE name = ? ORDER BY version_number DESC LIMIT 1')
    .bind(request.name)
    .first<ModelRow>()
  // Uploading the latest version again (a retried upload) is not a new version.
  if (latest && latest.sha256 === sha256) return { model: fromRow(latest), created: false }
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
  // A concurrent publish of the same name takes the same number: the UNIQUE constraint makes
  // one of them fail rather than both claim it (the caller retries).
  await db
    .prepare(
      `INSERT INTO models (name, version, version_number, sha256, size, description, price_wei, payout_address,
        inputs_json, outputs_json, published_by, published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .bind(row.name, row.version, row.version_number, row.sha256, row.size, row.description, row.price_wei, row.payout_address,
      row.inputs_json, row.outputs_json, row.published_by, row.published_at)
    .run()
  return { model: fromRow(row), created: true }
}

/** Every published version, by name then version. */
export async function listPublishedModels(db: D1Database, name?: string): Promise<PublishedModel[]> {
  const statement = name === undefined
    ? db.prepare('SELECT * FROM models ORDER BY name, version_number')
    : db.prepare('SELECT * FROM models WHERE name = ? ORDER BY version_number').bind(name)
  const { results } = await statement.all<ModelRow>()
  return results.map(fromRow)
}

export async function publishedModel(db: D1Database, name: string, version: string): Promise<PublishedModel | undefined> {
  const row = await db.prepare('SELECT * FROM models WHERE name = ? AND version = ?').bind(name, version).first<ModelRow>()
  return row ? fromRow(row) : undefined
}
