/**
 * The downloader against a real HTTP server (models/testing/fake-edge.ts) serving the bundled
 * PaddleOCR classifier, with the edge's ranges, ETags and errors, and injected faults.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { AgentConfigSchema } from '../config.js'
import { OrtRuntime } from '../runtime/execution.js'
import { loadModel, remoteModel } from '../runtime/loaded-model.js'
import { bundledModelPath } from './bundled.js'
import { cachedModelPath, fetchModelFile, parseContentRange, removeCachedFile, type DownloadSettings, type ModelFileRequest } from './download.js'
import {
  ChecksumMismatchError,
  DownloadFailedError,
  HttpStatusError,
  StalledDownloadError,
  TruncatedDownloadError,
} from './errors.js'
import type { ProgressFactory } from './progress.js'
import { FakeEdge, sha256Of } from './testing/fake-edge.js'
import { temporaryDirectory } from '../../../test/helpers/temporary-directory.js'

const CLS = readFileSync(bundledModelPath('ppocr-cls'))
const CLS_SHA = sha256Of(CLS)
const HALF = Math.floor(CLS.byteLength / 2)
const KEY = 'provider-key'

describe('model download', () => {
  let edge: FakeEdge
  let cacheDir: string
  let logs: string[]

  const request = (overrides: Partial<ModelFileRequest> = {}): ModelFileRequest => ({
    label: 'cls v1',
    url: `${edge.url}/api/models/cls/versions/1/file`,
    sha256: CLS_SHA,
    size: CLS.byteLength,
    headers: { authorization: `Bearer ${KEY}` },
    fromEdge: true,
    ...overrides,
  })
  const settings = (overrides: Partial<DownloadSettings> = {}): DownloadSettings => ({
    cacheDir,
    attempts: 3,
    stallTimeoutMs: 5_000,
    backoff: { minMs: 1, maxMs: 5 },
    log: (message) => logs.push(message),
    ...overrides,
  })
  const requests = () => edge.requestsFor('cls', '1')
  const cacheFiles = () => readdirSync(cacheDir).sort()

  beforeAll(async () => {
    edge = await FakeEdge.start(KEY, [{ name: 'cls', version: '1', bytes: CLS }])
  })
  afterAll(() => edge.close())
  afterEach(() => {
    edge.faults.clear()
    edge.fileRequests.length = 0
    edge.requests.length = 0
  })
  const fresh = () => {
    cacheDir = temporaryDirectory('model-cache-')
    logs = []
  }

  it('downloads, verifies and names the file by its sha256, and onnxruntime loads it', async () => {
    fresh()
    const events: string[] = []
    const progress: ProgressFactory = (label) => ({
      start: (total, from) => events.push(`start ${label} ${total} ${from}`),
      update: (received) => events.push(`update ${received}`),
      end: (ok) => events.push(`end ${ok}`),
    })
    const file = await fetchModelFile(request(), settings({ progress }))
    expect(file).toEqual({ path: join(cacheDir, `${CLS_SHA}.onnx`), sha256: CLS_SHA, size: CLS.byteLength, downloaded: true })
    expect(sha256Of(readFileSync(file.path))).toBe(CLS_SHA)
    expect(cacheFiles()).toEqual([`${CLS_SHA}.onnx`]) // no .part, .etag or .lock left
    expect(events[0]).toBe(`start cls v1 ${CLS.byteLength} 0`)
    expect(events.at(-2)).toBe(`update ${CLS.byteLength}`)
    expect(events.at(-1)).toBe('end true')
    expect(requests()).toEqual([{ model: 'cls@1', range: undefined, ifRange: undefined, status: 200, sent: CLS.byteLength }])

    const runtime = new OrtRuntime(AgentConfigSchema.parse({ deviceId: 'd', broker: { url: 'mqtt://x' }, models: [{ bundled: 'ppocr-cls' }], keyPath: '/k' }).ort, () => {})
    const model = await loadModel(remoteModel(cacheDir, { name: 'cls', version: '1' }, { url: request().url, sha256: CLS_SHA }), { runtime, maxBatch: 8 })
    expect(model).toMatchObject({ state: 'ready', sha256: CLS_SHA, inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 3, -1, -1] }] })
    await model.session?.release()
  })

  it('resumes with a Range after the server cuts the connection mid-file, and receives every byte once', async () => {
    fresh()
    edge.faults.set('cls@1', { cutAt: HALF, cutTimes: 1 })
    const file = await fetchModelFile(request(), settings())
    expect(sha256Of(readFileSync(file.path))).toBe(CLS_SHA)
    expect(requests()).toEqual([
      { model: 'cls@1', range: undefined, ifRange: undefined, status: 200, sent: HALF },
      { model: 'cls@1', range: `bytes=${HALF}-`, ifRange: `"${CLS_SHA}"`, status: 206, sent: CLS.byteLength - HALF },
    ])
    expect(requests().reduce((sum, r) => sum + r.sent, 0)).toBe(CLS.byteLength)
    expect(logs.join('\n')).toMatch(/connection (broke|ended) after .*retrying in/)
  })

  it('starts over from byte 0 when the server ignores the Range, and still ends up with the right file', async () => {
    fresh()
    edge.faults.set('cls@1', { cutAt: HALF, cutTimes: 1, ignoreRange: true })
    const file = await fetchModelFile(request(), settings())
    expect(sha256Of(readFileSync(file.path))).toBe(CLS_SHA)
    expect(requests().map(({ range, status, sent }) => ({ range, status, sent }))).toEqual([
      { range: undefined, status: 200, sent: HALF },
      { range: `bytes=${HALF}-`, status: 200, sent: CLS.byteLength },
    ])
    expect(logs.join('\n')).toMatch(/whole file instead of the rest; starting over/)
  })

  it('resumes a .part left by an earlier run, hashing its bytes first', async () => {
    fresh()
    const path = cachedModelPath(cacheDir, CLS_SHA)
    writeFileSync(`${path}.part`, CLS.subarray(0, 1000))
    writeFileSync(`${path}.etag`, `"${CLS_SHA}"`)
    await fetchModelFile(request(), settings())
    expect(sha256Of(readFileSync(path))).toBe(CLS_SHA)
    expect(requests()).toMatchObject([{ range: 'bytes=1000-', ifRange: `"${CLS_SHA}"`, status: 206, sent: CLS.byteLength - 1000 }])
  })

  it('starts over when the file changed on the server since the .part began (another ETag)', async () => {
    fresh()
    const path = cachedModelPath(cacheDir, CLS_SHA)
    writeFileSync(`${path}.part`, Buffer.alloc(1000, 7)) // some older file's first bytes
    writeFileSync(`${path}.etag`, '"an-older-file"')
    await fetchModelFile(request({ fromEdge: false }), settings())
    expect(sha256Of(readFileSync(path))).toBe(CLS_SHA)
    expect(requests().map(({ range, status }) => ({ range, status }))).toEqual([
      { range: 'bytes=1000-', status: 206 }, // this server ignores If-Range, so its 206 is refused
      { range: undefined, status: 200 },
    ])
  })

  it('takes a complete .part (a run that stopped before renaming it) when the server has nothing after it', async () => {
    fresh()
    const path = cachedModelPath(cacheDir, CLS_SHA)
    writeFileSync(`${path}.part`, CLS)
    await fetchModelFile(request({ size: undefined }), settings())
    expect(requests()).toMatchObject([{ range: `bytes=${CLS.byteLength}-`, status: 416 }])
    expect(cacheFiles()).toEqual([`${CLS_SHA}.onnx`])
  })

  it('refuses corrupted bytes: sha256 mismatch, nothing at the final path, no retry', async () => {
    fresh()
    edge.faults.set('cls@1', { corruptAt: 1234 })
    const error = await fetchModelFile(request(), settings()).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ChecksumMismatchError)
    expect(error).toMatchObject({ expected: CLS_SHA, retryable: false, message: expect.stringMatching(/cls v1: downloaded file is corrupt: sha256 is [0-9a-f]{64}, expected/) })
    expect(cacheFiles()).toEqual([])
    expect(requests()).toHaveLength(1)
  })

  it('downloads again from the start, once, when a resumed file does not verify', async () => {
    fresh()
    const path = cachedModelPath(cacheDir, CLS_SHA)
    writeFileSync(`${path}.part`, Buffer.alloc(1000, 7)) // not the file's first bytes, same ETag
    writeFileSync(`${path}.etag`, `"${CLS_SHA}"`)
    await fetchModelFile(request(), settings())
    expect(sha256Of(readFileSync(path))).toBe(CLS_SHA)
    expect(requests().map(({ range }) => range)).toEqual(['bytes=1000-', undefined])
  })

  it('fails after its attempts when every response is truncated, keeping nothing at the final path', async () => {
    fresh()
    edge.faults.set('cls@1', { truncateFraction: 0.25 })
    const error = await fetchModelFile(request(), settings({ attempts: 3 })).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(DownloadFailedError)
    expect(error).toMatchObject({ attempts: 3, retryable: true, message: expect.stringMatching(/cls v1: download failed after 3 attempts: .*connection (broke|ended)/) })
    expect((error as Error).cause).toBeInstanceOf(TruncatedDownloadError)
    expect(requests()).toHaveLength(3)
    // Each attempt resumed where the last one stopped.
    expect(requests()[1]!.range).toBe(`bytes=${requests()[0]!.sent}-`)
    expect(existsSync(cachedModelPath(cacheDir, CLS_SHA))).toBe(false)
  })

  it('drops a stalled connection after the stall timeout and resumes', async () => {
    fresh()
    edge.faults.set('cls@1', { stallAt: HALF, stallTimes: 1 })
    const file = await fetchModelFile(request(), settings({ stallTimeoutMs: 300 }))
    expect(sha256Of(readFileSync(file.path))).toBe(CLS_SHA)
    expect(requests().map(({ range }) => range)).toEqual([undefined, `bytes=${HALF}-`])
    expect(logs.join('\n')).toMatch(/nothing received for 0.3 s after 0.3 MB/)
  })

  it('stops at once on a stall when it has no attempts left', async () => {
    fresh()
    edge.faults.set('cls@1', { stallAt: HALF, stallTimes: 5 })
    const error = await fetchModelFile(request(), settings({ attempts: 1, stallTimeoutMs: 200 })).catch((e: unknown) => e)
    expect((error as Error).cause).toBeInstanceOf(StalledDownloadError)
  })

  it('says the API key is wrong on 401 and the model is unknown on 404, without retrying', async () => {
    fresh()
    const unauthorized = await fetchModelFile(request({ headers: { authorization: 'Bearer wrong' } }), settings()).catch((e: unknown) => e)
    expect(unauthorized).toBeInstanceOf(HttpStatusError)
    expect(unauthorized).toMatchObject({ status: 401, retryable: false, message: 'cls v1: HTTP 401 Unauthorized: invalid API key (check edge.apiKey / DEPINFER_API_KEY)' })
    const missing = await fetchModelFile(request({ url: `${edge.url}/api/models/nope/versions/1/file` }), settings()).catch((e: unknown) => e)
    expect(missing).toMatchObject({ status: 404, message: 'cls v1: HTTP 404 Not Found: model nope v1 is not published (is it published on the edge?)' })
    expect(edge.requests.map(({ status }) => status)).toEqual([401, 404]) // not retried
    expect(cacheFiles()).toEqual([])
  })

  it("reports another server's HTML error page as one line of its text, and a 404 from no edge as a wrong edge.url", async () => {
    fresh()
    const page = '<!DOCTYPE HTML>\n<html lang="en">\n  <head><title>Error response</title><style>p { color: red }</style></head>\n  <body>\n    <h1>Error response</h1>\n    <p>Error code: 404</p>\n  </body>\n</html>\n'
    const server = createServer((_request, response) => response.writeHead(404, { 'Content-Type': 'text/html' }).end(page))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/models/m.onnx`
    try {
      const elsewhere = await fetchModelFile(request({ url, headers: {}, fromEdge: false, size: undefined }), settings()).catch((e: unknown) => e)
      expect(elsewhere).toMatchObject({ status: 404, message: 'cls v1: HTTP 404 Not Found: Error response Error response Error code: 404' })
      const notAnEdge = await fetchModelFile(request({ url }), settings()).catch((e: unknown) => e)
      expect((notAnEdge as Error).message).toMatch(/HTTP 404 Not Found: .* \(is edge\.url the address of a depinfer edge\? nothing there answers as one\)$/)
    } finally {
      server.close()
    }
  })

  it('refuses a file whose ETag names another sha256 before writing it, and one of another size', async () => {
    fresh()
    edge.faults.set('cls@1', { etag: `"${'ab'.repeat(32)}"` })
    await expect(fetchModelFile(request(), settings())).rejects.toThrow(/the edge serves another file: sha256 is (ab)+, expected/)
    edge.faults.clear()
    await expect(fetchModelFile(request({ size: 123 }), settings())).rejects.toThrow(`the server's file is ${CLS.byteLength} bytes, but 123 are listed`)
    expect(cacheFiles()).toEqual([])
  })

  it('uses a verified cached file without a request, and downloads a damaged one again', async () => {
    fresh()
    await fetchModelFile(request(), settings())
    expect(await fetchModelFile(request(), settings())).toMatchObject({ downloaded: false })
    expect(requests()).toHaveLength(1)
    const path = cachedModelPath(cacheDir, CLS_SHA)
    const damaged = Buffer.from(CLS)
    damaged[100] = damaged[100]! ^ 1
    writeFileSync(path, damaged)
    expect(await fetchModelFile(request(), settings())).toMatchObject({ downloaded: true })
    expect(sha256Of(readFileSync(path))).toBe(CLS_SHA)
    expect(logs.join('\n')).toMatch(/is damaged .* downloading it again/)
  })

  it('uses a verified cached file in a cache it cannot write to (models put there in advance)', async () => {
    fresh()
    await fetchModelFile(request(), settings())
    const path = cachedModelPath(cacheDir, CLS_SHA)
    // A lock held by a live process (this one) stands for the lock file it could not create: a
    // verified file must not need it. Read-only as well (for a non-root owner: root ignores modes).
    writeFileSync(`${path}.lock`, String(process.pid))
    chmodSync(cacheDir, 0o555)
    try {
      expect(await fetchModelFile(request(), settings({ signal: AbortSignal.timeout(2_000) }))).toMatchObject({ path, downloaded: false })
      expect(cacheFiles()).toEqual([basename(path), `${basename(path)}.lock`])
      expect(requests()).toHaveLength(1)
    } finally {
      chmodSync(cacheDir, 0o755)
      rmSync(`${path}.lock`)
    }
  })

  it('downloads a file once when two downloads of it run at the same time (lock)', async () => {
    fresh()
    edge.faults.set('cls@1', { delayMs: 300 })
    const [a, b] = await Promise.all([fetchModelFile(request(), settings()), fetchModelFile(request({ label: 'again' }), settings())])
    expect([a.downloaded, b.downloaded].sort()).toEqual([false, true])
    expect(requests()).toHaveLength(1)
  })

  it('takes over a lock left by an earlier process with its own pid (a restart in a container), or left untouched for 30 s, without waiting', async () => {
    for (const [holder, ageSec] of [[process.pid, 0], [1, 60]] as const) {
      fresh()
      const path = cachedModelPath(cacheDir, CLS_SHA)
      mkdirSync(cacheDir, { recursive: true })
      writeFileSync(`${path}.lock`, String(holder))
      const then = new Date(Date.now() - ageSec * 1000)
      utimesSync(`${path}.lock`, then, then)
      // pid 1 is alive (init): only its lock's age shows it is nobody's.
      expect(await fetchModelFile(request(), settings({ signal: AbortSignal.timeout(5_000) }))).toMatchObject({ path, downloaded: true })
      expect(cacheFiles()).toEqual([basename(path)])
    }
  })

  it('says once that it waits for a lock a live process holds and touches', async () => {
    fresh()
    const path = cachedModelPath(cacheDir, CLS_SHA)
    mkdirSync(cacheDir, { recursive: true })
    writeFileSync(`${path}.lock`, '1')
    const waiting = fetchModelFile(request(), settings({ signal: AbortSignal.timeout(1_500) }))
    await expect(waiting).rejects.toThrow()
    expect(logs.filter((line) => line.startsWith('waiting for'))).toEqual([
      `waiting for ${path}.lock: process 1 holds it (another agent downloading the same file); taken over if that process ends or leaves it untouched for 30 s`,
    ])
    rmSync(`${path}.lock`)
  })

  it('downloads from any URL without the edge API key', async () => {
    fresh()
    const file = await fetchModelFile(request({ url: edge.fileUrl('cls', '1'), headers: {}, fromEdge: false, size: undefined }), settings())
    expect(file.sha256).toBe(CLS_SHA)
  })

  it('parses Content-Range', () => {
    expect(parseContentRange('bytes 10-99/100')).toEqual({ start: 10, end: 99, total: 100 })
    expect(parseContentRange('bytes 10-99/*')).toEqual({ start: 10, end: 99 })
    expect(parseContentRange('bytes 99-10/100')).toBeUndefined()
    expect(parseContentRange(null)).toBeUndefined()
  })
})

describe('removeCachedFile', () => {
  const sha256 = 'ab'.repeat(32)
  const fill = (dir: string, lock: boolean) => {
    const path = cachedModelPath(dir, sha256)
    writeFileSync(path, Buffer.alloc(1_000))
    writeFileSync(`${path}.part`, Buffer.alloc(300))
    writeFileSync(`${path}.etag`, '"e1"')
    if (lock) writeFileSync(`${path}.lock`, '12345')
    return path
  }

  it('deletes the file, its .part and .etag, and says how many bytes that freed', async () => {
    const dir = temporaryDirectory('cache-remove-')
    const path = fill(dir, false)
    expect(await removeCachedFile(dir, sha256)).toBe(1_304)
    expect(readdirSync(dir)).toEqual([])
    expect(existsSync(path)).toBe(false)
    // Nothing left to delete: nothing freed, no error.
    expect(await removeCachedFile(dir, sha256)).toBe(0)
  })

  it("leaves the .part and .etag of a download another process holds the lock of", async () => {
    const dir = temporaryDirectory('cache-remove-')
    const path = fill(dir, true)
    expect(await removeCachedFile(dir, sha256)).toBe(1_000)
    expect(readdirSync(dir).sort()).toEqual([basename(`${path}.etag`), basename(`${path}.lock`), basename(`${path}.part`)])
  })
})
