/**
 * Reads a request body up to a size limit, undoing its Content-Encoding (gzip or deflate): the
 * limit is one on the decoded bytes, so a small compressed body that inflates past it (a zip
 * bomb) is a 413 too, and decoding stops as soon as the limit is passed.
 *
 * An oversized body is still read to its end (and discarded, up to a hard cap) before the 413
 * goes out, and so is a body in an encoding we refuse before its 415: answering while the client
 * is still sending makes the runtime reset the connection, and most HTTP clients then report a
 * network error instead of the problem.
 */
import { concatBytes } from '@depinfer/shared/bytes'
import { DepinferError } from '../errors/base.js'
import { InvalidRequestError, PayloadTooLargeError } from '../errors/request.js'

/** Beyond this much we stop draining and let the connection drop (Cloudflare caps bodies too). */
const DRAIN_CAP_BYTES = 256 * 1024 * 1024

/** The content codings (RFC 9110 §8.4.1) a request body may use besides `identity`. */
export const CONTENT_CODINGS = ['gzip', 'deflate'] as const
export type ContentCoding = (typeof CONTENT_CODINGS)[number]

/** 415: the body's Content-Encoding is one the edge cannot undo. */
export class UnsupportedContentEncodingError extends DepinferError {
  /** RFC 9110 §15.5.16: a 415 for a content coding names the acceptable ones in Accept-Encoding. */
  readonly acceptEncoding = [...CONTENT_CODINGS, 'identity'].join(', ')

  constructor(detail: string) {
    super(415, 'unsupported-content-encoding', 'Unsupported Content-Encoding', detail, { field: 'Content-Encoding' })
  }
}

/**
 * 400: the body stopped before its end: fewer bytes than its Content-Length and the connection
 * closed, or a chunked upload cut off. The client's to resend; nothing was done with it.
 */
export class IncompleteBodyError extends DepinferError {
  /** `received` undefined: how much arrived is not known (a one-piece read that failed). */
  constructor(received: number | undefined, declared: number, cause: unknown) {
    const of = Number.isFinite(declared) ? ` the ${declared} bytes its Content-Length declares` : ' its end'
    const ended = received === undefined ? `ended before${of}` : `ended after ${received} bytes${Number.isFinite(declared) ? ` of${of}` : ''}`
    super(400, 'incomplete-body', 'Incomplete request body',
      `the request body ${ended}: the upload was cut off (${(cause as Error)?.message ?? String(cause)}); send it again`,
      { field: 'body', cause })
  }
}

const isContentCoding = (name: string): name is ContentCoding => (CONTENT_CODINGS as readonly string[]).includes(name)

/**
 * The coding to undo for a Content-Encoding header, or undefined when the body is plain.
 * `identity` is no coding at all, and `x-gzip` is gzip (RFC 9110 §8.4.1.3). Codings stacked on
 * one another (`gzip, gzip`) are refused: each layer would multiply a bomb's ratio, and no
 * inference client sends them.
 */
export function contentCoding(header: string | null): ContentCoding | undefined {
  if (header === null) return undefined
  const codings = header
    .split(',')
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== '' && coding !== 'identity')
    .map((coding) => (coding === 'x-gzip' ? 'gzip' : coding))
  const supported = `supported: ${CONTENT_CODINGS.join(', ')} or identity`
  const unknown = codings.find((coding) => !isContentCoding(coding))
  if (unknown !== undefined) {
    throw new UnsupportedContentEncodingError(`Content-Encoding ${JSON.stringify(unknown.slice(0, 40))} is not supported; ${supported}`)
  }
  if (codings.length > 1) {
    throw new UnsupportedContentEncodingError(
      `Content-Encoding ${JSON.stringify(header.slice(0, 100))} stacks ${codings.length} codings; at most one is supported (${supported})`,
    )
  }
  return codings[0] as ContentCoding | undefined
}

export async function readBodyCapped(request: Request, maxBytes: number): Promise<Uint8Array> {
  let coding: ContentCoding | undefined
  try {
    coding = contentCoding(request.headers.get('Content-Encoding'))
  } catch (error) {
    await drain(request.body?.getReader(), 0)
    throw error
  }
  if (coding === undefined) return readRaw(request, maxBytes, maxBytes)
  // Deflate makes incompressible data a little larger (stored blocks: zlib's compressBound is
  // +0.03% and a few bytes); this margin keeps the limit one on the decoded size only.
  const encoded = await readRaw(request, maxBytes + Math.ceil(maxBytes / 1024) + 1024, maxBytes)
  return decode(encoded, coding, maxBytes)
}

/** The body's bytes as sent, up to `limit` (413 naming `maxBytes`, the limit callers know). */
async function readRaw(request: Request, limit: number, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(request.headers.get('Content-Length') ?? Number.NaN)
  // Declared and within the limit: one native read (the runtime holds the body to its
  // Content-Length). Pulling the stream chunk by chunk cost ~40% of throughput here.
  if (declared <= limit) {
    try {
      return new Uint8Array(await request.arrayBuffer())
    } catch (error) {
      // What arrived is gone with the failed read: its size is not known.
      throw new IncompleteBodyError(undefined, declared, error)
    }
  }
  const reader = request.body?.getReader()
  if (!reader) return new Uint8Array(0)
  if (declared > limit) {
    await drain(reader, 0)
    throw new PayloadTooLargeError(maxBytes)
  }
  const chunks: Uint8Array[] = []
  let total = 0
  for (;;) {
    let next: ReadableStreamReadResult<Uint8Array>
    try {
      next = await reader.read()
    } catch (error) {
      throw new IncompleteBodyError(total, declared, error)
    }
    const { done, value } = next
    if (done) break
    total += value.byteLength
    if (total > limit) {
      await drain(reader, total)
      throw new PayloadTooLargeError(maxBytes)
    }
    chunks.push(value)
  }
  return concatBytes(chunks)
}

/**
 * Reads and discards a body nothing has read: a 4xx decided from the headers, path or query
 * (a wrong key, a name owned by someone else) goes out before the upload was read, and the
 * client would get a connection reset instead of it (see the module comment).
 */
export async function discardUnreadBody(request: Request): Promise<void> {
  if (request.bodyUsed || !request.body || request.body.locked) return
  await drain(request.body.getReader(), 0)
}

/**
 * Reads and discards the rest of a body (see the module comment), up to DRAIN_CAP_BYTES. Never
 * rejects: when the client has gone away meanwhile, there is nobody to answer anyway, and the
 * error the caller is about to throw (a 413, say) stands.
 */
async function drain(reader: ReadableStreamDefaultReader<Uint8Array> | undefined, alreadyRead: number): Promise<void> {
  if (!reader) return
  let total = alreadyRead
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) return
      total += value.byteLength
      if (total > DRAIN_CAP_BYTES) {
        await reader.cancel()
        return
      }
    }
  } catch {
    // The upload was cut off: nothing left to discard.
  }
}

/** Compressed bytes handed to the decompressor per step. */
const STEP_BYTES = 4096
/** Deflate's largest expansion: 258 bytes out per ~2 bits in. */
const MAX_DEFLATE_RATIO = 1032

/**
 * Undoes `coding`, failing with 413 once the output passes `maxBytes`. workerd's
 * DecompressionStream has no backpressure: a write inflates its whole chunk into memory at once,
 * read or not. So the compressed bytes go in STEP_BYTES at a time, each step only after the
 * output of the last was taken, by a BYOB read with room for all one step can produce: at most
 * one step's output (~4 MiB) is ever held beyond the limit, whatever the ratio.
 */
async function decode(encoded: Uint8Array, coding: ContentCoding, maxBytes: number): Promise<Uint8Array> {
  const stream = new DecompressionStream(coding)
  const writer = stream.writable.getWriter()
  const reader = stream.readable.getReader({ mode: 'byob' })
  // A read never needs to hold more than one byte past the limit: that byte already means 413.
  let room: Uint8Array = new Uint8Array(Math.min(STEP_BYTES * MAX_DEFLATE_RATIO + 65_536, maxBytes + 1))
  const chunks: Uint8Array[] = []
  let total = 0
  let pending: { promise: Promise<ReadableStreamReadResult<Uint8Array>>; settled: boolean } | undefined
  const startRead = () => {
    const read = { promise: reader.read(room), settled: false }
    // Also handles a rejection (corrupt data): the write reports that one.
    const settle = () => {
      read.settled = true
    }
    read.promise.then(settle, settle)
    return read
  }
  /** Keeps a read's bytes (copied: the view spans the whole room) and reuses its buffer. */
  const take = (result: ReadableStreamReadResult<Uint8Array>): boolean => {
    if (result.done) return false
    const { value } = result
    total += value.byteLength
    if (total > maxBytes) throw new PayloadTooLargeError(maxBytes)
    chunks.push(value.slice())
    room = new Uint8Array(value.buffer)
    return true
  }
  try {
    for (let offset = 0; offset < encoded.byteLength; offset += STEP_BYTES) {
      // A read waits before each write: workerd fills a waiting read with what the write
      // inflates before the write resolves, so the output never piles up inside the stream.
      pending ??= startRead()
      await writer.write(encoded.slice(offset, offset + STEP_BYTES))
      // Still unsettled: this step produced nothing yet (a header, a block's code tables).
      if (pending.settled) {
        take(await pending.promise)
        pending = undefined
      }
    }
    await writer.close()
    for (;;) {
      const read = pending ?? startRead()
      pending = undefined
      if (!take(await read.promise)) break
    }
  } catch (error) {
    writer.abort().catch(() => undefined)
    reader.cancel().catch(() => undefined)
    if (error instanceof DepinferError) throw error
    const why = error instanceof Error ? error.message : String(error)
    throw new InvalidRequestError(`body is not valid ${coding} data (Content-Encoding: ${coding}): ${why}`, 'body')
  }
  return concatBytes(chunks)
}
