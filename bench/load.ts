import { Agent, request } from 'node:http'

/** A closed-loop load generator: `concurrency` workers, each sending its next request when the last one returns. */

export interface LoadResult {
  concurrency: number
  requests: number
  p50Ms: number
  p99Ms: number
  throughputPerSec: number
  errors: number
}

export function percentile(sortedMs: number[], p: number): number {
  if (sortedMs.length === 0) return Number.NaN
  return sortedMs[Math.min(sortedMs.length - 1, Math.floor((p / 100) * sortedMs.length))]!
}

/** Runs `call` `total` times at the given concurrency; `call` resolves true on success. */
export async function runLoad(call: () => Promise<boolean>, concurrency: number, total: number): Promise<LoadResult> {
  const latencies: number[] = []
  let errors = 0
  let issued = 0
  const started = performance.now()
  const worker = async () => {
    while (issued < total) {
      issued++
      const t0 = performance.now()
      const ok = await call().catch(() => false)
      latencies.push(performance.now() - t0)
      if (!ok) errors++
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
  }
}

/**
 * A lean HTTP/1.1 keep-alive POST for load generation. (undici's fetch spent ~3.5 ms of CPU per
 * 190 KiB request here, more than the servers under test, skewing every ratio.)
 */
export function httpPoster(url: string, body: Buffer, headers: Record<string, string> = {}): () => Promise<boolean> {
  const agent = new Agent({ keepAlive: true, maxSockets: 64 })
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
          response.on('end', () => resolve(response.statusCode === 200))
        },
      )
      req.on('error', reject)
      req.end(body)
    })
}
