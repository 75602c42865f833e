/**
 * Model publishing (issue 6): developers upload ONNX files, devices download them.
 *
 *   POST /api/models?name=&price_wei=&payout_address=[&description=][&int8_…]  body: the .onnx bytes
 *   POST /api/models?…&sha256=                                                 no body: a file uploaded before
 *   POST /api/models/files                                                     body: a variant's .onnx bytes
 *   GET  /api/models[?name=]                                                   every published version
 *   GET  /api/models/{name}/versions/{version}                                 one version's metadata
 *   GET  /api/models/{name}/versions/{version}/file                            the file (Range supported)
 *   GET  /api/models/{name}/versions/{version}/variants/{kind}/file            a variant's file (likewise)
 *
 * A version's int8 variant is published with it: the int8 file is uploaded first (POST
 * /api/models/files), then the publish names it by sha256 with the publisher's report
 * (`int8_sha256`, `int8_top1_agreement`, `int8_max_abs_error`, `int8_samples`) and threshold
 * (`int8_min_agreement`). Two requests rather than one body, so each file has the whole body limit.
 *
 * A name belongs to whoever first published it: another key's publish of it is a 403 naming
 * `name` (models/registry.ts, ownerIdentity).
 */
import { ADDRESS_PATTERN, addressProblem, ID_PATTERN, OnnxFormatError, PublishedVariantSchema, VariantReportSchema, variantAccepted, type PublishedVariant, type VariantReport, messageOf } from '@depinfer/shared'
import { Hono, type Context } from 'hono'
import { numberVar, type Env } from '../env.js'
import { InvalidRequestError, NotFoundError } from '../errors/request.js'
import { DepinferError } from '../errors/base.js'
import { checkQueryParameters } from '../http/query.js'
import { readBodyCapped } from '../http/read-body.js'
import { apiKeyAuth, type AuthVariables } from '../middleware/auth.js'
import { problemResponse } from '../middleware/problem.js'
import {
  checkOwner,
  listPublishedModels,
  modelObjectKey,
  LookalikeConflictError,
  NameOwnedError,
  publishedModel,
  publishModel,
  uploadModelFile,
  UnknownFileError,
  type PublishedModel,
  type Publisher,
  type PublishRequest,
  type VariantRequest,
} from '../models/registry.js'
import { VariantRejectedError } from '../models/variants.js'
import { forgetPublishedVersions } from '../models/published-versions.js'
import { WEI_PATTERN } from '../payments/wei.js'

/** Workers accept request bodies up to 100 MB (free/pro plans): the default stays under it. */
const DEFAULT_MAX_MODEL_BYTES = 95 * 1024 * 1024

type ModelsEnv = { Bindings: Env; Variables: AuthVariables }

export const models = new Hono<ModelsEnv>()

models.use('*', apiKeyAuth)

function required(value: string | undefined, field: string, pattern: RegExp, what: string): string {
  if (value === undefined || value === '') throw new InvalidRequestError(`${field} is required (${what})`, field)
  if (!pattern.test(value)) throw new InvalidRequestError(`${field} must be ${what}, got ${JSON.stringify(value.slice(0, 100))}`, field)
  return value
}

/** Earnings paid to it would be burned: nobody holds its key. */
const ZERO_ADDRESS = '0x0000000000000000000000000000000000000000'

/** A model name as a query parameter takes it (`name`, publishing or beginning an upload). */
export const modelNameParameter = (value: string | undefined): string =>
  required(value, 'name', ID_PATTERN, '1-64 letters, digits, ".", "_" or "-", starting with a letter or digit')

/**
 * The caller as a publisher of `name`: a 403 naming `name` when another identity owns it
 * (registry.ts checkOwner, whose owner it returns otherwise). Asked before reading an upload that
 * would be refused anyway; publishModel checks again, in its transaction's terms.
 */
export async function publisherOf(c: Context<ModelsEnv>, name: string): Promise<Publisher> {
  const publisher: Publisher = { label: c.get('apiKeyLabel'), keyHash: c.get('apiKeyHash'), payer: c.get('payer'), byOperator: c.get('apiKeyByOperator') }
  await checkOwner(c.env.DB, name, publisher).catch((error: unknown) => {
    throw error instanceof NameOwnedError ? new NameForbiddenError(error) : error
  })
  return publisher
}

/** A publish of a name another identity owns (registry.ts NameOwnedError). */
class NameForbiddenError extends DepinferError {
  constructor(error: NameOwnedError) {
    super(403, 'model-name-owned', 'Model name owned by another publisher', error.message, { field: error.field })
  }
}

/** A version as the API shows it; each variant says whether devices may run it (variantAccepted). */
function view(model: PublishedModel) {
  return {
    ...model,
    platform: 'onnxruntime_onnx' as const,
    variants: model.variants.map((variant) => ({ ...variant, accepted: variantAccepted(variant) })),
  }
}

/** A number as JavaScript writes one (`String(x)`: `0.99`, `1e-7`), or undefined when absent. */
function decimal(value: string | undefined, field: string): number | undefined {
  if (value === undefined) return undefined
  if (!/^[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?$/i.test(value)) throw new InvalidRequestError(`${field} must be a non-negative decimal number, got ${JSON.stringify(value.slice(0, 100))}`, field)
  return Number(value)
}

/** The report's numbers, one parameter each (its list of class outputs is CLASS_OUTPUT_FIELD's). */
const REPORT_FIELDS = { top1Agreement: 'int8_top1_agreement', maxAbsError: 'int8_max_abs_error', samples: 'int8_samples' } as const satisfies Record<
  Exclude<keyof VariantReport, 'classOutputs'>,
  string
>

/**
 * The outputs the report's agreement was judged on, one `int8_class_output` per name (a name may
 * hold a comma); optional, as publishers before it did not say. Whether each is an output of the
 * model is checked with the model's file (registry.ts).
 */
const CLASS_OUTPUT_FIELD = 'int8_class_output'

/**
 * The int8 variant a publish names, from its `int8_*` parameters: none of them, or all of them
 * (a variant without its report and threshold could not be judged), `int8_class_output` optional.
 */
function int8Variant(c: Context<ModelsEnv>): VariantRequest | undefined {
  const fields = ['int8_sha256', ...Object.values(REPORT_FIELDS), 'int8_min_agreement'] as const
  const given = fields.filter((field) => c.req.query(field) !== undefined)
  const classOutputs = c.req.queries(CLASS_OUTPUT_FIELD)
  if (given.length === 0) {
    if (classOutputs !== undefined) throw new InvalidRequestError(`${CLASS_OUTPUT_FIELD} goes with an int8 variant (${fields.join(', ')})`, CLASS_OUTPUT_FIELD)
    return undefined
  }
  const missing = fields.find((field) => c.req.query(field) === undefined)
  if (missing) throw new InvalidRequestError(`${missing} is required with ${given.join(', ')}: an int8 variant needs its file's sha256, the report and the threshold`, missing)
  const sha256 = required(c.req.query('int8_sha256'), 'int8_sha256', /^[0-9a-f]{64}$/, "the int8 file's sha256 (64 lowercase hex digits)")
  const report = VariantReportSchema.safeParse(
    Object.fromEntries(Object.entries(REPORT_FIELDS).map(([key, field]) => [key, decimal(c.req.query(field), field)])),
  )
  if (!report.success) {
    const issue = report.error.issues[0]!
    const field = REPORT_FIELDS[issue.path[0] as keyof typeof REPORT_FIELDS]
    throw new InvalidRequestError(`${field} ${issue.message}`, field)
  }
  const minAgreement = PublishedVariantSchema.shape.minAgreement.safeParse(decimal(c.req.query('int8_min_agreement'), 'int8_min_agreement'))
  if (!minAgreement.success) throw new InvalidRequestError(`int8_min_agreement ${minAgreement.error.issues[0]!.message}`, 'int8_min_agreement')
  if (classOutputs?.some((name) => name === '')) throw new InvalidRequestError(`${CLASS_OUTPUT_FIELD} must name an output, got an empty one`, CLASS_OUTPUT_FIELD)
  const repeated = classOutputs?.find((name, i) => classOutputs.indexOf(name) !== i)
  if (repeated !== undefined) throw new InvalidRequestError(`${CLASS_OUTPUT_FIELD} ${JSON.stringify(repeated.slice(0, 100))} is given twice`, CLASS_OUTPUT_FIELD)
  return { kind: 'int8', sha256, report: { ...report.data, ...(classOutputs !== undefined && { classOutputs }) }, minAgreement: minAgreement.data }
}

/** Every parameter a publish takes: a misspelt one (`desciption`) would otherwise be dropped unseen. */
const PUBLISH_PARAMETERS: readonly string[] = ['name', 'price_wei', 'payout_address', 'description', 'sha256', 'int8_sha256', ...Object.values(REPORT_FIELDS), 'int8_min_agreement', CLASS_OUTPUT_FIELD]

models.post('/', async (c) => {
  checkQueryParameters(c, PUBLISH_PARAMETERS, [CLASS_OUTPUT_FIELD])
  const name = modelNameParameter(c.req.query('name'))
  const priceWei = required(c.req.query('price_wei'), 'price_wei', WEI_PATTERN, 'the price per inference in wei, a decimal integer')
  if (BigInt(priceWei) >= 2n ** 256n) throw new InvalidRequestError('price_wei must be below 2^256', 'price_wei')
  const payoutAddress = required(c.req.query('payout_address'), 'payout_address', ADDRESS_PATTERN, 'an Ethereum address (0x and 40 hex digits)')
  const addressTypo = addressProblem(payoutAddress)
  if (addressTypo !== undefined) throw new InvalidRequestError(`payout_address ${addressTypo}, got ${payoutAddress}`, 'payout_address')
  if (payoutAddress === ZERO_ADDRESS) throw new InvalidRequestError('payout_address must not be the zero address: earnings paid to it would be burned', 'payout_address')
  const description = c.req.query('description') ?? ''
  if (description.length > 2000) throw new InvalidRequestError('description must be at most 2000 characters', 'description')
  const int8 = int8Variant(c)
  // Before reading up to MAX_MODEL_BYTES of upload that would be refused anyway.
  const publisher = await publisherOf(c, name)
  const file = await publishedFile(c)
  let outcome
  try {
    outcome = await publishModel(
      c.env.DB,
      c.env.MODELS,
      { name, description, priceWei, payoutAddress, publisher, file, variants: int8 ? [int8] : [] },
      Date.now(),
    )
  } catch (error) {
    if (error instanceof NameOwnedError) throw new NameForbiddenError(error)
    if (error instanceof LookalikeConflictError) throw new DepinferError(409, 'model-name-lookalike', 'Model name look-alike', error.message, { field: 'name' })
    if (error instanceof OnnxFormatError) throw new InvalidRequestError(error.message, 'body')
    if (error instanceof UnknownFileError) throw new InvalidRequestError(error.message, 'sha256')
    if (error instanceof VariantRejectedError) throw new InvalidRequestError(error.message, error.field)
    if (/UNIQUE constraint failed/.test(messageOf(error))) {
      throw new DepinferError(409, 'version-conflict', 'Concurrent publish', `another version of ${name} was published at the same time; retry`, { field: 'name', retryAfterSec: 1 })
    }
    throw error
  }
  const { model, created } = outcome
  // This isolate's requests see the new version at once (others within the cache's 2 s): a name
  // devices already serve is priced and routed by its registry entry from the next job on.
  if (created) forgetPublishedVersions(name)
  c.header('Location', `/api/models/${model.name}/versions/${model.version}`)
  return c.json(view(model), created ? 201 : 200)
})

/**
 * What a publish is of: the request body, the .onnx file (up to MAX_MODEL_BYTES), or with
 * `sha256=` and no body, a file stored before (a resumable upload's, routes/uploads.ts).
 */
async function publishedFile(c: Context<ModelsEnv>): Promise<PublishRequest['file']> {
  const sha256 = c.req.query('sha256')
  if (sha256 !== undefined) {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new InvalidRequestError(`sha256 must be the sha256 of a stored file, 64 lowercase hex digits, got ${JSON.stringify(sha256.slice(0, 100))}`, 'sha256')
    // A body of more than a byte is a 413 from the reader (drained, not kept): a body either way.
    const body = await readBodyCapped(c.req.raw, 1).catch(() => Uint8Array.of(0))
    if (body.byteLength > 0) throw new InvalidRequestError('sha256 names a stored file to publish: send no body with it (or send the file without sha256)', 'sha256')
    return { sha256 }
  }
  const bytes = await readBodyCapped(c.req.raw, numberVar(c.env.MAX_MODEL_BYTES, DEFAULT_MAX_MODEL_BYTES))
  if (bytes.byteLength === 0) throw new InvalidRequestError('the request body must be the .onnx file (or, with no body, sha256= naming a file uploaded before)', 'body')
  return { bytes }
}

/** A file to be named as a variant by a later publish: read as ONNX, stored under its sha256. */
models.post('/files', async (c) => {
  const bytes = await readBodyCapped(c.req.raw, numberVar(c.env.MAX_MODEL_BYTES, DEFAULT_MAX_MODEL_BYTES))
  if (bytes.byteLength === 0) throw new InvalidRequestError('the request body must be the .onnx file', 'body')
  let outcome
  try {
    outcome = await uploadModelFile(c.env.DB, c.env.MODELS, { bytes, uploadedBy: c.get('apiKeyLabel') }, Date.now())
  } catch (error) {
    if (error instanceof OnnxFormatError) throw new InvalidRequestError(error.message, 'body')
    throw error
  }
  return c.json(outcome.file, outcome.created ? 201 : 200)
})

models.get('/', async (c) => {
  checkQueryParameters(c, ['name'])
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
  return serveFile(c, model.sha256, model.size, `the file of ${model.name} v${model.version}`)
})

/** A variant's file, served like the version's own. */
models.get('/:name/versions/:version/variants/:kind/file', async (c) => {
  const model = await find(c.env.DB, c.req.param('name'), c.req.param('version'))
  const kind = c.req.param('kind')
  const variant: PublishedVariant | undefined = model.variants.find((v) => v.kind === kind)
  if (!variant) {
    const kinds = model.variants.map((v) => v.kind)
    throw new NotFoundError(`model ${model.name} v${model.version} has no ${JSON.stringify(kind)} variant${kinds.length > 0 ? `; variants: ${kinds.join(', ')}` : ''}`, 'kind')
  }
  return serveFile(c, variant.sha256, variant.size, `the ${kind} file of ${model.name} v${model.version}`)
})

/** A stored model file by sha256; its `ETag` is the sha256, so a resumed download knows it is the same file. */
async function serveFile(c: Context<ModelsEnv>, sha256: string, size: number, what: string): Promise<Response> {
  const range = parseRange(c.req.header('Range'), size)
  if (range === 'unsatisfiable') {
    // A problem like every other error, with the size a client needs to ask again (RFC 9110 §15.5.17).
    const response = problemResponse(
      c,
      new DepinferError(416, 'range-not-satisfiable', 'Range not satisfiable', `${c.req.header('Range')} is outside ${what}, which is ${size} bytes`, { field: 'Range' }),
    )
    response.headers.set('Content-Range', `bytes */${size}`)
    return response
  }
  const object = await c.env.MODELS.get(modelObjectKey(sha256), range ? { range: { offset: range.start, length: range.end - range.start + 1 } } : {})
  if (!object) throw new DepinferError(503, 'model-file-missing', 'Model file unavailable', `${what} is missing from storage`, { retryAfterSec: 30 })
  const headers: Record<string, string> = {
    'Content-Type': 'application/octet-stream',
    'Accept-Ranges': 'bytes',
    ETag: `"${sha256}"`,
    'X-Model-Sha256': sha256,
    'Cache-Control': 'private, max-age=31536000, immutable',
  }
  if (!range) return c.body(object.body, 200, { ...headers, 'Content-Length': String(size) })
  return c.body(object.body, 206, {
    ...headers,
    'Content-Length': String(range.end - range.start + 1),
    'Content-Range': `bytes ${range.start}-${range.end}/${size}`,
  })
}

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
