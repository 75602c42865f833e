/**
 * For tests: an in-process HTTP server implementing the edge's model API as the agent relies on
 * it (GET /api/models; GET /api/models/{name}/versions/{version}/file and
 * …/variants/{kind}/file with ranges, ETag and problem+json errors), plus /files/{name}/{version} without auth for URL sources, and faults
 * to inject per model: a connection cut mid-file, ranges ignored, corrupted bytes, truncation on
 * every try, a stall, a slow start.
 */
import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { PublishedVariant, TensorSpec } from '@depinfer/shared'

/** A variant published with a FakeModel: its file, and what the listing says about it. */
export interface FakeVariant extends Omit<PublishedVariant, 'sha256' | 'size'> {
  bytes: Uint8Array
}

export interface FakeModel {
  name: string
  version: string
  bytes: Uint8Array
  /** What the listing says, when it must differ from the truth. */
  listedSha256?: string
  listedSize?: number
  inputs?: TensorSpec[]
  outputs?: TensorSpec[]
  variants?: FakeVariant[]
  /** The listing's `owner` of the name (none by default). */
  owner?: string
}

export interface Faults {
  /** The first `cutTimes` responses send `cutAt` bytes of their body, then the connection is closed. */
  cutAt?: number
  cutTimes?: number
  /** Every response is 200 with the whole file, whatever the Range. */
  ignoreRange?: boolean
  /** The byte at this offset of the file is flipped in every response. */
  corruptAt?: number
  /** Every response sends this fraction of its body, then the connection is closed. */
  truncateFraction?: number
  /** The first `stallTimes` responses send `stallAt` bytes, then nothing, connection left open. */
  stallAt?: number
  stallTimes?: number
  /** Every response waits this long before its headers. */
  delayMs?: number
  /** The ETag sent, instead of the quoted sha256. */
  etag?: string
  /**
   * Every response announces a file of this many bytes (Content-Length) and sends none of it,
   * the connection left open: a file larger than the device's free disk, without sending one.
   */
  claimedSize?: number
}

export interface FileRequest {
  model: string
  range: string | undefined
  ifRange: string | undefined
  status: number
  /** Body bytes written to the connection. */
  sent: number
}

export const sha256Of = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex')

export class FakeEdge {
  readonly models: FakeModel[] = []
  readonly faults = new Map<string, Faults>()
  readonly fileRequests: FileRequest[] = []
  /** Every request: path and status. */
  readonly requests: { path: string; status: number }[] = []
  listings = 0
  /** While set, the listing answers 503 (an edge in trouble). */
  listingDown = false
  readonly #server: Server
  readonly #open = new Set<ServerResponse>()

  private constructor(
    readonly apiKey: string,
    server: Server,
  ) {
    this.#server = server
  }

  static async start(apiKey: string, models: FakeModel[] = []): Promise<FakeEdge> {
    const server = createServer()
    const edge = new FakeEdge(apiKey, server)
    edge.models.push(...models)
    server.on('request', (request, response) => void edge.#handle(request, response))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return edge
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`
  }

  /** The URL of a model's file without auth (a URL source). */
  fileUrl(name: string, version: string): string {
    return `${this.url}/files/${name}/${version}`
  }

  requestsFor(name: string, version: string): FileRequest[] {
    return this.fileRequests.filter((request) => request.model === `${name}@${version}`)
  }

  async close(): Promise<void> {
    for (const response of this.#open) response.destroy()
    this.#server.closeAllConnections()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://x')
    response.on('close', () => this.requests.push({ path: url.pathname, status: response.statusCode }))
    const file = /^\/api\/models\/([^/]+)\/versions\/([^/]+)\/file$/.exec(url.pathname) ?? /^\/files\/([^/]+)\/([^/]+)$/.exec(url.pathname)
    if (url.pathname.startsWith('/api/') && request.headers.authorization !== `Bearer ${this.apiKey}`) {
      return problem(response, 401, 'Unauthorized', 'invalid API key')
    }
    if (url.pathname === '/api/models') {
      this.listings++
      if (this.listingDown) return problem(response, 503, 'Service Unavailable', 'the edge is in trouble')
      response.writeHead(200, { 'content-type': 'application/json' })
      response.end(
        JSON.stringify({
          models: this.models.map((model) => ({
            name: model.name,
            version: model.version,
            sha256: model.listedSha256 ?? sha256Of(model.bytes),
            size: model.listedSize ?? model.bytes.byteLength,
            priceWei: '1000',
            description: `test model ${model.name}`,
            inputs: model.inputs ?? [],
            outputs: model.outputs ?? [],
            variants: (model.variants ?? []).map(({ bytes, ...variant }) => ({ ...variant, sha256: sha256Of(bytes), size: bytes.byteLength })),
            ...(model.owner !== undefined && { owner: model.owner }),
          })),
        }),
      )
      return
    }
    const variantFile = /^\/api\/models\/([^/]+)\/versions\/([^/]+)\/variants\/([^/]+)\/file$/.exec(url.pathname)
    if (!file && !variantFile) return problem(response, 404, 'Not Found', `no route ${url.pathname}`)
    const match = (file ?? variantFile)!
    const [name, version] = [decodeURIComponent(match[1]!), decodeURIComponent(match[2]!)]
    const model = this.models.find((m) => m.name === name && m.version === version)
    if (!model) return problem(response, 404, 'Not Found', `model ${name} v${version} is not published`)
    if (!variantFile) return this.#serveFile(request, response, `${name}@${version}`, model.bytes)
    const variant = model.variants?.find((v) => v.kind === variantFile[3])
    if (!variant) return problem(response, 404, 'Not Found', `model ${name} v${version} has no ${variantFile[3]} variant`)
    await this.#serveFile(request, response, `${name}@${version}/${variant.kind}`, variant.bytes)
  }

  /** Serves `bytes` as the file `key` (`name@version`, or `name@version/kind` for a variant's). */
  async #serveFile(request: IncomingMessage, response: ServerResponse, key: string, file: Uint8Array): Promise<void> {
    const faults = this.faults.get(key) ?? {}
    const index = this.fileRequests.filter((r) => r.model === key).length
    const log: FileRequest = {
      model: key,
      range: request.headers.range,
      ifRange: typeof request.headers['if-range'] === 'string' ? request.headers['if-range'] : undefined,
      status: 0,
      sent: 0,
    }
    this.fileRequests.push(log)
    if (faults.delayMs) await new Promise((resolve) => setTimeout(resolve, faults.delayMs))

    const bytes = Buffer.from(file)
    if (faults.corruptAt !== undefined) bytes[faults.corruptAt] = bytes[faults.corruptAt]! ^ 0xff
    const size = bytes.byteLength
    const etag = faults.etag ?? `"${sha256Of(file)}"`
    const range = /^bytes=(\d+)-$/.exec(request.headers.range ?? '')
    const start = range && !faults.ignoreRange ? Number(range[1]) : 0
    if (range && !faults.ignoreRange && start >= size) {
      log.status = 416
      response.writeHead(416, { 'content-range': `bytes */${size}`, 'content-type': 'application/problem+json' })
      response.end(JSON.stringify({ type: 'about:blank', title: 'Range Not Satisfiable', status: 416 }))
      return
    }
    if (faults.claimedSize !== undefined) {
      log.status = 200
      response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(faults.claimedSize), etag })
      response.flushHeaders()
      this.#open.add(response)
      return
    }
    const body = bytes.subarray(start)
    log.status = start > 0 ? 206 : 200
    response.writeHead(log.status, {
      'content-type': 'application/octet-stream',
      'content-length': String(body.byteLength),
      etag,
      'accept-ranges': 'bytes',
      ...(log.status === 206 && { 'content-range': `bytes ${start}-${size - 1}/${size}` }),
    })
    const cut =
      faults.cutAt !== undefined && index < (faults.cutTimes ?? 1)
        ? faults.cutAt
        : faults.truncateFraction !== undefined
          ? Math.floor(body.byteLength * faults.truncateFraction)
          : undefined
    if (cut !== undefined) {
      const part = body.subarray(0, cut)
      log.sent = part.byteLength
      // Closed a moment after the bytes are handed to the kernel, so the client has read all of
      // them: fetch drops chunks still queued in the body stream when the connection errors
      // (harmless, they are fetched again, but the tests count bytes).
      response.write(part, () => setTimeout(() => response.socket?.destroy(), 100))
      return
    }
    if (faults.stallAt !== undefined && index < (faults.stallTimes ?? 1)) {
      const part = body.subarray(0, faults.stallAt)
      log.sent = part.byteLength
      this.#open.add(response)
      response.write(part)
      return
    }
    log.sent = body.byteLength
    response.end(body)
  }
}

function problem(response: ServerResponse, status: number, title: string, detail: string): void {
  response.writeHead(status, { 'content-type': 'application/problem+json' })
  response.end(JSON.stringify({ type: 'about:blank', title, status, detail }))
}
