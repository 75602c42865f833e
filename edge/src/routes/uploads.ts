/**
 * Resumable uploads of large model files (models/uploads.ts), for files over what one request may
 * carry (MAX_MODEL_BYTES):
 *
 *   POST   /api/models/uploads?sha256=&size=      begin (201), or resume this key's open upload
 *                                                 of that file (200, with its received parts), or
 *                                                 nothing to send: the edge holds it (200, stored)
 *   GET    /api/models/uploads                    this key's open uploads
 *   GET    /api/models/uploads/{id}               the session: part size, parts received
 *   PUT    /api/models/uploads/{id}/parts/{n}     part n (1-based), exactly partBytes (the last: the rest)
 *   POST   /api/models/uploads/{id}/complete      checks and stores the file (201, or 200 if held already)
 *   DELETE /api/models/uploads/{id}               aborts it
 *
 * The completed file is one a publish names by `sha256=` (POST /api/models, no body), as the
 * model's own file or as its int8 variant's.
 */
import { OnnxFormatError } from '@depinfer/shared'
import { Hono } from 'hono'
import { numberVar, type Env } from '../env.js'
import { DepinferError } from '../errors/base.js'
import { InvalidRequestError, PayloadTooLargeError } from '../errors/request.js'
import { checkQueryParameters, intQuery } from '../http/query.js'
import { readBodyCapped } from '../http/read-body.js'
import { apiKeyAuth, type AuthVariables } from '../middleware/auth.js'
import {
  abortUpload,
  beginUpload,
  completeUpload,
  DEFAULT_MAX_UPLOAD_BYTES,
  DEFAULT_PART_BYTES,
  expectedPartBytes,
  MIN_PART_BYTES,
  openUploads,
  receivePart,
  uploadSession,
  type UploadLimits,
} from '../models/uploads.js'
import { modelNameParameter, publisherOf } from './models.js'

export const uploads = new Hono<{ Bindings: Env; Variables: AuthVariables }>()

uploads.use('*', apiKeyAuth)

function limitsOf(env: Env): UploadLimits {
  return {
    maxBytes: numberVar(env.MAX_UPLOAD_BYTES, DEFAULT_MAX_UPLOAD_BYTES),
    // R2 refuses to assemble parts under 5 MiB (all but the last).
    partBytes: Math.max(MIN_PART_BYTES, Math.floor(numberVar(env.UPLOAD_PART_BYTES, DEFAULT_PART_BYTES))),
  }
}

uploads.post('/', async (c) => {
  checkQueryParameters(c, ['sha256', 'size', 'name'])
  // The name the file is for, when given: a name another publisher owns is refused now, not
  // after gigabytes of parts (the publish would refuse it then).
  const name = c.req.query('name')
  if (name !== undefined) await publisherOf(c, modelNameParameter(name))
  const sha256 = c.req.query('sha256')
  if (sha256 === undefined || !/^[0-9a-f]{64}$/.test(sha256)) {
    throw new InvalidRequestError(`sha256 is required: the file's sha256 as 64 lowercase hex digits, got ${JSON.stringify((sha256 ?? '').slice(0, 100))}`, 'sha256')
  }
  if (c.req.query('size') === undefined) throw new InvalidRequestError('size is required: the file\'s size in bytes', 'size')
  const size = intQuery(c.req.query('size'), 'size', 0, 1, Number.MAX_SAFE_INTEGER)
  const outcome = await beginUpload(
    c.env.DB,
    c.env.MODELS,
    { sha256, size, keyHash: c.get('apiKeyHash'), uploadedBy: c.get('apiKeyLabel') },
    limitsOf(c.env),
    Date.now(),
  )
  if (outcome.state === 'stored') return c.json({ state: 'stored', file: outcome.file }, 200)
  c.header('Location', `/api/models/uploads/${outcome.session.id}`)
  return c.json({ ...outcome.session, resumed: outcome.resumed }, outcome.resumed ? 200 : 201)
})

uploads.get('/', async (c) => {
  checkQueryParameters(c, [])
  return c.json({ uploads: await openUploads(c.env.DB, c.get('apiKeyHash')) })
})

uploads.get('/:id', async (c) => c.json(await uploadSession(c.env.DB, c.req.param('id'), c.get('apiKeyHash'))))

uploads.put('/:id/parts/:part', async (c) => {
  const id = c.req.param('id')
  const keyHash = c.get('apiKeyHash')
  const part = intQuery(c.req.param('part'), 'part', 0, 1, 10_000)
  const expected = await expectedPartBytes(c.env.DB, id, keyHash, part)
  const bytes = await readBodyCapped(c.req.raw, expected).catch((error: unknown) => {
    if (!(error instanceof PayloadTooLargeError)) throw error
    throw new DepinferError(413, 'payload-too-large', 'Payload too large', `part ${part} must be exactly ${expected} bytes, got more`, { field: 'body' })
  })
  return c.json(await receivePart(c.env.DB, c.env.MODELS, id, keyHash, part, bytes))
})

uploads.post('/:id/complete', async (c) => {
  try {
    const { file, created } = await completeUpload(c.env.DB, c.env.MODELS, c.req.param('id'), c.get('apiKeyHash'), Date.now())
    return c.json(file, created ? 201 : 200)
  } catch (error) {
    if (error instanceof OnnxFormatError) throw new InvalidRequestError(`${error.message}; the upload is discarded`, 'body')
    throw error
  }
})

uploads.delete('/:id', async (c) => {
  await abortUpload(c.env.DB, c.env.MODELS, c.req.param('id'), c.get('apiKeyHash'))
  return c.body(null, 204)
})
