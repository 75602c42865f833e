/**
 * Where model sessions run (ort.runIn), against the real onnxruntime-node: a session in a worker
 * thread answers exactly as one on the agent's thread, leaves that thread free while it runs, and
 * an 'auto' session moves there once a run proves long.
 */
import { existsSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { bytesOf, type RawTensor } from '@depinfer/shared'
import { describe, expect, it } from 'vitest'
import { slowModel } from '../../../test/helpers/onnx-model.js'
import { temporaryDirectory } from '../../../test/helpers/temporary-directory.js'
import { AgentConfigSchema, type RunPlace } from '../config.js'
import { bundledModelPath } from '../models/bundled.js'
import { OrtRuntime } from './execution.js'
import { loadModel, type LoadedModel } from './loaded-model.js'
import { LONG_RUN_MS } from './model-session.js'
import { InvalidJobInputError } from './run-job.js'

const ortSettings = (runIn: RunPlace) =>
  AgentConfigSchema.parse({ deviceId: 'd', broker: { url: 'mqtt://x' }, models: [{ bundled: 'ppocr-cls' }], keyPath: '/k', ort: { runIn, executionProviders: ['cpu'] } }).ort

const slowModelPath = (() => {
  const path = join(temporaryDirectory('slow-model-'), 'slow.onnx')
  writeFileSync(path, slowModel())
  return path
})()

async function load(runIn: RunPlace, path: string, hooks: { log?: string[]; moved?: () => void } = {}): Promise<LoadedModel> {
  // The runtime's own lines (which execution providers) are not about the model.
  const log = (line: string) => (line.startsWith('model m') ? hooks.log?.push(line) : undefined)
  const runtime = new OrtRuntime(ortSettings(runIn), log, { ...(hooks.moved && { sessionMoved: hooks.moved }) })
  const model = await loadModel({ name: 'm', version: '1', path, state: 'loading', maxBatch: 1 }, { runtime, maxBatch: 8, log })
  expect(model.error).toBeUndefined()
  return model
}

/** Rows of deterministic, non-constant pixels for the bundled classifier. */
function image(rows: number, width = 96): RawTensor {
  const values = Float32Array.from({ length: rows * 3 * 48 * width }, (_, i) => Math.sin(i * 0.37) * 0.8)
  return { name: 'x', datatype: 'FP32', shape: [rows, 3, 48, width], data: bytesOf(values) }
}

/** The slow model's inputs: two rows, iterated `iterations` times. */
function slowInputs(iterations: number): RawTensor[] {
  const x = Float32Array.from({ length: 2 * 64 }, (_, i) => Math.cos(i * 0.7))
  return [
    { name: 'x', datatype: 'FP32', shape: [2, 64], data: bytesOf(x) },
    { name: 'iterations', datatype: 'INT64', shape: [], data: bytesOf(BigInt64Array.of(BigInt(iterations))) },
  ]
}

/** Iterations of the slow model that take at least `ms` on this machine (measured, with a margin). */
async function iterationsLasting(model: LoadedModel, ms: number): Promise<number> {
  const probe = 20_000
  const started = performance.now()
  await model.session!.run(slowInputs(probe), [])
  const perIteration = (performance.now() - started) / probe
  return Math.ceil((2 * ms) / perIteration)
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
    expect(await timerTicksDuring(() => agentThread.session!.run(slowInputs(iterations), []))).toBeLessThanOrEqual(1)
    expect(await timerTicksDuring(() => worker.session!.run(slowInputs(iterations), []))).toBeGreaterThanOrEqual(10)
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

describe("ort.runIn 'auto'", () => {
  it('keeps short runs on the agent\'s thread and moves the session to a worker thread after a long one', async () => {
    const log: string[] = []
    let moves = 0
    const model = await load('auto', slowModelPath, { log, moved: () => moves++ })
    const session = model.session!
    // The model's load ran it (the batching probe), and these runs are short: it stays.
    for (let i = 0; i < 20; i++) await session.run(slowInputs(100), [])
    expect(session.thread).toBe('agent-thread')

    const iterations = await iterationsLasting(model, LONG_RUN_MS)
    const [onAgentThread] = await session.run(slowInputs(iterations), [])
    await expect.poll(() => session.thread, { timeout: 10_000 }).toBe('worker-thread')
    expect(moves).toBe(1)
    expect(log).toEqual([
      expect.stringMatching(/^model m: a run held the agent's thread for \d+ ms; moving its session to a worker thread$/),
      'model m runs in a worker thread',
    ])
    // The same answer from the worker, and the agent's thread is now free during the run.
    let inWorker: RawTensor[] = []
    const ticks = await timerTicksDuring(async () => (inWorker = await session.run(slowInputs(iterations), [])))
    expect(ticks).toBeGreaterThanOrEqual(10)
    expect(Buffer.from(inWorker[0]!.data).equals(Buffer.from(onAgentThread!.data))).toBe(true)
    await session.release()
    await expect(session.run(slowInputs(1), [])).rejects.toThrow('released')
  })

  it('stays on the agent\'s thread when the file changed on disk since it was loaded (the worker opens only the verified bytes)', async () => {
    const path = join(temporaryDirectory('slow-model-changed-'), 'slow.onnx')
    writeFileSync(path, slowModel())
    const log: string[] = []
    const model = await load('auto', path, { log })
    const session = model.session!
    const iterations = await iterationsLasting(model, LONG_RUN_MS)
    writeFileSync(path, Buffer.concat([slowModel(), Buffer.from([0])]))
    await session.run(slowInputs(iterations), [])
    await expect.poll(() => log.length, { timeout: 10_000 }).toBe(2)
    expect(log[1]).toMatch(/^model m stays on the agent's thread: its worker thread could not open the session \(.*sha256/)
    expect(session.thread).toBe('agent-thread')
    // It still answers, where it was.
    const [output] = await session.run(slowInputs(10), [])
    expect(output!.shape).toEqual([2, 64])
    await session.release()
  })
})
