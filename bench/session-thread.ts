/**
 * `npx tsx bench/session-thread.ts` — what running a model's session in a worker thread costs
 * and buys (the agent's `ort.runIn`; a benchmark, not a test). Measured in one run, through the
 * agent's own session code (OrtRuntime, loadModel):
 *   cost   time per run, runs back to back, of the bundled ppocr-cls at batch 1 and 8 on the
 *          agent's thread and in a worker thread (the worker copies the inputs over and the
 *          outputs back);
 *   gain   the longest the agent's event loop stalls (the longest gap between ticks of a 5 ms
 *          timer) while a generated model runs for about a second, on either thread.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { bytesOf, type RawTensor } from '@depinfer/shared'
import { AgentConfigSchema } from '../device-agent/src/config.js'
import { bundledModelPath } from '../device-agent/src/models/bundled.js'
import { OrtRuntime } from '../device-agent/src/runtime/execution.js'
import { loadModel, type LoadedModel } from '../device-agent/src/runtime/loaded-model.js'
import { slowModel, slowModelInputs } from '../test/helpers/onnx-model.js'
import { machineLine } from './machine.js'
import { recordSummary } from './summary.js'

const THREADS = ['agent-thread', 'worker-thread'] as const
type Thread = (typeof THREADS)[number]
const RUNS = 400

async function load(thread: Thread, path: string): Promise<LoadedModel> {
  const settings = AgentConfigSchema.parse({ deviceId: 'bench', broker: { url: 'mqtt://x' }, models: [{ bundled: 'ppocr-cls' }], keyPath: '/k', ort: { runIn: thread, executionProviders: ['cpu'] } }).ort
  const model = await loadModel({ name: 'bench', version: '1', path, state: 'loading', maxBatch: 1 }, { runtime: new OrtRuntime(settings, () => {}), maxBatch: 8 })
  if (model.state !== 'ready') throw new Error(`${path} did not load: ${model.error}`)
  return model
}

function image(rows: number): RawTensor {
  const values = Float32Array.from({ length: rows * 3 * 48 * 192 }, (_, i) => Math.sin(i * 0.37) * 0.8)
  return { name: 'x', datatype: 'FP32', shape: [rows, 3, 48, 192], data: bytesOf(values) }
}

/** Median ms per run of `RUNS` back-to-back runs, after warming up. */
async function msPerRun(model: LoadedModel, inputs: RawTensor[]): Promise<number> {
  for (let i = 0; i < 30; i++) await model.session!.run(inputs, [])
  const times: number[] = []
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now()
    await model.session!.run(inputs, [])
    times.push(performance.now() - started)
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)]!
}

/**
 * The longest gap, in ms, between ticks of a 5 ms timer on this thread while `work` runs: how
 * long the agent's event loop (heartbeats, MQTT, job intake) was held at most.
 */
async function longestStall(work: () => Promise<unknown>): Promise<number> {
  let last = performance.now()
  let longest = 0
  const timer = setInterval(() => {
    const now = performance.now()
    longest = Math.max(longest, now - last)
    last = now
  }, 5)
  await work()
  // The tick that ends a stall comes after the run's answer.
  await new Promise((resolve) => setTimeout(resolve, 30))
  clearInterval(timer)
  return longest
}

async function main(): Promise<void> {
  console.log(`machine: ${machineLine()}\n`)
  console.log(`### Cost: ppocr-cls, median ms per run of ${RUNS} back to back\n`)
  console.log('| batch | agent thread | worker thread | added | ratio |')
  console.log('|---|---|---|---|---|')
  const cls = Object.fromEntries(await Promise.all(THREADS.map(async (t) => [t, await load(t, bundledModelPath('ppocr-cls'))] as const))) as Record<Thread, LoadedModel>
  const costs: { rows: number; added: number; ratio: number }[] = []
  for (const rows of [1, 8]) {
    const input = [image(rows)]
    const [agent, worker] = [await msPerRun(cls['agent-thread'], input), await msPerRun(cls['worker-thread'], input)]
    costs.push({ rows, added: worker - agent, ratio: worker / agent })
    console.log(`| ${rows} | ${agent.toFixed(3)} | ${worker.toFixed(3)} | ${(worker - agent).toFixed(3)} ms | ${(worker / agent).toFixed(2)}x |`)
  }
  await Promise.all(THREADS.map((t) => cls[t].session!.release()))

  const dir = mkdtempSync(join(tmpdir(), 'depinfer-bench-slow-'))
  const path = join(dir, 'slow.onnx')
  writeFileSync(path, slowModel())
  const slow = Object.fromEntries(await Promise.all(THREADS.map(async (t) => [t, await load(t, path)] as const))) as Record<Thread, LoadedModel>
  // Iterations for a run of about a second here.
  await slow['agent-thread'].session!.run(slowModelInputs(10_000), [])
  const timed = performance.now()
  await slow['agent-thread'].session!.run(slowModelInputs(10_000), [])
  const iterations = Math.ceil((1_000 / (performance.now() - timed)) * 10_000)
  console.log(`\n### Gain: the agent's longest event-loop stall while one run of a generated model lasts about 1 s\n`)
  console.log('| session on | run ms | longest stall ms |')
  console.log('|---|---|---|')
  const stalls: Record<Thread, number> = { 'agent-thread': 0, 'worker-thread': 0 }
  for (const t of THREADS) {
    let runMs = 0
    stalls[t] = await longestStall(async () => {
      const started = performance.now()
      await slow[t].session!.run(slowModelInputs(iterations), [])
      runMs = performance.now() - started
    })
    console.log(`| ${t} | ${runMs.toFixed(0)} | ${stalls[t].toFixed(1)} |`)
  }
  await Promise.all(THREADS.map((t) => slow[t].session!.release()))
  rmSync(dir, { recursive: true, force: true })

  recordSummary(
    ...costs.map(({ rows, added, ratio }) => ({
      bench: 'session-thread',
      metric: `worker thread's cost per run, ppocr-cls batch ${rows}`,
      value: `+${added.toFixed(3)} ms (${ratio.toFixed(2)}x)`,
      target: '',
      met: null,
    })),
    {
      bench: 'session-thread',
      metric: "agent's longest stall during a ~1 s run: agent thread / worker thread",
      value: `${stalls['agent-thread'].toFixed(0)} / ${stalls['worker-thread'].toFixed(1)} ms`,
      target: '',
      met: null,
    },
  )
}

await main()
