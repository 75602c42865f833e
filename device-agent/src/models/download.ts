/**
 * Fetches a model file into the cache and hands it over only once its sha256 is the expected
 * one: a corrupted, truncated or substituted download never reaches the runtime.
 *
 * The cache holds one file per content, named by its sha256, so two models (or two agents on one
 * host) with the same file download it once:
 *
 *   <sha256>.onnx        complete and verified (re-verified before each use: hashing costs
 *                        ~3 ms per MB, far less than creating the session, and catches a file
 *                        damaged on disk since)
 *   <sha256>.onnx.part   being downloaded; a new attempt (or a restarted agent) resumes from its size
 *   <sha256>.onnx.etag   the ETag the .part's bytes came with: a resumed range must carry the same
 *   <sha256>.onnx.lock   the pid of the process downloading it, so two processes never append to one .part
 */
import { createHash, type Hash } from 'node:crypto'
import { createReadStream, statSync } from 'node:fs'
import { mkdir, open, readFile, rename, rm, stat, statfs, utimes, writeFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { messageOf } from '@depinfer/shared'
import { backoffMs } from '../backoff.js'
import { processAlive } from '../process-alive.js'
import {
  ChecksumMismatchError,
  DownloadError,
  DownloadFailedError,
  httpStatusError,
  ModelTooLargeError,
  StalledDownloadError,
  TruncatedDownloadError,
} from './errors.js'
import type { ProgressFactory, TransferProgress } from './progress.js'

export interface ModelFileRequest {
  /** What is downloaded, for messages and the progress bar (e.g. "ppocr-cls v2"). */
  label: string
  url: string
  /** The expected sha256 (lowercase hex): the file's identity. */
  sha256: string
  /** The size the source declares (the edge's listing), checked against what the server sends. */
  size?: number
  /** Sent with every request (the edge's Authorization header). */
  headers?: Record<string, string>
  /**
   * The request goes to the edge's file API: its ETag is the quoted sha256 of the file, so an
   * ETag naming another sha256 is a different file, refused before a byte is written.
   */
  fromEdge?: boolean
}

export interface DownloadSettings {
  cacheDir: string
  /** Tries in all, the first included (bounded: a download that keeps failing fails). */
  attempts: number
  /** A connection that delivers nothing for this long (headers or body) is dropped and retried. */
  stallTimeoutMs: number
  /** Back-off between attempts: exponential from minMs, capped at maxMs, with full jitter. */
  backoff?: { minMs: number; maxMs: number }
  progress?: ProgressFactory
  log?: (message: string) => void
  /** Aborts the download (the agent stopping); the .part is kept for next time. */
  signal?: AbortSignal
}

export interface ModelFile {
  /** `<cacheDir>/<sha256>.onnx`, verified. */
  path: string
  sha256: string
  size: number
  /** False when the cache already had it. */
  downloaded: boolean
}

export const DEFAULT_BACKOFF = { minMs: 500, maxMs: 30_000 }

export const cachedModelPath = (cacheDir: string, sha256: string): string => join(cacheDir, `${sha256}.onnx`)

const MB = 1_000_000
const mb = (bytes: number): string => `${(bytes / MB).toFixed(1)} MB`

/** sha256 and size of a file, hashed as a stream (a model can be hundreds of MB). */
async function sha256OfFile(path: string, end?: number): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256')
  const size = await hashInto(hash, path, end)
  return { sha256: hash.digest('hex'), size }
}

/** Feeds a file's bytes [0, end) into `hash`; returns how many. */
async function hashInto(hash: Hash, path: string, end?: number): Promise<number> {
  if (end === 0) return 0
  let size = 0
  const stream = createReadStream(path, end === undefined ? {} : { start: 0, end: end - 1 })
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    hash.update(chunk)
    size += chunk.byteLength
  }
  return size
}

/** Bytes available to this (unprivileged) process on the file system holding `dir`. */
export async function freeDiskBytes(dir: string): Promise<number> {
  const stats = await statfs(dir)
  return stats.bavail * stats.bsize
}

const isMissing = (error: unknown): boolean => (error as NodeJS.ErrnoException).code === 'ENOENT'

/**
 * Bytes of a file the cache holds: its size when `<sha256>.onnx` is there (unverified here: it
 * is hashed before use), else what an interrupted download of it left in its `.part`, else 0.
 * Read synchronously: the listing's fit check asks for a handful of files.
 */
export function cachedBytes(cacheDir: string, sha256: string): number {
  const path = cachedModelPath(cacheDir, sha256)
  for (const file of [path, `${path}.part`]) {
    const stats = statSync(file, { throwIfNoEntry: false })
    if (stats?.isFile()) return stats.size
  }
  return 0
}

/**
 * Deletes a file from the cache: `<sha256>.onnx`, and its `.part` and `.etag` unless a download
 * of it holds the lock (another process sharing the cache, which then finishes it). Returns the
 * bytes freed; a file that is not there frees none.
 */
export async function removeCachedFile(cacheDir: string, sha256: string): Promise<number> {
  const path = cachedModelPath(cacheDir, sha256)
  const downloading = await stat(`${path}.lock`).then(() => true, (error: unknown) => (isMissing(error) ? false : Promise.reject(error)))
  let freed = 0
  for (const file of downloading ? [path] : [path, `${path}.part`, `${path}.etag`]) {
    const size = await stat(file).then((s) => s.size, (error: unknown) => (isMissing(error) ? undefined : Promise.reject(error)))
    if (size === undefined) continue
    await rm(file, { force: true })
    freed += size
  }
  return freed
}

/**
 * The verified model file for `request`: from the cache when it is there and intact, else
 * downloaded (resuming any .part). Throws a DownloadError subclass; whatever it throws, nothing
 * is left at the final path unless it hashes to `request.sha256`.
 */
export async function fetchModelFile(request: ModelFileRequest, settings: DownloadSettings): Promise<ModelFile> {
  const log = settings.log ?? (() => {})
  const path = cachedModelPath(settings.cacheDir, request.sha256)
  const cachedFile = () =>
    sha256OfFile(path).catch((error: unknown) => {
      if (isMissing(error)) return undefined
      throw error
    })
  // A verified file needs no lock: the final path is only ever written by renaming a verified
  // .part onto it, so a reader sees a whole file. So a cache nothing needs to be written to
  // works read-only (models put on a device's read-only root file system in advance).
  const unlocked = await cachedFile()
  if (unlocked?.sha256 === request.sha256) return { path, sha256: request.sha256, size: unlocked.size, downloaded: false }
  await mkdir(settings.cacheDir, { recursive: true })
  const release = await lockFile(`${path}.lock`, settings.signal, log)
  try {
    // Again under the lock: another process may have finished the download meanwhile.
    const cached = await cachedFile()
    if (cached?.sha256 === request.sha256) return { path, sha256: request.sha256, size: cached.size, downloaded: false }
    if (cached) {
      log(`${request.label}: the cached ${path} is damaged (sha256 ${cached.sha256}); downloading it again`)
      await rm(path, { force: true })
    }
    const size = await new Transfer(request, settings, path, log).run()
    return { path, sha256: request.sha256, size, downloaded: true }
  } finally {
    await release()
  }
}

/** How long a lock file may stay empty (its creator writes the pid right away) before it is stale. */
const EMPTY_LOCK_STALE_MS = 10_000
const LOCK_POLL_MS = 200
/**
 * A holder touches its lock this often; a lock untouched for LOCK_STALE_MS is stale whatever pid
 * it names: that pid may be another process's now, or one in another PID namespace (a container
 * sharing the cache), and a live-looking pid must not block a download for good.
 */
const LOCK_REFRESH_MS = 5_000
const LOCK_STALE_MS = 30_000
/**
 * The locks this process holds. One that names this process's pid but is not in here was left by
 * an earlier process with the same pid: an agent restarted in a container is pid 1 again.
 */
const heldLocks = new Set<string>()

/**
 * Takes `<file>.lock` (O_EXCL), waiting while a live process holds it (said once in the log); a
 * lock left by a process that is gone, or left untouched too long, is taken over. Returns the
 * release function.
 */
async function lockFile(path: string, signal: AbortSignal | undefined, log: (message: string) => void): Promise<() => Promise<void>> {
  let waitingSaid = false
  for (;;) {
    signal?.throwIfAborted()
    try {
      const handle = await open(path, 'wx')
      await handle.writeFile(String(process.pid))
      await handle.close()
      heldLocks.add(path)
      const refresh = setInterval(() => void utimes(path, new Date(), new Date()).catch(() => {}), LOCK_REFRESH_MS)
      refresh.unref()
      return () => {
        clearInterval(refresh)
        heldLocks.delete(path)
        return rm(path, { force: true })
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
    const [holder, stats] = await Promise.all([readFile(path, 'utf8').catch(() => ''), stat(path).catch(() => undefined)])
    const pid = Number(holder)
    const age = stats ? Date.now() - stats.mtimeMs : 0
    const stale =
      holder.trim() === ''
        ? age > EMPTY_LOCK_STALE_MS
        : age > LOCK_STALE_MS || !(pid > 0 && processAlive(pid)) || (pid === process.pid && !heldLocks.has(path))
    if (stale) {
      await rm(path, { force: true })
      continue
    }
    if (!waitingSaid && pid !== process.pid) {
      log(`waiting for ${path}: process ${holder.trim()} holds it (another agent downloading the same file); taken over if that process ends or leaves it untouched for ${LOCK_STALE_MS / 1000} s`)
      waitingSaid = true
    }
    await sleep(LOCK_POLL_MS, undefined, { signal })
  }
}

/** `Content-Range: bytes <start>-<end>/<size|*>` (RFC 9110 §14.4). */
export function parseContentRange(header: string | null): { start: number; end: number; total?: number } | undefined {
  const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header?.trim() ?? '')
  if (!match) return undefined
  const start = Number(match[1])
  const end = Number(match[2])
  if (end < start) return undefined
  return match[3] === '*' ? { start, end } : { start, end, total: Number(match[3]) }
}

/** A network error's message with its cause (undici says "fetch failed" / "terminated", the cause says why). */
export function networkMessage(error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  const cause = error.cause
  const detail = cause instanceof Error ? ((cause as NodeJS.ErrnoException).code ?? cause.message) : undefined
  return detail && detail !== error.message ? `${error.message} (${detail})` : error.message
}

/** One download of one file: the .part on disk and the running hash of its bytes, across attempts. */
class Transfer {
  readonly #part: string
  readonly #etagPath: string
  #hash: Hash = createHash('sha256')
  /** Bytes in the .part, all of them fed to #hash. */
  #bytes = 0
  /** The ETag the .part's bytes came with. */
  #etag: string | undefined
  /** Whether the bytes now in the .part were put together from more than one response. */
  #resumed = false
  #restartedAfterMismatch = false

  constructor(
    private readonly request: ModelFileRequest,
    private readonly settings: DownloadSettings,
    private readonly path: string,
    private readonly log: (message: string) => void,
  ) {
    this.#part = `${path}.part`
    this.#etagPath = `${path}.etag`
  }

  /** Downloads and verifies; returns the file's size. */
  async run(): Promise<number> {
    const { request, settings } = this
    const backoff = settings.backoff ?? DEFAULT_BACKOFF
    await this.#adoptPart()
    let failures = 0
    for (;;) {
      try {
        await this.#attempt()
        const actual = this.#hash.digest('hex')
        if (actual === request.sha256) {
          // rename(2) is atomic: the final path holds the whole verified file or nothing.
          await rename(this.#part, this.path)
          await rm(this.#etagPath, { force: true })
          return this.#bytes
        }
        const resumed = this.#resumed
        await this.#discard()
        // A .part resumed from an earlier response may hold another file's prefix (one changed
        // on a server without ETags): one fresh download settles whose fault it was.
        if (resumed && !this.#restartedAfterMismatch) {
          this.#restartedAfterMismatch = true
          this.log(`${request.label}: sha256 ${actual} after resuming, expected ${request.sha256}; downloading it again from the start`)
          continue
        }
        throw new ChecksumMismatchError(request.sha256, actual, `${request.label}: downloaded file is corrupt`)
      } catch (error) {
        settings.signal?.throwIfAborted()
        if (!(error instanceof DownloadError) || !error.retryable) throw error
        failures++
        if (failures >= settings.attempts) throw new DownloadFailedError(request.label, settings.attempts, error)
        const delayMs = backoffMs(failures - 1, backoff.minMs, backoff.maxMs)
        this.log(`${error.message}; retrying in ${(delayMs / 1000).toFixed(1)} s (attempt ${failures + 1} of ${settings.attempts})`)
        await sleep(delayMs, undefined, { signal: settings.signal })
      }
    }
  }

  /** Takes over a .part left by an earlier run: hashes its bytes so the download continues after them. */
  async #adoptPart(): Promise<void> {
    const size = await stat(this.#part).then(
      (stats) => stats.size,
      () => 0,
    )
    if (size === 0 || (this.request.size !== undefined && size > this.request.size)) return this.#discard()
    this.#hash = createHash('sha256')
    this.#bytes = await hashInto(this.#hash, this.#part, size)
    this.#etag = (await readFile(this.#etagPath, 'utf8').catch(() => '')) || undefined
    this.#resumed = true
  }

  /** Starts over: no .part, an empty hash. */
  async #discard(): Promise<void> {
    await rm(this.#part, { force: true })
    await rm(this.#etagPath, { force: true })
    this.#hash = createHash('sha256')
    this.#bytes = 0
    this.#etag = undefined
    this.#resumed = false
  }

  /**
   * One request, its body appended to the .part. Returns when the server has sent everything;
   * throws a DownloadError otherwise (the bytes received are kept to resume from).
   */
  async #attempt(): Promise<void> {
    const { request, settings } = this
    // A failed write may have left bytes on disk that the hash has not seen: hash the .part again.
    const onDisk = await stat(this.#part).then(
      (stats) => stats.size,
      () => 0,
    )
    if (onDisk !== this.#bytes) await this.#adoptPart()

    const controller = new AbortController()
    const abort = () => controller.abort()
    settings.signal?.addEventListener('abort', abort, { once: true })
    let stalled = false
    let timer: NodeJS.Timeout | undefined
    // Re-armed on every chunk: it measures silence, not the whole transfer.
    const arm = () => {
      clearTimeout(timer)
      timer = setTimeout(() => {
        stalled = true
        controller.abort()
      }, settings.stallTimeoutMs)
    }
    let progress: TransferProgress | undefined
    let file: FileHandle | undefined
    let receiving = false
    let ok = false
    let total: number | undefined
    try {
      arm()
      const response = await fetch(request.url, { headers: this.#headers(), signal: controller.signal })
      const etag = response.headers.get('etag') ?? undefined
      const servedSha256 = request.fromEdge ? /^"([0-9a-f]{64})"$/.exec(etag ?? '')?.[1] : undefined
      if (servedSha256 !== undefined && servedSha256 !== request.sha256) {
        await response.body?.cancel()
        throw new ChecksumMismatchError(request.sha256, servedSha256, `${request.label}: the edge serves another file`)
      }
      if (response.status === 416 && this.#bytes > 0) {
        // Nothing after our .part's end: it holds the whole file already (a run that stopped
        // before renaming it), or more than the file; the hash decides.
        await response.body?.cancel()
        ok = true
        return
      }
      if (response.status !== 200 && response.status !== 206) throw await httpStatusError(response, request.label, request.fromEdge === true)

      if (response.status === 206) {
        const range = parseContentRange(response.headers.get('content-range'))
        const problem =
          !range || range.start !== this.#bytes
            ? `answered "Range: bytes=${this.#bytes}-" with Content-Range ${response.headers.get('content-range') ?? '(none)'}`
            : this.#etag !== undefined && etag !== undefined && etag !== this.#etag
              ? `the file changed on the server (ETag ${this.#etag}, now ${etag})`
              : undefined
        if (problem) {
          await response.body?.cancel()
          await this.#discard()
          throw new DownloadError(`${request.label}: ${problem}; starting over`, true)
        }
        total = range?.total
        if (this.#bytes > 0) this.#resumed = true
      } else {
        // 200 is the whole file whatever was asked: a server without ranges, or an If-Range
        // whose ETag no longer matches. What the .part holds is of no use then.
        if (this.#bytes > 0) {
          this.log(`${request.label}: the server sent the whole file instead of the rest; starting over`)
          await this.#discard()
        }
        const length = response.headers.get('content-length')
        total = length !== null && /^\d+$/.test(length) ? Number(length) : undefined
      }
      await this.#checkSize(total)
      if (etag !== undefined && etag !== this.#etag) {
        this.#etag = etag
        await writeFile(this.#etagPath, etag)
      }

      file = await open(this.#part, this.#bytes === 0 ? 'w' : 'a')
      progress = settings.progress?.(request.label)
      progress?.start(total ?? request.size, this.#bytes)
      const limit = total ?? request.size
      receiving = true
      if (response.body) {
        for await (const chunk of response.body) {
          arm()
          if (limit !== undefined && this.#bytes + chunk.byteLength > limit) {
            await this.#discard()
            throw new DownloadError(`${request.label}: the server sent more than the ${limit} bytes the file has`, false)
          }
          await this.#write(file, chunk)
          progress?.update(this.#bytes)
        }
      }
      receiving = false
      if (total !== undefined && this.#bytes < total) {
        throw new TruncatedDownloadError(`${request.label}: the connection ended after ${mb(this.#bytes)} of ${mb(total)}`)
      }
      // On disk before the rename makes it the cache's file.
      await file.sync()
      ok = true
    } catch (error) {
      settings.signal?.throwIfAborted()
      if (stalled) {
        throw new StalledDownloadError(
          `${request.label}: nothing received for ${settings.stallTimeoutMs / 1000} s${receiving ? ` after ${mb(this.#bytes)}` : ''}`,
        )
      }
      if (error instanceof DownloadError) throw error
      if (receiving) {
        throw new TruncatedDownloadError(
          `${request.label}: the connection broke after ${mb(this.#bytes)}${total === undefined ? '' : ` of ${mb(total)}`}: ${networkMessage(error)}`,
          { cause: error },
        )
      }
      throw new DownloadError(`${request.label}: cannot reach ${new URL(request.url).origin}: ${networkMessage(error)}`, true, { cause: error })
    } finally {
      clearTimeout(timer)
      // Closes a response given up on before its end (refused, too big); a no-op after a complete one.
      controller.abort()
      settings.signal?.removeEventListener('abort', abort)
      progress?.end(ok)
      await file?.close()
    }
  }

  #headers(): Record<string, string> {
    const headers: Record<string, string> = {
      ...this.request.headers,
      // Content-Length and ranges count the file's bytes only without a content coding.
      'accept-encoding': 'identity',
    }
    if (this.#bytes > 0) {
      headers.range = `bytes=${this.#bytes}-`
      // A server that supports If-Range sends the whole new file (200) if it changed; weak
      // ETags are not allowed there (RFC 9110 §13.1.5).
      if (this.#etag !== undefined && !this.#etag.startsWith('W/')) headers['if-range'] = this.#etag
    }
    return headers
  }

  /** The file the server is about to send must be the listed size and fit in the cache's free space. */
  async #checkSize(total: number | undefined): Promise<void> {
    const { request, settings } = this
    if (total !== undefined && request.size !== undefined && total !== request.size) {
      await this.#discard()
      throw new DownloadError(`${request.label}: the server's file is ${total} bytes, but ${request.size} are listed`, false)
    }
    const size = total ?? request.size
    if (size === undefined) return
    const free = await freeDiskBytes(settings.cacheDir)
    if (size - this.#bytes > free) {
      throw new ModelTooLargeError(`${request.label}: needs ${mb(size - this.#bytes)} more, ${mb(free)} free in ${settings.cacheDir}`)
    }
  }

  async #write(file: FileHandle, chunk: Uint8Array): Promise<void> {
    try {
      await file.write(chunk)
    } catch (error) {
      // A full or failing disk does not get better by downloading again.
      throw new DownloadError(`${this.request.label}: cannot write ${this.#part}: ${messageOf(error)}`, false, { cause: error })
    }
    this.#hash.update(chunk)
    this.#bytes += chunk.byteLength
  }
}
