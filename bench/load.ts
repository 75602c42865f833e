import { Agent, request } from 'node:http'
import { messageOf } from '../shared/src/errors.js'

/** A closed-loop load generator: `concurrency` workers, each sending its next request when the last one returns. */

export interface LoadResult {
  concurrency: number
  requests: number
  p50Ms: number
  p99Ms: number
  throughputPerSec: number
  errors: number
  /** Why the first failed request failed (an HTTP status, a socket error), when one did. */
  firstError?: string
}

export function percentile(sortedMs: number[], p: number): number {
  if (sortedMs.length === 0) return Number.NaN
  return sortedMs[Math.min(sortedMs.length - 1, Math.floor((p / 100) * sortedMs.length))]!
}

/** Runs `call` `total` times at the given concurrency; `call` resolves true on success, and rejects (its reason recorded) or resolves false on failure. */
export async function runLoad(call: () => Promise<boolean>, concurrency: number, total: number): Promise<LoadResult> {
  const latencies: number[] = []
  let errors = 0
  let firstError: string | undefined
  let issued = 0
  const started = performance.now()
  const worker = async () => {
    while (issued < total) {
      issued++
      const t0 = performance.now()
      const ok = await call().catch((error: unknown) => {
        firstError ??= messageOf(error)
        return false
      })
      latencies.push(performance.now() - t0)
      if (!ok) {
        errors++
        firstError ??= 'not answered 200'
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const elapsedSec = (performance.now() - started) / 1000
  latencies.sort((a, b) => a - b)
  return {
    concurrency,
    requests: total,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    throughputPerSec: total / elapsedSec,
    errors,
    ...(firstError !== undefined && { firstError }),
  }
}

/**
 * A lean HTTP/1.1 keep-alive POST for load generation. (undici's fetch spent ~3.5 ms of CPU per
 * 190 KiB request here, more than the servers under test, skewing every ratio.)
 */
export function httpPoster(url: string, body: Buffer, headers: Record<string, string> = {}): () => Promise<boolean> {
  // Idle sockets are dropped after 4 s: workerd closes a keep-alive connection idle for 5 s
  // without saying so (no Keep-Alive header), and a request sent on it just as it closes fails
  // with "socket hang up" (an error in a c=32 run, from sockets idle through the c=1 run).
  const agent = new Agent({ keepAlive: true, maxSockets: 64, timeout: 4_000 })
  const target = new URL(url)
  return () =>
    new Promise<boolean>((resolve, reject) => {
      const req = request(
        {
          agent,
          host: target.hostname,
          port: target.port,
          path: target.pathname,
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'Content-Length': body.length, ...headers },
        },
        (response) => {
          response.on('data', () => {})
          response.on('end', () => (response.statusCode === 200 ? resolve(true) : reject(new Error(`HTTP ${response.statusCode}`))))
        },
      )
      req.on('error', reject)
      req.end(body)
    })
}
