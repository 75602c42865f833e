/**
 * `npx tsx bench/session-thread.ts` — what running a model's session in a worker thread or a
 * child process costs and buys (the agent's `ort.runIn`; a benchmark, not a test). Measured in
 * one run, through the agent's own session code (OrtRuntime, loadModel):
 *   cost   time per run, runs back to back, of the bundled ppocr-cls at batch 1 and 8 and of
 *          ppocr-det at 544×480 (3 MB in, 1 MB out), on the agent's thread, in a worker thread
 *          (inputs copied over, outputs back) and in a child process (the same, large tensors
 *          through a scratch file);
 *   gain   the longest the agent's event loop stalls (the longest gap between ticks of a 5 ms
 *          timer) while a generated model runs for about a second, in each place;
 *   stop   in a child process only: how long after its deadline a run that would last seconds
 *          is answered, and how long the next run takes (the model opened again).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { bytesOf, type RawTensor } from '@depinfer/shared'
import { AgentConfigSchema } from '../device-agent/src/config.js'
import { bundledModelPath } from '../device-agent/src/models/bundled.js'
import { OrtRuntime } from '../device-agent/src/runtime/execution.js'
import { DeadlineExceededError } from '../device-agent/src/runtime/batcher.js'
import { loadModel, type LoadedModel } from '../device-agent/src/runtime/loaded-model.js'
import { slowModel, slowModelInputs } from '../test/helpers/onnx-model.js'
import { machineLine } from './machine.js'
import { recordSummary } from './summary.js'

const THREADS = ['agent-thread', 'worker-thread', 'child-process'] as const
type Thread = (typeof THREADS)[number]
const RUNS = 400

async function load(thread: Thread, path: string): Promise<LoadedModel> {
  const settings = AgentConfigSchema.parse({ deviceId: 'bench', broker: { url: 'mqtt://x' }, models: [{ bundled: 'ppocr-cls' }], keyPath: '/k', ort: { runIn: thread, executionProviders: ['cpu'] } }).ort
  const model = await loadModel({ name: 'bench', version: '1', path, state: 'loading', maxBatch: 1 }, { runtime: new OrtRuntime(settings, () => {}), maxBatch: 8 })
  if (model.state !== 'ready') throw new Error(`${path} did not load: ${model.error}`)
  return model
}

/** A deterministic image batch of `rows` × 3 × `height` × `width`. */
function image(rows: number, height = 48, width = 192): RawTensor {
  const values = Float32Array.from({ length: rows * 3 * height * width }, (_, i) => Math.sin(i * 0.37) * 0.8)
  return { name: 'x', datatype: 'FP32', shape: [rows, 3, height, width], data: bytesOf(values) }
}

/** Median ms per run of `RUNS` back-to-back runs, after warming up. */
async function msPerRun(model: LoadedModel, inputs: RawTensor[], runs = RUNS): Promise<number> {
  for (let i = 0; i < Math.min(30, runs); i++) await model.session!.run(inputs, [])
  const times: number[] = []
  for (let i = 0; i < runs; i++) {
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

/** Each place's model of `path`, loaded at once. */
async function loadEverywhere(path: string): Promise<Record<Thread, LoadedModel>> {
  return Object.fromEntries(await Promise.all(THREADS.map(async (t) => [t, await load(t, path)] as const))) as Record<Thread, LoadedModel>
}

const releaseAll = (models: Record<Thread, LoadedModel>) => Promise.all(THREADS.map((t) => models[t].session!.release()))

const signed = (ms: number) => `${ms >= 0 ? '+' : '−'}${Math.abs(ms).toFixed(3)}`

interface Cost {
  label: string
  ms: Record<Thread, number>
}

/** `label`'s median ms per run in each place, the places alternating so that load hits them alike. */
async function cost(label: string, models: Record<Thread, LoadedModel>, inputs: RawTensor[], runs: number): Promise<Cost> {
  const ms = Object.fromEntries(THREADS.map((t) => [t, 0])) as Record<Thread, number>
  for (const t of THREADS) ms[t] = await msPerRun(models[t], inputs, runs)
  const added = (t: Thread) => `${signed(ms[t] - ms['agent-thread'])} (${(ms[t] / ms['agent-thread']).toFixed(2)}x)`
  console.log(`| ${label} | ${ms['agent-thread'].toFixed(3)} | ${ms['worker-thread'].toFixed(3)} | ${added('worker-thread')} | ${ms['child-process'].toFixed(3)} | ${added('child-process')} |`)
  return { label, ms }
}

async function main(): Promise<void> {
  console.log(`machine: ${machineLine()}\n`)
  console.log(`### Cost: median ms per run, runs back to back (${RUNS} for ppocr-cls, 40 for ppocr-det)\n`)
  console.log('| model, input | agent thread | worker thread | added | child process | added |')
  console.log('|---|---|---|---|---|---|')
  const cls = await loadEverywhere(bundledModelPath('ppocr-cls'))
  const costs: Cost[] = []
  for (const rows of [1, 8]) costs.push(await cost(`ppocr-cls, batch ${rows}`, cls, [image(rows)], RUNS))
  await releaseAll(cls)
  const det = await loadEverywhere(bundledModelPath('ppocr-det'))
  costs.push(await cost('ppocr-det, 1×3×544×480', det, [image(1, 544, 480)], 40))
  await releaseAll(det)

  const dir = mkdtempSync(join(tmpdir(), 'depinfer-bench-slow-'))
  const path = join(dir, 'slow.onnx')
  writeFileSync(path, slowModel())
  const slow = await loadEverywhere(path)
  // Iterations for a run of about a second here.
  await slow['agent-thread'].session!.run(slowModelInputs(10_000), [])
  const timed = performance.now()
  await slow['agent-thread'].session!.run(slowModelInputs(10_000), [])
  const iterations = Math.ceil((1_000 / (performance.now() - timed)) * 10_000)
  console.log(`\n### Gain: the agent's longest event-loop stall while one run of a generated model lasts about 1 s\n`)
  console.log('| session in | run ms | longest stall ms |')
  console.log('|---|---|---|')
  const stalls = Object.fromEntries(THREADS.map((t) => [t, 0])) as Record<Thread, number>
  for (const t of THREADS) {
    let runMs = 0
    stalls[t] = await longestStall(async () => {
      const started = performance.now()
      await slow[t].session!.run(slowModelInputs(iterations), [])
      runMs = performance.now() - started
    })
    console.log(`| ${t} | ${runMs.toFixed(0)} | ${stalls[t].toFixed(1)} |`)
  }

  await releaseAll(slow)

  // A run that would last ~5 s, due in 200 ms, in a process whose usual run is short (its grace
  // then is the least, 100 ms): stopped with its process.
  const process = (await load('child-process', path)).session!
  for (let i = 0; i < 20; i++) await process.run(slowModelInputs(10), [])
  const due = performance.now() + 200
  const stopped = await process.run(slowModelInputs(iterations * 5), [], { deadlineAt: due }).then(
    () => 'answered',
    (error: unknown) => (error instanceof DeadlineExceededError ? 'deadline' : String(error)),
  )
  const answeredAfter = performance.now() - due
  const reopenStarted = performance.now()
  await process.run(slowModelInputs(10), [])
  const reopenMs = performance.now() - reopenStarted
  console.log('\n### Stop: a child process run that would last ~5 s, due in 200 ms\n')
  console.log(`- answered ${stopped === 'deadline' ? 'deadline exceeded' : stopped} ${answeredAfter.toFixed(0)} ms after its deadline (the grace is 3× the usual run, 100 ms–5 s)`)
  console.log(`- the next run took ${reopenMs.toFixed(0)} ms: the model opened again in a new process`)
  await process.release()
  rmSync(dir, { recursive: true, force: true })

  const added = (c: Cost, t: Thread) => `${signed(c.ms[t] - c.ms['agent-thread'])} ms (${(c.ms[t] / c.ms['agent-thread']).toFixed(2)}x)`
  recordSummary(
    ...costs.map((c) => ({ bench: 'session-thread', metric: `cost per run off the agent's thread, ${c.label}: worker thread / child process`, value: `${added(c, 'worker-thread')} / ${added(c, 'child-process')}`, target: '', met: null })),
    {
      bench: 'session-thread',
      metric: "agent's longest stall during a ~1 s run: agent thread / worker thread / child process",
      value: `${stalls['agent-thread'].toFixed(0)} / ${stalls['worker-thread'].toFixed(1)} / ${stalls['child-process'].toFixed(1)} ms`,
      target: '',
      met: null,
    },
    { bench: 'session-thread', metric: 'child process: a ~5 s run due in 200 ms answered after its deadline; next run (reopened)', value: `${stopped === 'deadline' ? '' : `${stopped}, `}${answeredAfter.toFixed(0)} ms; ${reopenMs.toFixed(0)} ms`, target: '', met: null },
  )
}

await main()
