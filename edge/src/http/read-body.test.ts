/**
 * readBodyCapped in workerd itself (bundled and run in Miniflare): its decompression is paced
 * around workerd's DecompressionStream, which Node's differs from (no byte stream, backpressure).
 */
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { createGzip, deflateSync, gzipSync } from 'node:zlib'
import { build } from 'esbuild'
import { Miniflare } from 'miniflare'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { contentCoding } from './read-body.js'

const HERE = import.meta.dirname
const COMPATIBILITY_DATE = /^compatibility_date\s*=\s*"([^"]+)"/m.exec(readFileSync(join(HERE, '../../../wrangler.toml'), 'utf8'))![1]!

/**
 * Answers with the body readBodyCapped read (limit `?max=`), or the problem it threw. `X-Fed`
 * counts the compressed bytes handed to the decompressor: how far into a bomb it got.
 */
const WORKER = `
import { readBodyCapped } from './read-body.ts'
import { DepinferError } from '../errors/base.ts'
let fed = 0
const write = WritableStreamDefaultWriter.prototype.write
WritableStreamDefaultWriter.prototype.write = function (chunk) {
  fed += chunk.byteLength
  return write.call(this, chunk)
}
export default {
  async fetch(request) {
    fed = 0
    try {
      const body = await readBodyCapped(request, Number(new URL(request.url).searchParams.get('max')))
      return new Response(body, { headers: { 'X-Fed': String(fed) } })
    } catch (error) {
      if (!(error instanceof DepinferError)) throw error
      return Response.json({ ...error.toProblem(), acceptEncoding: error.acceptEncoding }, { status: error.status, headers: { 'X-Fed': String(fed) } })
    }
  },
}
`

let miniflare: Miniflare

beforeAll(async () => {
  const bundle = await build({
    stdin: { contents: WORKER, resolveDir: HERE, loader: 'js' },
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    write: false,
  })
  miniflare = new Miniflare({ modules: true, script: bundle.outputFiles[0]!.text, compatibilityDate: COMPATIBILITY_DATE, compatibilityFlags: ['nodejs_compat'], host: '127.0.0.1', port: 0 })
})
afterAll(async () => {
  await miniflare?.dispose()
})

async function post(body: Uint8Array, headers: Record<string, string>, max = 1 << 20) {
  const response = await miniflare.dispatchFetch(`http://edge/?max=${max}`, { method: 'POST', body, headers })
  const bytes = new Uint8Array(await response.arrayBuffer())
  const fed = Number(response.headers.get('X-Fed'))
  return { status: response.status, bytes, fed, problem: () => JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown> }
}

/** Text that compresses about as well as a JSON request (a few to one): digits in a pseudo-random order. */
function sample(bytes: number): Uint8Array {
  const text = new Uint8Array(bytes)
  let state = 12345
  for (let i = 0; i < bytes; i++) {
    state = (state * 1103515245 + 12345) >>> 0
    text[i] = i % 12 === 11 ? 44 : 48 + ((state >>> 16) % 10)
  }
  return text
}

/** Byte equality; vitest's toEqual walks big typed arrays element by element, slowly. */
const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)

/** gzip of `bytes` zeros, compressed as hard as zlib can (~1000:1), without holding them all. */
async function gzipBomb(bytes: number): Promise<Uint8Array> {
  const gzip = createGzip({ level: 9 })
  const out: Buffer[] = []
  gzip.on('data', (chunk: Buffer) => out.push(chunk))
  const zeros = Buffer.alloc(1 << 20)
  for (let written = 0; written < bytes; written += zeros.byteLength) gzip.write(zeros)
  await new Promise<void>((resolve) => gzip.end(resolve))
  return new Uint8Array(Buffer.concat(out))
}

describe('Content-Encoding of request bodies', () => {
  it('reads the header: identity, x-gzip and case are understood; others and stacked codings are 415', () => {
    expect(contentCoding(null)).toBeUndefined()
    expect(contentCoding('identity')).toBeUndefined()
    expect(contentCoding('')).toBeUndefined()
    expect(contentCoding('GZip')).toBe('gzip')
    expect(contentCoding('x-gzip')).toBe('gzip')
    expect(contentCoding('deflate, identity')).toBe('deflate')
    for (const header of ['br', 'zstd', 'compress', 'gzip, br', 'gzip, gzip']) {
      expect(() => contentCoding(header), header).toThrow(expect.objectContaining({ status: 415, field: 'Content-Encoding' }))
    }
  })

  it('returns a plain body as it came, with or without identity', async () => {
    const body = sample(100_000)
    expect(same((await post(body, {})).bytes, body)).toBe(true)
    expect(same((await post(body, { 'Content-Encoding': 'identity' })).bytes, body)).toBe(true)
  })

  it('decompresses gzip and deflate (zlib) bodies, large ones in many steps', async () => {
    for (const size of [0, 10, 100_000, 900_000]) {
      const body = sample(size)
      expect(same((await post(gzipSync(body), { 'Content-Encoding': 'gzip' })).bytes, body), `gzip ${size}`).toBe(true)
      expect(same((await post(deflateSync(body), { 'Content-Encoding': 'deflate' })).bytes, body), `deflate ${size}`).toBe(true)
      expect(same((await post(gzipSync(body), { 'Content-Encoding': 'x-gzip, identity' })).bytes, body), `x-gzip ${size}`).toBe(true)
    }
  })

  it('applies the limit to the decompressed size, to the byte', async () => {
    const body = sample(50_000)
    expect((await post(gzipSync(body), { 'Content-Encoding': 'gzip' }, 50_000)).status).toBe(200)
    const over = await post(gzipSync(body), { 'Content-Encoding': 'gzip' }, 49_999)
    expect(over.status).toBe(413)
    expect(over.problem()).toMatchObject({ status: 413, field: 'body' })
    // Incompressible data grows a little when compressed: it still fits when its decoded size does.
    const random = new Uint8Array(200_000).map(() => Math.floor(Math.random() * 256))
    const compressed = gzipSync(random)
    expect(compressed.byteLength).toBeGreaterThan(random.byteLength)
    expect(same((await post(compressed, { 'Content-Encoding': 'gzip' }, random.byteLength)).bytes, random)).toBe(true)
  })

  it('stops decompressing a bomb soon after the limit: 413, having fed it a sliver of the input', async () => {
    const bomb = await gzipBomb(1 << 30) // 1 GiB of zeros in ~1 MB
    const response = await post(bomb, { 'Content-Encoding': 'gzip' }, 2 << 20)
    expect(response.status).toBe(413)
    expect(response.problem()).toMatchObject({ status: 413, field: 'body' })
    // Past 2 MiB after ~2 KiB of input; one more step (4 KiB) at most went in.
    expect(response.fed).toBeGreaterThan(0)
    expect(response.fed).toBeLessThan(16 * 1024)
    expect(response.fed).toBeLessThan(bomb.byteLength / 50)
  }, 30_000)

  it('refuses data that is not what Content-Encoding says with 400 naming the body', async () => {
    const body = sample(20_000)
    const gzipped = gzipSync(body)
    const truncated = gzipped.subarray(0, gzipped.byteLength - 100)
    for (const [bytes, coding] of [[body, 'gzip'], [body, 'deflate'], [truncated, 'gzip'], [gzipSync(body), 'deflate']] as const) {
      const response = await post(bytes, { 'Content-Encoding': coding })
      expect(response.status, coding).toBe(400)
      expect(response.problem()).toMatchObject({ status: 400, field: 'body', detail: expect.stringContaining(`not valid ${coding}`) })
    }
  })

  it('refuses an encoding it cannot undo with 415 naming Content-Encoding and the acceptable ones', async () => {
    const response = await post(sample(1000), { 'Content-Encoding': 'br' })
    expect(response.status).toBe(415)
    expect(response.problem()).toMatchObject({
      status: 415,
      field: 'Content-Encoding',
      type: 'urn:depinfer:problem:unsupported-content-encoding',
      acceptEncoding: 'gzip, deflate, identity',
      detail: expect.stringContaining('"br"'),
    })
  })

  it('refuses a body cut off before its end with 400 naming the body: fewer bytes than Content-Length, or chunks without their last', async () => {
    const url = await miniflare.ready
    /** Sends `head` and `body` over a raw socket, half-closes it, and returns the status line and body of the answer. */
    const raw = (head: string, body: Uint8Array) =>
      new Promise<{ status: number; text: string }>((resolve, reject) => {
        const socket = connect(Number(url.port), url.hostname, () => {
          socket.write(head)
          socket.end(body)
        })
        let answer = ''
        socket.on('data', (chunk) => (answer += chunk.toString('latin1')))
        socket.on('error', reject)
        socket.on('close', () => resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(answer)?.[1]), text: answer }))
      })
    const half = sample(500)
    const short = await raw(`POST /?max=100000 HTTP/1.1\r\nHost: edge\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n`, half)
    expect(short.status, short.text).toBe(400)
    expect(short.text).toContain('"field":"body"')
    // The failed one-piece read loses what arrived: no byte count rather than a wrong one.
    expect(short.text).toContain('the request body ended before the 1000 bytes its Content-Length declares')
    const chunked = await raw(`POST /?max=100000 HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`, new TextEncoder().encode('1f4\r\n' + 'x'.repeat(500) + '\r\n'))
    expect(chunked.status, chunked.text).toBe(400)
    expect(chunked.text).toContain('"field":"body"')
    expect(chunked.text).toContain('ended after 500 bytes')
  })
})

