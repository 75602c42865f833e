/**
 * `depinfer models publish`: uploads an ONNX file to the edge (POST /api/models), streaming it
 * with a progress bar. The edge validates the file, stores it under its sha256 and answers with
 * the new version; the CLI checks that the sha256 the edge recorded is the file's.
 *
 * With an int8 variant, its file goes first (POST /api/models/files), then the publish names it
 * by sha256 with its report and threshold: the edge records the version and its variant
 * together, so no device ever sees the version without it.
 *
 * A file over RESUMABLE_UPLOAD_BYTES goes up in parts (POST /api/models/uploads): past what one
 * request may carry, and resumable: run again after a failure, the command sends only the parts
 * the edge does not hold yet. The publish then names the file by sha256.
 */
import { createHash } from 'node:crypto'
import { addressProblem, ID_PATTERN, type PublishedVariant, type VariantReport } from '@depinfer/shared'
import { EdgeError, edgeIdleTimeoutMs, requestEdge, uploadDrainMs } from './edge.js'
import { CliError } from './errors.js'

export interface Int8Upload {
  bytes: Uint8Array
  report: VariantReport
  minAgreement: number
}

export interface PublishOptions {
  edgeUrl: URL
  apiKey: string
  /** The model file's bytes. */
  bytes: Uint8Array
  name: string
  priceWei: string
  payoutAddress: string
  description?: string
  int8?: Int8Upload
  /** Upload progress of each file: the model's (`model`) and the int8 variant's (`int8`). */
  onProgress?: (file: 'model' | 'int8', sentBytes: number, totalBytes: number) => void
  /** A file's upload in parts resumes with `held` of its `count` parts (`heldBytes` of it) already on the edge. */
  onResume?: (file: 'model' | 'int8', held: number, count: number, heldBytes: number, totalBytes: number) => void
  /** The edge holds the file already: nothing of it is sent. */
  onStored?: (file: 'model' | 'int8') => void
}

export interface PublishedVersion {
  name: string
  version: string
  sha256: string
  size: number
  priceWei: string
  inputs: { name: string; datatype: string; shape: number[] }[]
  outputs: { name: string; datatype: string; shape: number[] }[]
  variants: (PublishedVariant & { accepted: boolean })[]
}

const ZERO_ADDRESS = /^0x0{40}$/

/**
 * The name, price and payout address as the edge will check them (edge/src/routes/models.ts, the
 * same words with the option's name), so a bad one is refused before a large file is read,
 * quantized or uploaded.
 */
export function checkPublishTerms(name: string, priceWei: string, payoutAddress: string): void {
  if (!ID_PATTERN.test(name)) {
    throw new CliError(`--name must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit, got ${JSON.stringify(name.slice(0, 100))}`, 2)
  }
  if (!/^(0|[1-9][0-9]{0,77})$/.test(priceWei)) {
    throw new CliError(`--price-wei must be the price per inference in wei, a decimal integer, got ${JSON.stringify(priceWei.slice(0, 100))}`, 2)
  }
  if (BigInt(priceWei) >= 2n ** 256n) throw new CliError('--price-wei must be below 2^256', 2)
  const problem = addressProblem(payoutAddress)
  if (problem !== undefined) throw new CliError(`--payout-address ${problem}, got ${JSON.stringify(payoutAddress.slice(0, 100))}`, 2)
  if (ZERO_ADDRESS.test(payoutAddress)) throw new CliError('--payout-address must not be the zero address: earnings paid to it would be burned', 2)
}

const CHUNK_BYTES = 256 * 1024
const sha256Of = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

/**
 * Files larger than this go up in parts: a Worker takes request bodies up to 100 MB (the edge's
 * MAX_MODEL_BYTES, 95 MiB by default), and a part lost to a network failure is all that is sent again.
 */
export const RESUMABLE_UPLOAD_BYTES = 8 * 1024 * 1024
/** Times a part (or the completion) is sent before the upload gives up (the command, run again, resumes it). */
const PART_ATTEMPTS = 3

/** Where the file's bytes are in the whole upload, for a progress bar over all of them. */
interface ProgressSpan {
  file: 'model' | 'int8'
  /** Bytes of the file on the edge before this body. */
  before: number
  total: number
}

/**
 * Sends `bytes` as the body of a `method` request, reporting progress; returns the JSON answer,
 * or throws EdgeError with the edge's problem.
 */
function sendBody(url: URL, method: 'POST' | 'PUT', bytes: Uint8Array, options: PublishOptions, span: ProgressSpan, what: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const init = (progress: (extraMs?: number) => void) => {
    let sent = 0
    // Streamed in chunks so the progress bar follows what fetch has actually taken.
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= bytes.byteLength) {
          // Handed to fetch is not yet at the edge: give the rest, and the edge's checks, time.
          progress(uploadDrainMs(bytes.byteLength))
          controller.close()
          return
        }
        progress()
        const chunk = bytes.subarray(sent, sent + CHUNK_BYTES)
        sent += chunk.byteLength
        options.onProgress?.(span.file, span.before + sent, span.total)
        controller.enqueue(chunk)
      },
    })
    return {
      method,
      headers: {
        Authorization: `Bearer ${options.apiKey}`,
        'Content-Type': 'application/octet-stream',
        'Content-Length': String(bytes.byteLength),
      },
      body,
      duplex: 'half',
    } as RequestInit & { duplex: 'half' }
  }
  return requestEdge(options.edgeUrl, url, init, what)
}

const upload = (url: URL, bytes: Uint8Array, options: PublishOptions, file: 'model' | 'int8', what: string) =>
  sendBody(url, 'POST', bytes, options, { file, before: 0, total: bytes.byteLength }, what)

/**
 * `request` (a part, the completion), tried up to PART_ATTEMPTS times: the edge's own refusal
 * (4xx) is final, a lost connection or a 5xx is worth another try.
 */
async function withRetries<T>(request: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await request()
    } catch (error) {
      const transient = error instanceof EdgeError && (error.status === undefined || error.status >= 500)
      if (!transient || attempt === PART_ATTEMPTS) throw resumable(error)
    }
  }
}

/** What a failed request's error says, plus how to go on: the edge keeps the parts it has. */
function resumable(error: unknown): unknown {
  if (!(error instanceof EdgeError)) return error
  return new EdgeError(`${error.message}; run the same command again to resume the upload`, error.status, error.field, { cause: error })
}

/** An open upload as the edge describes it (edge/src/routes/uploads.ts). */
interface UploadSessionAnswer {
  state: 'open'
  id: string
  partBytes: number
  partCount: number
  receivedParts: number[]
}

/**
 * Stores `bytes` on the edge in parts (POST /api/models/uploads), resuming this key's upload of
 * the same file if one is open: only the parts the edge lacks are sent. Nothing is sent when the
 * edge holds the file already. Afterwards the file is the edge's, under its sha256.
 */
async function uploadInParts(bytes: Uint8Array, sha256: string, options: PublishOptions, file: 'model' | 'int8', what: string): Promise<void> {
  const headers = { Authorization: `Bearer ${options.apiKey}` }
  const begin = new URL('/api/models/uploads', options.edgeUrl)
  begin.searchParams.set('sha256', sha256)
  begin.searchParams.set('size', String(bytes.byteLength))
  // A name another publisher owns is refused now, before any part is sent.
  begin.searchParams.set('name', options.name)
  const { json } = await requestEdge(options.edgeUrl, begin, { method: 'POST', headers }, `${what}: beginning the upload`)
  if (json.state === 'stored') {
    options.onStored?.(file)
    return
  }
  const session = json as unknown as UploadSessionAnswer
  const held = new Set(session.receivedParts)
  const bytesOf = (part: number) => bytes.subarray((part - 1) * session.partBytes, part * session.partBytes)
  let onEdge = [...held].reduce((sum, part) => sum + bytesOf(part).byteLength, 0)
  if (held.size > 0) options.onResume?.(file, held.size, session.partCount, onEdge, bytes.byteLength)
  const partUrl = (part: number) => new URL(`/api/models/uploads/${session.id}/parts/${part}`, options.edgeUrl)
  for (let part = 1; part <= session.partCount; part++) {
    if (held.has(part)) continue
    const bytesOfPart = bytesOf(part)
    await withRetries(() => sendBody(partUrl(part), 'PUT', bytesOfPart, options, { file, before: onEdge, total: bytes.byteLength }, `${what}: part ${part} of ${session.partCount}`))
    onEdge += bytesOfPart.byteLength
  }
  // The edge reads the whole file again (its sha256, the ONNX graph) before it answers; sent
  // again, a completion whose answer was lost answers the stored file.
  const complete = new URL(`/api/models/uploads/${session.id}/complete`, options.edgeUrl)
  const { json: stored } = await withRetries(() =>
    requestEdge(options.edgeUrl, complete, { method: 'POST', headers }, `${what}: completing the upload`, edgeIdleTimeoutMs() + uploadDrainMs(bytes.byteLength)),
  )
  if (stored.sha256 !== sha256) throw new EdgeError(`the edge stored ${file === 'model' ? 'the model' : 'the int8 variant'} as sha256 ${String(stored.sha256)}, but the file's is ${sha256}`)
}

/** Publishes the model (and its int8 variant first, if any); the terms are checked beforehand (checkPublishTerms). */
export async function publishModelFile(options: PublishOptions): Promise<{ model: PublishedVersion; created: boolean }> {
  const { bytes } = options
  const sha256 = sha256Of(bytes)
  const url = new URL('/api/models', options.edgeUrl)
  url.searchParams.set('name', options.name)
  url.searchParams.set('price_wei', options.priceWei)
  url.searchParams.set('payout_address', options.payoutAddress)
  if (options.description) url.searchParams.set('description', options.description)
  const int8 = options.int8
  const int8Sha256 = int8 && sha256Of(int8.bytes)
  if (int8 && int8Sha256) {
    if (int8.bytes.byteLength > RESUMABLE_UPLOAD_BYTES) await uploadInParts(int8.bytes, int8Sha256, options, 'int8', 'uploading the int8 variant')
    else {
      const uploaded = await upload(new URL('/api/models/files', options.edgeUrl), int8.bytes, options, 'int8', 'uploading the int8 variant')
      if (uploaded.json.sha256 !== int8Sha256) throw new EdgeError(`the edge stored the int8 variant as sha256 ${String(uploaded.json.sha256)}, but the file's is ${int8Sha256}`)
    }
    url.searchParams.set('int8_sha256', int8Sha256)
    // String(x) writes what the edge reads back exactly (e.g. 0.985, 1e-7).
    url.searchParams.set('int8_top1_agreement', String(int8.report.top1Agreement))
    url.searchParams.set('int8_max_abs_error', String(int8.report.maxAbsError))
    url.searchParams.set('int8_samples', String(int8.report.samples))
    // One parameter per name: an output name may hold a comma.
    for (const name of int8.report.classOutputs ?? []) url.searchParams.append('int8_class_output', name)
    url.searchParams.set('int8_min_agreement', String(int8.minAgreement))
  }
  let answer
  if (bytes.byteLength > RESUMABLE_UPLOAD_BYTES) {
    await uploadInParts(bytes, sha256, options, 'model', 'publish')
    url.searchParams.set('sha256', sha256)
    answer = await requestEdge(options.edgeUrl, url, { method: 'POST', headers: { Authorization: `Bearer ${options.apiKey}` } }, 'publish')
  } else answer = await upload(url, bytes, options, 'model', 'publish')
  const { status, json } = answer
  const model = json as unknown as PublishedVersion
  if (model.sha256 !== sha256) throw new EdgeError(`the edge recorded sha256 ${model.sha256}, but the file's is ${sha256}`)
  if (int8Sha256 && !model.variants?.some((v) => v.kind === 'int8' && v.sha256 === int8Sha256)) {
    throw new EdgeError(`the edge recorded ${model.name} v${model.version} without the int8 variant ${int8Sha256}`)
  }
  return { model, created: status === 201 }
}
