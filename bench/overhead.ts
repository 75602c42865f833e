/**
 * `npm run bench` — what the network costs. Measures, in one run and on the same inputs,
 * inference on the bundled text-direction classifier (ppocr-cls, JSON tensors) three ways:
 *   direct  onnxruntime-node in this process (no HTTP at all)
 *   naive   a single-process Node HTTP server wrapping the same model (bench/naive-server.ts)
 *   depinfer  HTTP → edge in Miniflare → Gateway DO → MQTT (aedes) → device agent → ORT
 * at concurrency 1 and 32, and prints latency percentiles, throughput and the ratios. Two inputs:
 * FP32 [1,3,64,64] (the reference size the overhead targets were set with) and [1,3,48,192]
 * (the model's natural text-line size, 2.25x the data).
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as ort from 'onnxruntime-node'
import { bundledModelPath } from '../device-agent/src/models/bundled.js'
import { startLocalNetwork } from '../scripts/local/network.js'
import { REPO_ROOT } from '../scripts/local/paths.js'
import { waitFor } from '../scripts/local/wait-for.js'
import { httpPoster, runLoad, type LoadResult } from './load.js'
import { machineLine } from './machine.js'
import { recordSummary } from './summary.js'
import { keepOrtTelemetryOff } from '../device-agent/src/runtime/ort-telemetry.js'

keepOrtTelemetryOff()

const REQUESTS = { 1: 400, 32: 2000 } as const
const WARMUP = 100
const SHAPES = [
  [1, 3, 64, 64],
  [1, 3, 48, 192],
] as const
const modelPath = bundledModelPath('ppocr-cls')

async function startNaiveServer(): Promise<{ url: string; stop: () => void }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'bench', 'naive-server.ts'), modelPath], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const port = await new Promise<string>((resolve) => child.stdout!.once('data', (chunk: Buffer) => resolve(chunk.toString().trim())))
  return { url: `http://127.0.0.1:${port}/`, stop: () => child.kill('SIGTERM') }
}

async function measure(call: () => Promise<boolean>): Promise<Record<1 | 32, LoadResult>> {
  await runLoad(call, 4, WARMUP)
  return { 1: await runLoad(call, 1, REQUESTS[1]), 32: await runLoad(call, 32, REQUESTS[32]) }
}

/** Deterministic pixel-like values in [-1, 1], 4 decimals, as a normalized image would carry. */
function imageData(count: number): number[] {
  return Array.from({ length: count }, (_, i) => Math.round(Math.sin(i * 0.37) * 1e4) / 1e4)
}

async function main(): Promise<void> {
  console.log(`machine: ${machineLine()}`)
  console.log(`model: ppocr-cls; c=1 ${REQUESTS[1]} requests, c=32 ${REQUESTS[32]}, after ${WARMUP} warm-up requests`)
  const session = await ort.InferenceSession.create(modelPath, { graphOptimizationLevel: 'all' })
  const naiveServer = await startNaiveServer()
  const network = await startLocalNetwork({ agents: [{ deviceId: 'bench-device', models: 'ppocr-cls' }] })
  try {
    const url = `${network.edge.url}/v2/models/ppocr-cls/infer`
    const auth = { Authorization: `Bearer ${network.apiKey}` }
    for (const shape of SHAPES) {
      const data = imageData(shape.reduce((a: number, b: number) => a * b, 1))
      const body = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape, datatype: 'FP32', data }] }))
      const input = Float32Array.from(data)
      const direct = await measure(async () => {
        await session.run({ x: new ort.Tensor('float32', input, [...shape]) })
        return true
      })
      const naive = await measure(httpPoster(naiveServer.url, body))
      const post = httpPoster(url, body, auth)
      await waitFor('the model to be ready', async () => ((await post()) ? true : undefined), 60_000, 200)
      const depinfer = await measure(post)
      // The same input as binary tensor data (KServe binary extension): no JSON numbers to parse.
      const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape, datatype: 'FP32', parameters: { binary_data_size: input.byteLength } }] }))
      const binaryBody = Buffer.concat([header, Buffer.from(input.buffer, input.byteOffset, input.byteLength)])
      const binary = await measure(httpPoster(url, binaryBody, { ...auth, 'Inference-Header-Content-Length': String(header.length) }))
      printTable(`FP32 [${shape.join(',')}] as JSON (${(body.length / 1024).toFixed(0)} KiB)`, { direct, naive, depinfer, binary })
      if (shape === SHAPES.at(-1)) {
        const c32 = (r: Record<1 | 32, LoadResult>) => r[32].throughputPerSec
        recordSummary(
          { bench: 'overhead', metric: `c=1 p50 added over direct ORT, JSON [${shape.join(',')}]`, value: `${(depinfer[1].p50Ms - direct[1].p50Ms).toFixed(2)} ms`, target: '≤ 6 ms', met: depinfer[1].p50Ms - direct[1].p50Ms <= 6 },
          { bench: 'overhead', metric: 'c=32 throughput, network (JSON) / naive Node server', value: `${(c32(depinfer) / c32(naive)).toFixed(2)}x`, target: '≥ 1.5x', met: c32(depinfer) / c32(naive) >= 1.5 },
          { bench: 'overhead', metric: 'c=32 throughput, network (binary) / direct ORT in one process', value: `${(c32(binary) / c32(direct)).toFixed(2)}`, target: '≥ 0.5', met: c32(binary) / c32(direct) >= 0.5 },
          { bench: 'overhead', metric: 'c=32 throughput, binary tensors / JSON', value: `${(c32(binary) / c32(depinfer)).toFixed(2)}x`, target: '', met: null },
        )
      }
    }
    await measureBatching(network, url, auth)
  } finally {
    await network.close()
    naiveServer.stop()
    await session.release()
  }
}

/**
 * Dynamic batching on (the default, up to 8 jobs per run) vs off (maxBatch 1), end to end at
 * c=32 on the classifier's natural input as binary tensors (so the edge's JSON parsing does not
 * hide the device's work). The batching agent is swapped for a non-batching one on the same
 * network between the two runs.
 */
async function measureBatching(network: Awaited<ReturnType<typeof startLocalNetwork>>, url: string, auth: Record<string, string>): Promise<void> {
  const shape = [1, 3, 48, 192]
  const input = Float32Array.from(imageData(shape.reduce((a, b) => a * b, 1)))
  const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape, datatype: 'FP32', parameters: { binary_data_size: input.byteLength } }] }))
  const body = Buffer.concat([header, Buffer.from(input.buffer, input.byteOffset, input.byteLength)])
  const post = httpPoster(url, body, { ...auth, 'Inference-Header-Content-Length': String(header.length) })
  const batchingOn = await measure(post)

  const configDir = mkdtempSync(join(tmpdir(), 'depinfer-bench-'))
  const configPath = join(configDir, 'agent.json')
  writeFileSync(configPath, JSON.stringify({ batching: { maxBatch: 1 } }))
  await network.agents[0]!.stop()
  network.startAgent({ deviceId: 'bench-device-unbatched', models: 'ppocr-cls', configPath })
  await waitFor('the unbatched agent', async () => ((await post()) ? true : undefined), 60_000, 200)
  const batchingOff = await measure(post)
  rmSync(configDir, { recursive: true, force: true })

  console.log('\n### Dynamic batching, FP32 [1,3,48,192] binary tensors\n')
  console.log('| agent | c | p50 ms | p99 ms | req/s |')
  console.log('|---|---|---|---|---|')
  for (const [name, r] of [['batching on (maxBatch 8)', batchingOn], ['batching off (maxBatch 1)', batchingOff]] as const) {
    for (const c of [1, 32] as const) console.log(`| ${name} | ${c} | ${r[c].p50Ms.toFixed(2)} | ${r[c].p99Ms.toFixed(2)} | ${r[c].throughputPerSec.toFixed(0)} |`)
  }
  const gain = batchingOn[32].throughputPerSec / batchingOff[32].throughputPerSec
  console.log(`\n- c=32 throughput, batching on / off: ${gain.toFixed(2)}x (target ≥ 1.8x)`)
  recordSummary({ bench: 'overhead', metric: 'c=32 throughput, dynamic batching on / off (binary)', value: `${gain.toFixed(2)}x`, target: '≥ 1.8x', met: gain >= 1.8 })
}

function printTable(title: string, results: Record<'direct' | 'naive' | 'depinfer' | 'binary', Record<1 | 32, LoadResult>>): void {
  const { direct, naive, depinfer, binary } = results
  console.log(`\n### ${title}\n`)
  console.log('| path | c | p50 ms | p99 ms | req/s | errors |')
  console.log('|---|---|---|---|---|---|')
  const rows = [['direct ORT', direct], ['naive Node HTTP', naive], ['depinfer network', depinfer], ['depinfer, binary tensors', binary]] as const
  for (const [name, result] of rows) {
    for (const c of [1, 32] as const) {
      const r = result[c]
      console.log(`| ${name} | ${c} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${r.throughputPerSec.toFixed(0)} | ${r.errors} |`)
    }
  }
  for (const [name, result] of rows) {
    for (const c of [1, 32] as const) if (result[c].firstError) console.log(`\n${name}, c=${c}: ${result[c].errors} failed; the first: ${result[c].firstError}`)
  }
  console.log('\nratios (same run):')
  console.log(`- c=1 p50 added over direct ORT: depinfer ${(depinfer[1].p50Ms - direct[1].p50Ms).toFixed(2)} ms, naive ${(naive[1].p50Ms - direct[1].p50Ms).toFixed(2)} ms`)
  console.log(`- c=32 throughput depinfer / naive: ${(depinfer[32].throughputPerSec / naive[32].throughputPerSec).toFixed(2)}x`)
  console.log(`- binary tensors instead of JSON: c=1 p50 ${binary[1].p50Ms.toFixed(2)} vs ${depinfer[1].p50Ms.toFixed(2)} ms; c=32 throughput ${(binary[32].throughputPerSec / depinfer[32].throughputPerSec).toFixed(2)}x, ${(binary[32].throughputPerSec / naive[32].throughputPerSec).toFixed(2)}x the naive JSON server`)
  console.log(`- c=32 throughput depinfer / direct ORT: ${(depinfer[32].throughputPerSec / direct[32].throughputPerSec).toFixed(2)}; naive / direct ORT: ${(naive[32].throughputPerSec / direct[32].throughputPerSec).toFixed(2)}`)
}

await main()
