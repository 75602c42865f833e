/**
 * Where model sessions run (ort.runIn), against the real onnxruntime-node: a session in a worker
 * thread answers exactly as one on the agent's thread, leaves that thread free while it runs, and
 * an 'auto' session moves there once a run proves long.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { bytesOf, type RawTensor } from '@depinfer/shared'
import { describe, expect, it } from 'vitest'
import { slowModel, slowModelInputs } from '../../../test/helpers/onnx-model.js'
import { temporaryDirectory } from '../../../test/helpers/temporary-directory.js'
import { AgentConfigSchema, type RunPlace } from '../config.js'
import { bundledModelPath } from '../models/bundled.js'
import { OrtRuntime } from './execution.js'
import { describe as describeModel, loadModel, type LoadedModel } from './loaded-model.js'
import { LONG_RUN_MS } from './model-session.js'
import { InvalidJobInputError } from './run-job.js'
import type { WorkerSession } from './worker-session.js'
import { REPO_ROOT } from '../../../scripts/local/paths.js'

const ortSettings = (runIn: RunPlace) =>
  AgentConfigSchema.parse({ deviceId: 'd', broker: { url: 'mqtt://x' }, models: [{ bundled: 'ppocr-cls' }], keyPath: '/k', ort: { runIn, executionProviders: ['cpu'] } }).ort

const slowModelPath = (() => {
  const path = join(temporaryDirectory('slow-model-'), 'slow.onnx')
  writeFileSync(path, slowModel())
  return path
})()

async function load(runIn: RunPlace, path: string, hooks: { log?: string[]; changed?: () => void } = {}): Promise<LoadedModel> {
  // The runtime's own lines (which execution providers) are not about the model.
  const log = (line: string) => (line.startsWith('model m') ? hooks.log?.push(line) : undefined)
  const runtime = new OrtRuntime(ortSettings(runIn), log, { ...(hooks.changed && { sessionsChanged: hooks.changed }) })
  const model = await loadModel({ name: 'm', version: '1', path, state: 'loading', maxBatch: 1 }, { runtime, maxBatch: 8, log })
  expect(model.error).toBeUndefined()
  return model
}

/** Rows of deterministic, non-constant pixels for the bundled classifier. */
function image(rows: number, width = 96): RawTensor {
  const values = Float32Array.from({ length: rows * 3 * 48 * width }, (_, i) => Math.sin(i * 0.37) * 0.8)
  return { name: 'x', datatype: 'FP32', shape: [rows, 3, 48, width], data: bytesOf(values) }
}

/**
 * Iterations of the slow model that take at least `ms` on this machine (measured, with a margin):
 * timed on the fastest of five ~5 ms probes. A single probe that the OS pauses for a few time
 * slices (a loaded machine) times the model several times slower than it is: the run meant to
 * last four times `ms` then ends sooner than `ms` (a queue of such runs stayed on the agent's
 * thread, under load).
 */
async function iterationsLasting(model: LoadedModel, ms: number): Promise<number> {
  const probe = 5_000
  await model.session!.run(slowModelInputs(probe), []) // warm
  let fastestMs = Number.POSITIVE_INFINITY
  for (let i = 0; i < 5; i++) {
    const started = performance.now()
    await model.session!.run(slowModelInputs(probe), [])
    fastestMs = Math.min(fastestMs, performance.now() - started)
  }
  return Math.ceil((4 * ms) / (fastestMs / probe))
}

/** How many times a 10 ms interval timer fires on this thread while `work` runs. */
async function timerTicksDuring(work: () => Promise<unknown>): Promise<number> {
  let ticks = 0
  const timer = setInterval(() => ticks++, 10)
  try {
    await work()
  } finally {
    clearInterval(timer)
  }
  return ticks
}

const liveThreads = () => readdirSync('/proc/self/task').length

describe('sessions in a worker thread', () => {
  it('answer exactly what a session on the agent\'s thread answers, and refuse the same inputs the same way', async () => {
    const agentThread = await load('agent-thread', bundledModelPath('ppocr-cls'))
    const worker = await load('worker-thread', bundledModelPath('ppocr-cls'))
    expect([agentThread.session!.thread, worker.session!.thread]).toEqual(['agent-thread', 'worker-thread'])
    expect(worker.inputs).toEqual(agentThread.inputs)
    expect(worker.outputs).toEqual(agentThread.outputs)
    // The batching probe ran in the worker too: the model batches there as well.
    expect(worker.maxBatch).toBe(8)

    const input = image(3)
    const [expected] = await agentThread.session!.run([input], [])
    const [actual] = await worker.session!.run([input], [])
    expect(actual).toMatchObject({ name: expected!.name, datatype: 'FP32', shape: [3, 2] })
    expect(Buffer.from(actual!.data).equals(Buffer.from(expected!.data))).toBe(true)
    // The caller's input is its own still (the agent hashes it after the run).
    expect(Buffer.from(input.data).equals(Buffer.from(image(3).data))).toBe(true)

    const wrongRank: RawTensor = { name: 'x', datatype: 'FP32', shape: [3 * 3 * 48, 96], data: input.data }
    const refusals = await Promise.all([agentThread, worker].map((model) => model.session!.run([wrongRank], []).catch((error: unknown) => error)))
    for (const refusal of refusals) expect(refusal).toBeInstanceOf(InvalidJobInputError)
    const [onAgentThread, inWorker] = refusals as InvalidJobInputError[]
    expect(inWorker!.message).toBe(onAgentThread!.message)
    expect(inWorker!.field).toBe('inputs')
    await Promise.all([agentThread, worker].map((model) => model.session!.release()))
  })

  it('leave the agent\'s thread free while a long run lasts, which a session on that thread does not', async () => {
    const agentThread = await load('agent-thread', slowModelPath)
    const worker = await load('worker-thread', slowModelPath)
    const iterations = await iterationsLasting(agentThread, 300)
    // At least 300 ms of run: ~30 ticks of a free thread, none of a held one (one may fire late, after the run).
    expect(await timerTicksDuring(() => agentThread.session!.run(slowModelInputs(iterations), []))).toBeLessThanOrEqual(1)
    expect(await timerTicksDuring(() => worker.session!.run(slowModelInputs(iterations), []))).toBeGreaterThanOrEqual(10)
    await Promise.all([agentThread, worker].map((model) => model.session!.release()))
  })

  it.skipIf(!existsSync('/proc/self/task'))('end their thread when released, and refuse runs after that', async () => {
    const before = liveThreads()
    const worker = await load('worker-thread', bundledModelPath('ppocr-cls'))
    expect(liveThreads()).toBeGreaterThan(before)
    await worker.session!.release()
    expect(liveThreads()).toBe(before)
    await expect(worker.session!.run([image(1)], [])).rejects.toThrow('model m: its session was released')
  })
})

describe('a worker thread that ends unasked', () => {
  it('fails its model: no longer ready, says why, refuses every run, and the status is told', async () => {
    const log: string[] = []
    let changes = 0
    const model = await load('worker-thread', bundledModelPath('ppocr-cls'), { log, changed: () => changes++ })
    expect(model.state).toBe('ready')
    await model.session!.run([image(8)], [])
    // Between runs: ending a thread inside onnxruntime's native run may take the process with it.
    await (model.session as WorkerSession).crashForTest()
    expect(model).toMatchObject({ state: 'failed', error: expect.stringMatching(/^model m: its worker thread exited \(code 1\)$/) })
    expect(describeModel(model)).toMatchObject({ state: 'failed', error: expect.stringMatching(/its worker thread exited/) })
    expect(changes).toBe(1)
    expect(log).toEqual([expect.stringMatching(/^model m v1 failed: model m: its worker thread exited/)])
    await expect(model.session!.run([image(1)], [])).rejects.toThrow('its worker thread exited')
    await model.session!.release() // and a release after that returns
  })
})

describe('the agent process with sessions in worker threads', () => {
  /** Runs a TypeScript module in a fresh Node process with tsx; its outcome within 30 s. */
  const runModule = (source: string) => {
    const path = join(temporaryDirectory('worker-lifetime-'), 'main.mts')
    writeFileSync(path, source)
    return spawnSync(process.execPath, ['--import', 'tsx', path], { cwd: REPO_ROOT, timeout: 30_000, encoding: 'utf8' })
  }
  const opening = `
    import { readFileSync } from 'node:fs'
    import { WorkerSession } from ${JSON.stringify(join(REPO_ROOT, 'device-agent/src/runtime/worker-session.ts'))}
    const session = await WorkerSession.open(readFileSync(${JSON.stringify(bundledModelPath('ppocr-cls'))}), {}, 'm', () => console.log('lost'))
    console.log('opened')`

  it('ends by itself with an idle session left open, and not before a pending run is answered', () => {
    const idle = runModule(opening)
    expect([idle.signal, idle.status, idle.stdout]).toEqual([null, 0, 'opened\n'])
    const pending = runModule(`${opening}
      const x = { name: 'x', datatype: 'FP32', shape: [1, 3, 48, 96], data: new Uint8Array(3 * 48 * 96 * 4) }
      session.run([x], []).then((outputs) => console.log('ran', outputs[0].shape.join('x')))`)
    expect([pending.signal, pending.status, pending.stdout]).toEqual([null, 0, 'opened\nran 1x2\n'])
  })
})

describe("ort.runIn 'auto'", () => {
  it('keeps short runs on the agent\'s thread and moves the session to a worker thread after a long one', async () => {
    const log: string[] = []
    let moves = 0
    const model = await load('auto', slowModelPath, { log, changed: () => moves++ })
    const session = model.session!
    // Short runs stay, also one that waited behind other work on the thread (not the run's time).
    for (let i = 0; i < 20; i++) await session.run(slowModelInputs(100), [])
    const queued = session.run(slowModelInputs(100), [])
    const busyUntil = performance.now() + 2 * LONG_RUN_MS
    while (performance.now() < busyUntil);
    await queued
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(session.thread).toBe('agent-thread')
    expect(log).toEqual([])

    const iterations = await iterationsLasting(model, LONG_RUN_MS)
    const [onAgentThread] = await session.run(slowModelInputs(iterations), [])
    await expect.poll(() => session.thread, { timeout: 10_000 }).toBe('worker-thread')
    expect(moves).toBe(1)
    expect(log).toEqual([
      expect.stringMatching(/^model m: a run held the agent's thread for \d+ ms; moving its session to a worker thread$/),
      'model m runs in a worker thread',
    ])
    // The same answer from the worker, and the agent's thread is now free during the run.
    let inWorker: RawTensor[] = []
    const ticks = await timerTicksDuring(async () => (inWorker = await session.run(slowModelInputs(iterations), [])))
    expect(ticks).toBeGreaterThanOrEqual(10)
    expect(Buffer.from(inWorker[0]!.data).equals(Buffer.from(onAgentThread!.data))).toBe(true)
    await session.release()
    await expect(session.run(slowModelInputs(1), [])).rejects.toThrow('released')
  })

  it('moves before a run whose input is large enough to be long at the pace of the runs before it, so one caller cannot hold the thread', async () => {
    const log: string[] = []
    const model = await load('auto', bundledModelPath('ppocr-cls'), { log })
    const session = model.session!
    for (let i = 0; i < 5; i++) await session.run([image(1)], [])
    expect(session.thread).toBe('agent-thread')
    // ~700 times the elements of the runs so far: long at their pace, on this machine or any.
    const huge = image(16, 4_096)
    let answer: RawTensor[] = []
    const ticks = await timerTicksDuring(async () => (answer = await session.run([huge], [])))
    expect(session.thread).toBe('worker-thread')
    expect(log[0]).toMatch(/^model m: a run of this input is expected to hold the agent's thread for ~\d+ ms; moving its session to a worker thread$/)
    // The agent's thread stayed free through the run (a 10 ms timer kept firing).
    expect(ticks).toBeGreaterThanOrEqual(5)
    const onAgentThread = await load('agent-thread', bundledModelPath('ppocr-cls'))
    const [expected] = await onAgentThread.session!.run([huge], [])
    expect(Buffer.from(answer[0]!.data).equals(Buffer.from(expected!.data))).toBe(true)
    await Promise.all([session.release(), onAgentThread.session!.release()])
  })

  it('moves under a steady queue too: the run after the long one waits for the worker instead of holding the thread again', async () => {
    const model = await load('auto', slowModelPath)
    const session = model.session!
    await session.run(slowModelInputs(100), [])
    const iterations = await iterationsLasting(model, LONG_RUN_MS)
    // Back to back, as the batcher runs a queue: nothing between the runs but the answer.
    let ticks = 0
    await session.run(slowModelInputs(iterations), []).then(() => timerTicksDuring(() => session.run(slowModelInputs(iterations), [])).then((n) => (ticks = n)))
    expect(session.thread).toBe('worker-thread')
    expect(ticks).toBeGreaterThanOrEqual(10)
    await session.release()
  })

  it('stays on the agent\'s thread when the file changed on disk since it was loaded (the worker opens only the verified bytes)', async () => {
    const path = join(temporaryDirectory('slow-model-changed-'), 'slow.onnx')
    writeFileSync(path, slowModel())
    const log: string[] = []
    const model = await load('auto', path, { log })
    const session = model.session!
    const iterations = await iterationsLasting(model, LONG_RUN_MS)
    writeFileSync(path, Buffer.concat([slowModel(), Buffer.from([0])]))
    await session.run(slowModelInputs(iterations), [])
    await expect.poll(() => log.length, { timeout: 10_000 }).toBe(2)
    expect(log[1]).toMatch(/^model m stays on the agent's thread: its worker thread could not open the session \(.*sha256/)
    expect(session.thread).toBe('agent-thread')
    // It still answers, where it was.
    const [output] = await session.run(slowModelInputs(10), [])
    expect(output!.shape).toEqual([2, 64])
    await session.release()
  })
})
