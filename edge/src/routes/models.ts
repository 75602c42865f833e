/**
 * Model publishing (issue 6): developers upload ONNX files, devices download them.
 *
 *   POST /api/models?name=&price_wei=&payout_address=[&description=]   body: the .onnx bytes
 *   GET  /api/models[?name=]                                           every published version
 *   GET  /api/models/{name}/versions/{version}                         one version's metadata
 *   GET  /api/models/{name}/versions/{version}/file                    the file (Range supported)
 */
import { ID_PATTERN, OnnxFormatError } from '@depinfer/shared'
import { Hono } from 'hono'
import { numberVar, type Env } from '../env.js'
import { InvalidRequestError, NotFoundError } from '../errors/request.js'
import { DepinferError } from '../errors/base.js'
import { readBodyCapped } from '../http/read-body.js'
import { apiKeyAuth, type AuthVariables } from '../middleware/auth.js'
import { listPublishedModels, modelObjectKey, publishedModel, publishModel, type PublishedModel } from '../models/registry.js'

/** Workers accept request bodies up to 100 MB (free/pro plans): the default stays under it. */
const DEFAULT_MAX_MODEL_BYTES = 95 * 1024 * 1024

export const models = new Hono<{ Bindings: Env; Variables: AuthVariables }>()

models.use('*', apiKeyAuth)

function required(value: string | undefined, field: string, pattern: RegExp, what: string): string {
  if (value === undefined || value === '') throw new InvalidRequestError(`${field} is required (${what})`, field)
  if (!pattern.test(value)) throw new InvalidRequestError(`${field} must be ${what}, got ${JSON.stringify(value.slice(0, 100))}`, field)
  return value
}

function view(model: PublishedModel) {
  return { ...model, platform: 'onnxruntime_onnx' as const }
}

models.post('/', async (c) => {
  const name = required(c.req.query('name'), 'name', ID_PATTERN, '1-64 letters, digits, ".", "_" or "-", starting with a letter or digit')
  const priceWei = required(c.req.query('price_wei'), 'price_wei', /^(0|[1-9][0-9]{0,77})$/, 'the price per inference in wei, a decimal integer')
  if (BigInt(priceWei) >= 2n ** 256n) throw new InvalidRequestError('price_wei must be below 2^256', 'price_wei')
  const payoutAddress = required(c.req.query('payout_address'), 'payout_address', /^0x[0-9a-fA-F]{40}$/, 'an Ethereum address (0x and 40 hex digits)')
  const description = c.req.query('description') ?? ''
  if (description.length > 2000) throw new InvalidRequestError('description must be at most 2000 characters', 'description')
  const bytes = await readBodyCapped(c.req.raw, numberVar(c.env.MAX_MODEL_BYTES, DEFAULT_MAX_MODEL_BYTES))
  if (bytes.byteLength === 0) throw new InvalidRequestError('the request body must be the .onnx file', 'body')
  let outcome
  try {
    outcome = await publishModel(c.env.DB, c.env.MODELS, { name, description, priceWei, payoutAddress, publishedBy: c.get('apiKeyLabel'), bytes }, Date.now())
  } catch (error) {
    if (error instanceof OnnxFormatError) throw new InvalidRequestError(error.message, 'body')
    if (/UNIQUE constraint failed/.test((error as Error).message)) {
      throw new DepinferError(409, 'version-conflict', 'Concurrent publish', `another version of ${name} was published at the same time; retry`, { field: 'name', retryAfterSec: 1 })
    }
    throw error
  }
  const { model, created } = outcome
  c.header('Location', `/api/models/${model.name}/versions/${model.version}`)
  return c.json(view(model), created ? 201 : 200)
})

models.get('/', async (c) => {
  const name = c.req.query('name')
  return c.json({ models: (await listPublishedModels(c.env.DB, name)).map(view) })
})

async function find(db: D1Database, name: string, version: string): Promise<PublishedModel> {
  const model = await publishedModel(db, name, version)
  if (model) return model
  const versions = await listPublishedModels(db, name)
  if (versions.length === 0) throw new NotFoundError(`no published model ${JSON.stringify(name)}`, 'name')
  throw new NotFoundError(`model ${name} has no version ${JSON.stringify(version)}; versions: ${versions.map((m) => m.version).join(', ')}`, 'version')
}

models.get('/:name/versions/:version', async (c) => c.json(view(await find(c.env.DB, c.req.param('name'), c.req.param('version')))))

/** The file, resumable: `Range: bytes=<start>-[<end>]` answers 206 with that slice. */
models.get('/:name/versions/:version/file', async (c) => {
  const model = await find(c.env.DB, c.req.param('name'), c.req.param('version'))
  const range = parseRange(c.req.header('Range'), model.size)
  if (range === 'unsatisfiable') {
    return c.body(null, 416, { 'Content-Range': `bytes */${model.size}` })
  }
  const object = await c.env.MODELS.get(modelObjectKey(model.sha256), range ? { range: { offset: range.start, length: range.end - range.start + 1 } } : {})
  if (!object) throw new DepinferError(503, 'model-file-missing', 'Model file unavailable', `the file of ${model.name} v${model.version} is missing from storage`, { retryAfterSec: 30 })
  const headers: Record<string, string> = {
    'Content-Type': 'application/octet-stream',
    'Accept-Ranges': 'bytes',
    ETag: `"${model.sha256}"`,
    'X-Model-Sha256': model.sha256,
    'Cache-Control': 'private, max-age=31536000, immutable',
  }
  if (!range) return c.body(object.body, 200, { ...headers, 'Content-Length': String(model.size) })
  return c.body(object.body, 206, {
    ...headers,
    'Content-Length': String(range.end - range.start + 1),
    'Content-Range': `bytes ${range.start}-${range.end}/${model.size}`,
  })
})

/**
 * A single `bytes=start-[end]` or `bytes=-suffix` range (RFC 9110 §14.1.2); anything else
 * (multiple ranges, other units) is ignored and the whole file is sent, as the RFC allows.
 */
function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  const match = header ? /^bytes=(\d*)-(\d*)$/.exec(header.trim()) : null
  if (!match || (match[1] === '' && match[2] === '')) return undefined
  if (match[1] === '') {
    const suffix = Number(match[2])
    if (suffix === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(match[1])
  const end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1)
  if (start >= size || end < start) return 'unsatisfiable'
  return { start, end }
}
