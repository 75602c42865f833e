/**
 * `npm run bench` — what the network costs. Measures, in one run and on the same inputs,
 * inference on the bundled text-direction classifier (ppocr-cls, FP32 [1,3,48,192], JSON
 * tensors) three ways:
 *   direct  onnxruntime-node in this process (no HTTP at all)
 *   naive   a single-process Node HTTP server wrapping the same model (bench/naive-server.ts)
 *   depinfer  HTTP → edge in Miniflare → Gateway DO → MQTT (aedes) → device agent → ORT
 * at concurrency 1 and 32, and prints latency percentiles, throughput and the ratios.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import * as ort from 'onnxruntime-node'
import { bundledModelPath } from '../device-agent/src/models/bundled.js'
import { EXAMPLE_SHAPE, exampleInferRequest, exampleTextLine } from '../scripts/local/example-input.js'
import { startLocalNetwork } from '../scripts/local/network.js'
import { REPO_ROOT } from '../scripts/local/paths.js'
import { waitFor } from '../scripts/local/wait-for.js'
import { httpPoster, runLoad, type LoadResult } from './load.js'
import { machineLine } from './machine.js'

const REQUESTS = { 1: 400, 32: 2000 } as const
const WARMUP = 100
const modelPath = bundledModelPath('ppocr-cls')
const body = Buffer.from(JSON.stringify(exampleInferRequest(1)))

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

async function main(): Promise<void> {
  console.log(`machine: ${machineLine()}`)
  console.log(`input: ppocr-cls FP32 [${EXAMPLE_SHAPE.join(',')}] as JSON (${(body.length / 1024).toFixed(0)} KiB); c=1 ${REQUESTS[1]} requests, c=32 ${REQUESTS[32]}\n`)

  const session = await ort.InferenceSession.create(modelPath, { graphOptimizationLevel: 'all' })
  const input = Float32Array.from(exampleTextLine(1))
  const direct = await measure(async () => {
    await session.run({ x: new ort.Tensor('float32', input, [...EXAMPLE_SHAPE]) })
    return true
  })
  await session.release()

  const naiveServer = await startNaiveServer()
  const naive = await measure(httpPoster(naiveServer.url, body))
  naiveServer.stop()

  const network = await startLocalNetwork({ agents: [{ deviceId: 'bench-device', models: 'ppocr-cls' }] })
  let depinfer: Record<1 | 32, LoadResult>
  try {
    const url = `${network.edge.url}/v2/models/ppocr-cls/infer`
    const auth = { Authorization: `Bearer ${network.apiKey}` }
    const post = httpPoster(url, body, auth)
    await waitFor('the model to be ready', async () => ((await post()) ? true : undefined), 60_000, 200)
    depinfer = await measure(post)
  } finally {
    await network.close()
  }

  const rows = [
    ['direct ORT', direct],
    ['naive Node HTTP', naive],
    ['depinfer network', depinfer],
  ] as const
  console.log('| path | c | p50 ms | p99 ms | req/s | errors |')
  console.log('|---|---|---|---|---|---|')
  for (const [name, result] of rows) {
    for (const c of [1, 32] as const) {
      const r = result[c]
      console.log(`| ${name} | ${c} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${r.throughputPerSec.toFixed(0)} | ${r.errors} |`)
    }
  }
  console.log('\nratios (same run):')
  console.log(`  c=1  p50 added by depinfer over direct ORT: ${(depinfer[1].p50Ms - direct[1].p50Ms).toFixed(2)} ms (naive server adds ${(naive[1].p50Ms - direct[1].p50Ms).toFixed(2)} ms)`)
  console.log(`  c=32 throughput depinfer / naive: ${(depinfer[32].throughputPerSec / naive[32].throughputPerSec).toFixed(2)}x`)
  console.log(`  c=32 throughput depinfer / direct ORT: ${(depinfer[32].throughputPerSec / direct[32].throughputPerSec).toFixed(2)}`)
  console.log(`  c=32 throughput naive / direct ORT: ${(naive[32].throughputPerSec / direct[32].throughputPerSec).toFixed(2)}`)
}

await main()
