/**
 * Open Inference Protocol (KServe v2) REST routes: health, server and model metadata, model
 * readiness, inference, and the model repository index.
 */
import { compareVersions, inputCommitment, newSalt, sha256Hex, variantAccepted, messageOf } from '@depinfer/shared'
import { Hono, type Context } from 'hono'
import { numberVar, type Env } from '../env.js'
import { DepinferError } from '../errors/base.js'
import { InvalidRequestError } from '../errors/request.js'
import type { PublishedFile } from '../gateway/catalog.js'
import type { AcceptedVariant, InferResult, ModelInfo, Outcome, RepositoryEntry } from '../gateway/rpc.js'
import { variantRan } from '../gateway/served-file.js'
import { gatewayStub } from '../gateway/stub.js'
import { validateInputs } from '../gateway/validate-inputs.js'
import { publishedVersions, type PublishedVersionTerms } from '../models/published-versions.js'
import { listPublishedModels, publishedModel } from '../models/registry.js'
import { apiKeyAuth, type AuthVariables } from '../middleware/auth.js'
import { paymentsSetting } from '../payments/config.js'
import { holdPayment } from '../payments/hold.js'
import { quoteJob } from '../payments/pricing.js'
import { readBodyCapped } from '../http/read-body.js'
import { parseInferRequest } from '../v2/infer-request.js'
import { HEADER_LENGTH_HEADER, splitBinaryBody } from '../v2/binary-body.js'
import { inferResponse } from '../v2/infer-response.js'

const SERVER_NAME = 'depinfer'
const SERVER_VERSION = '0.1.0'
const DEFAULT_DEADLINE_MS = 30_000
const DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
const utf8 = new TextDecoder()
const utf8Encoder = new TextEncoder()

/** Unwraps a Durable Object RPC outcome, rethrowing its problem as an error. */
function unwrap<T>(outcome: Outcome<T>): T {
  if (outcome.ok) return outcome.value
  throw DepinferError.fromProblem(outcome.problem)
}

/** `:model` and the optional `:version` of a model route (the route pattern guarantees :model). */
function modelParams(c: Context): [model: string, version: string | undefined] {
  return [c.req.param('model') ?? '', c.req.param('version')]
}

export const v2 = new Hono<{ Bindings: Env; Variables: AuthVariables }>()

// Health is open (probes carry no keys); the spec answers with the status code: 200 is true,
// 4xx false (OIP "Health"). The body says why.
v2.get('/health/live', (c) => c.json({ live: true }))
v2.get('/health/ready', async (c) => {
  const health = await gatewayStub(c.env).health()
  const ready = health.brokerConnected && health.devicesOnline > 0
  return c.json({ ready, broker_connected: health.brokerConnected, devices_online: health.devicesOnline }, ready ? 200 : 400)
})

v2.use('*', apiKeyAuth)

v2.get('/', (c) =>
  // Not 'model_repository': that extension means index, load and unload, and what a network of
  // devices serves is the devices' choice. The index alone is served (/v2/repository/index).
  c.json({ name: SERVER_NAME, version: SERVER_VERSION, extensions: ['binary_tensor_data'] }),
)

v2.post('/repository/index', async (c) => {
  const readyOnly = await readyFilter(c.req.raw)
  const published = await listPublishedModels(c.env.DB)
  const variants = published.flatMap((m) => m.variants.filter(variantAccepted).map(({ kind, sha256 }) => ({ name: m.name, version: m.version, kind, sha256 })))
  const served = await gatewayStub(c.env).repository(variants)
  const publishedNames = new Set(published.map((m) => m.name))
  const publishedFiles = new Map(published.map((m) => [`${m.name}\u0000${m.version}`, m.sha256]))
  const entries: RepositoryEntry[] = []
  for (const entry of unwrap(served)) {
    // The Gateway lists one entry per file devices serve under a name and version. A published
    // name lists the entries of its published files (what the Gateway routes to, resolveModel);
    // any other name, the version's defining entry.
    const listed = publishedNames.has(entry.name)
      ? publishedFiles.get(`${entry.name}\u0000${entry.version}`) === entry.sha256
      : entry.defining
    if (listed) entries.push(entry)
  }
  // Published versions no device serves yet are listed too, as UNAVAILABLE.
  const known = new Set(entries.map((e) => `${e.name}\u0000${e.version}`))
  for (const model of published) {
    if (!known.has(`${model.name}\u0000${model.version}`)) {
      entries.push({ name: model.name, version: model.version, sha256: model.sha256, defining: true, state: 'UNAVAILABLE', reason: 'published; no device serves it yet' })
    }
  }
  return c.json(entries.filter((e) => !readyOnly || e.state === 'READY').map(({ name, version, state, reason }) => ({ name, version, state, reason })))
})

/** The index request's optional `{"ready": true}`: list only models ready for inference. */
async function readyFilter(request: Request): Promise<boolean> {
  const text = utf8.decode(await readBodyCapped(request, 4096)).trim()
  if (text === '') return false
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch (error) {
    throw new InvalidRequestError(`body is not valid JSON: ${messageOf(error)}`, 'body')
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new InvalidRequestError('the body must be a JSON object', 'body')
  const ready = (body as { ready?: unknown }).ready
  if (ready !== undefined && typeof ready !== 'boolean') throw new InvalidRequestError('ready must be true or false', 'ready')
  return ready === true
}

/**
 * The published versions of `name` (none for a name nobody published, e.g. a bundled model).
 * Without D1 the last versions read for the name stand in (publishedVersions); a name never read
 * in this isolate is then judged by what devices advertise alone, so free models keep working.
 */
async function publishedOf(env: Env, name: string): Promise<PublishedVersionTerms[]> {
  return publishedVersions(env.DB, name, Date.now()).catch((error: unknown) => {
    console.warn(`published versions of ${name} unavailable: ${messageOf(error)}`)
    return []
  })
}

const filesOf = (published: readonly PublishedVersionTerms[]): PublishedFile[] => published.map(({ version, sha256, size }) => ({ version, sha256, size }))
const acceptedVariantsOf = (published: readonly PublishedVersionTerms[]): AcceptedVariant[] =>
  published.flatMap((v) => v.acceptedVariants.map(({ kind, sha256 }) => ({ version: v.version, kind, sha256 })))

/**
 * A model's metadata: the Gateway's, from the devices serving it; for a published version no
 * device serves now (a 503 from the Gateway), the registry's, as UNAVAILABLE — it exists, it
 * just cannot run at the moment. A published name lists all its published versions.
 */
/**
 * The published version a request for `name` means (`version`, else the newest of
 * `publishedVersions`), from the registry: what metadata and input checks fall back to while no
 * device serves it. Undefined for a name nobody published.
 */
async function unservedPublishedModel(env: Env, name: string, version: string | undefined, publishedVersions: readonly string[]) {
  if (publishedVersions.length === 0) return undefined
  return publishedModel(env.DB, name, version ?? [...publishedVersions].sort(compareVersions).at(-1)!)
}

async function modelInfo(env: Env, name: string, version: string | undefined): Promise<ModelInfo> {
  const published = await publishedOf(env, name)
  const outcome = await gatewayStub(env).model(name, version, filesOf(published), acceptedVariantsOf(published))
  const versions = published.map((p) => p.version).sort(compareVersions)
  if (outcome.ok) return published.length === 0 ? outcome.value : { ...outcome.value, versions }
  const model = outcome.problem.status === 503 ? await unservedPublishedModel(env, name, version, versions) : undefined
  if (!model) throw DepinferError.fromProblem(outcome.problem)
  return {
    name,
    version: model.version,
    versions,
    sha256: model.sha256,
    platform: 'onnxruntime_onnx',
    inputs: model.inputs,
    outputs: model.outputs,
    maxBatch: 1,
    state: 'UNAVAILABLE',
    readyDevices: 0,
  }
}

for (const prefix of ['/models/:model', '/models/:model/versions/:version']) {
  v2.get(prefix, async (c) => {
    const info = await modelInfo(c.env, ...modelParams(c))
    return c.json({
      name: info.name,
      versions: info.versions,
      platform: info.platform,
      inputs: info.inputs,
      outputs: info.outputs,
      parameters: {
        version: info.version,
        sha256: info.sha256,
        dynamic_batching_max_rows: info.maxBatch,
        state: info.state,
        ready_devices: info.readyDevices,
        ...(await priceParameter(c.env, info.name, info.version)),
      },
      sha256: info.sha256,
    })
  })

  v2.get(`${prefix}/ready`, async (c) => {
    const info = await modelInfo(c.env, ...modelParams(c))
    const ready = info.state === 'READY'
    return c.json({ name: info.name, version: info.version, ready, state: info.state }, ready ? 200 : 400)
  })

  v2.post(`${prefix}/infer`, async (c) => {
    // The body is JSON whatever Content-Type says: v2 clients and curl examples often omit it.
    const bytes = await readBodyCapped(c.req.raw, numberVar(c.env.MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES))
    const headerLength = c.req.header(HEADER_LENGTH_HEADER)
    const { json, binary } = headerLength === undefined ? { json: bytes, binary: undefined } : splitBinaryBody(bytes, headerLength)
    const text = utf8.decode(json)
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch (error) {
      throw invalidJsonHeader(messageOf(error), text, headerLength)
    }
    const request = parseInferRequest(body, binary, text)
    const defaultDeadlineMs = numberVar(c.env.JOB_DEADLINE_MS, DEFAULT_DEADLINE_MS)
    const [model, requestedVersion] = modelParams(c)
    const deadlineMs = Math.min(request.timeoutMs ?? defaultDeadlineMs, defaultDeadlineMs)
    const gateway = gatewayStub(c.env)
    // The variants devices may run instead of a version's own file (its int8 file, where the
    // publisher's report meets its threshold); looked up before any payment is held. Without
    // D1 the job still runs, on devices running the versions' own files only.
    const published = await publishedOf(c.env, model)
    const publishedFiles = filesOf(published)
    const variants = acceptedVariantsOf(published)
    // With payments on, the request is checked against the model before any price is held, so
    // a bad request is a 400 whether or not its payer could pay (one more Gateway call, on that
    // path only; the Gateway checks again against the version it runs).
    let checkedAgainst: ModelInfo | undefined
    let result: InferResult
    try {
      if (paymentsSetting(c.env).enabled) {
        checkedAgainst = unwrap(await gateway.model(model, requestedVersion, publishedFiles, variants))
        validateInputs(checkedAgainst, request.inputs, request.outputs)
      }
      // A priced job's price is held against the key's payer before anything reaches a device
      // (402 when it cannot be); a free job passes straight through.
      const payment = await holdPayment(c.env, {
        payer: c.get('payer'),
        apiKeyLabel: c.get('apiKeyLabel'),
        model,
        version: requestedVersion,
        deadlineMs,
        resolveVersion: async () => checkedAgainst?.version ?? unwrap(await gateway.model(model, undefined, publishedFiles, variants)).version,
        maxPriceWei: request.maxPriceWei,
      })
      // The input commitment is hashed here, in the stateless Worker, not in the Gateway Durable
      // Object: hashing a large input costs milliseconds the single-threaded DO would serialize.
      const salt = newSalt()
      try {
        result = unwrap(
          await gateway.infer({
            model,
            version: payment.version,
            inputs: request.inputs,
            salt,
            inputHash: inputCommitment(salt, request.inputs),
            outputs: request.outputs,
            // The key's hash, hashed again: the same for a caller's jobs, and nothing a device could use.
            batchGroup: sha256Hex(`batch-group:${c.get('apiKeyHash')}`).slice(0, 32),
            account: c.get('apiKeyAccount'),
            deadlineMs,
            priceWei: payment.priceWei,
            ...(payment.reservationId !== undefined && { reservationId: payment.reservationId }),
            ...(payment.sha256 !== undefined && { sha256: payment.sha256 }),
            variants,
            published: publishedFiles,
          }),
        )
      } catch (error) {
        // Whatever failed (no device, timeout, rejected input…), the payer is not charged.
        await payment.release()
        throw error
      }
    } catch (error) {
      // No device serves the version (503, retry later), but a request it could never run is
      // the client's to fix, not to retry: the registry knows the version's inputs.
      // Not for a refusal under load (devices-busy, gateway-busy): devices serve the model, and a
      // D1 read per refusal would add to the load.
      const unserved = error instanceof DepinferError && error.status === 503 && error.slug !== 'devices-busy' && error.slug !== 'gateway-busy'
        ? await unservedPublishedModel(c.env, model, requestedVersion, publishedFiles.map((p) => p.version)).catch(() => undefined)
        : undefined
      if (unserved) validateInputs({ name: model, inputs: unserved.inputs, outputs: unserved.outputs }, request.inputs, request.outputs)
      throw error
    }
    const response = inferResponse(result, variantRan(variants, result.modelVersion, result.attestation.modelHash), request.id, request.outputs, request.binaryOutputs)
    if (response.kind === 'json') return c.body(response.body, 200, { 'Content-Type': 'application/json' })
    return c.body(response.body, 200, {
      'Content-Type': 'application/octet-stream',
      [HEADER_LENGTH_HEADER]: String(response.headerLength),
    })
  })
}

/**
 * `price_wei`: what one inference on this version costs now (developer price + provider fee, as
 * charged; "0" with payments off), so a caller can see it before it pays and set
 * `max_price_wei`. Left out when the settings or the published prices cannot be read: the
 * metadata still answers.
 */
async function priceParameter(env: Env, name: string, version: string): Promise<{ price_wei?: string }> {
  try {
    const setting = paymentsSetting(env)
    if (!setting.enabled) return { price_wei: '0' }
    const quote = await quoteJob(env.DB, setting.config, name, version, async () => version)
    return { price_wei: String(quote.totalWei) }
  } catch (error) {
    if (!(error instanceof DepinferError)) console.warn(`price of ${name} v${version} for its metadata: ${messageOf(error)}`)
    return {}
  }
}

/**
 * Why the JSON of an infer request does not parse, in terms of the binary tensor extension when
 * that is the likely mistake: a JSON value followed by more bytes is a binary request without
 * (or with a wrong) Inference-Header-Content-Length, and V8 says where the JSON ended.
 */
function invalidJsonHeader(reason: string, text: string, headerLength: string | undefined): InvalidRequestError {
  const position = /after JSON at position (\d+)/.exec(reason)?.[1]
  // V8 counts characters, and may count whitespace bytes of the binary part as the JSON's: the
  // JSON's own length in bytes is what the header wants.
  const jsonEnd = position === undefined ? undefined : utf8Encoder.encode(text.slice(0, Number(position)).trimEnd()).byteLength
  if (headerLength === undefined) {
    return jsonEnd === undefined
      ? new InvalidRequestError(`body is not valid JSON: ${reason}`, 'body')
      : new InvalidRequestError(
          `body is JSON followed by other bytes, from byte ${jsonEnd}: for binary tensor data, send the JSON's length as ${HEADER_LENGTH_HEADER} (here ${jsonEnd})`,
          'body',
        )
  }
  const hint = jsonEnd === undefined
    ? `is it the length of the JSON part alone? (${reason})`
    : `the JSON ends at byte ${jsonEnd}`
  return new InvalidRequestError(`the first ${headerLength.trim()} bytes (${HEADER_LENGTH_HEADER}) are not one JSON object: ${hint}`, HEADER_LENGTH_HEADER)
}
