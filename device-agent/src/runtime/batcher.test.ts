/**
 * Dynamic batching against real onnxruntime sessions: jobs queued while the model is busy run
 * as one batch, and each job's answer equals running it alone.
 */
import * as ort from 'onnxruntime-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bytesOf, typedElements, type RawTensor } from '@depinfer/shared'
import { tinyClassifierModel } from '../../../test/helpers/onnx-model.js'
import { Batcher, DeadlineExceededError } from './batcher.js'
import { canStack, splitOutputs, stackInputs } from './batch-stacking.js'
import { runModel } from './run-job.js'

const rowsInput = (rows: number[][]): RawTensor => ({
  name: 'x',
  datatype: 'FP32',
  shape: [rows.length, 4],
  data: bytesOf(Float32Array.from(rows.flat())),
})
const floats = (t: RawTensor) => Array.from(typedElements('FP32', t.data) as Float32Array)

describe('batch stacking', () => {
  it('stacks inputs along dimension 0 and splits outputs back per job', () => {
    const a = { inputs: [rowsInput([[1, 2, 3, 4]])], outputs: [] }
    const b = { inputs: [rowsInput([[5, 6, 7, 8], [9, 10, 11, 12]])], outputs: [] }
    const [stacked] = stackInputs([a, b])
    expect(stacked!.shape).toEqual([3, 4])
    expect(floats(stacked!)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
    const out: RawTensor = { name: 'y', datatype: 'FP32', shape: [3, 2], data: bytesOf(Float32Array.from([1, 2, 3, 4, 5, 6])) }
    const [forA, forB] = splitOutputs([out], [1, 2])!
    expect(forA![0]!.shape).toEqual([1, 2])
    expect(floats(forA![0]!)).toEqual([1, 2])
    expect(forB![0]!.shape).toEqual([2, 2])
    expect(floats(forB![0]!)).toEqual([3, 4, 5, 6])
  })

  it('refuses to stack jobs that differ beyond dimension 0 or ask for other outputs', () => {
    const four = { inputs: [rowsInput([[1, 2, 3, 4]])], outputs: [] }
    const other: RawTensor = { name: 'x', datatype: 'FP32', shape: [1, 3], data: new Uint8Array(12) }
    expect(canStack(four, { inputs: [other], outputs: [] })).toBe(false)
    expect(canStack(four, { ...four, outputs: ['probs'] })).toBe(false)
    expect(canStack(four, { inputs: [{ ...rowsInput([[1, 2, 3, 4]]), datatype: 'FP64', data: new Uint8Array(32) }], outputs: [] })).toBe(false)
    expect(canStack(four, four)).toBe(true)
    // Jobs of different groups (callers of a downloaded model) never share a run.
    expect(canStack({ ...four, group: 'alice' }, { ...four, group: 'bob' })).toBe(false)
    expect(canStack({ ...four, group: 'alice' }, four)).toBe(false)
    expect(canStack({ ...four, group: 'alice' }, { ...four, group: 'alice' })).toBe(true)
  })

  it('will not split outputs that do not carry the batch in dimension 0', () => {
    const summary: RawTensor = { name: 's', datatype: 'FP32', shape: [1], data: new Uint8Array(4) }
    expect(splitOutputs([summary], [1, 2])).toBeUndefined()
  })
})

describe('Batcher with onnxruntime', () => {
  let session: ort.InferenceSession
  const runs: number[] = []
  const run = (inputs: RawTensor[], outputs: readonly string[]) => {
    runs.push(inputs[0]!.shape[0]!)
    return runModel(session, inputs, outputs)
  }

  beforeAll(async () => {
    session = await ort.InferenceSession.create(tinyClassifierModel().bytes)
  })
  afterAll(async () => {
    await session.release()
  })

  it('runs jobs that queue up while the model is busy as one batch, each answer equal to running it alone', async () => {
    runs.length = 0
    const batcher = new Batcher(run, { maxBatch: 8, maxQueueDelayMs: 0 })
    const jobs = Array.from({ length: 6 }, (_, i) => ({ inputs: [rowsInput([[i, 1, 2, 0.5], [2, i, 1, 0.25]])], outputs: [] }))
    const results = await Promise.all(jobs.map((job) => batcher.submit(job, 10_000)))
    // All six were queued before the first run started: 8 rows (4 jobs), then the other 2 jobs.
    expect(runs).toEqual([8, 4])
    expect(results.map((r) => r.batchJobs)).toEqual([4, 4, 4, 4, 2, 2])
    for (const [i, job] of jobs.entries()) {
      const alone = await runModel(session, job.inputs as RawTensor[], [])
      const got = floats(results[i]!.outputs[0]!)
      expect(results[i]!.outputs[0]!.shape).toEqual([2, 3])
      floats(alone[0]!).forEach((value, k) => expect(got[k]).toBeCloseTo(value, 6))
    }
  })

  it('waits up to maxQueueDelayMs for company, then runs what it has', async () => {
    runs.length = 0
    // A window far longer than the 5 ms between the two: a loaded machine (test files run two at
    // a time) once fired the 5 ms timer after a 20 ms window had closed.
    const batcher = new Batcher(run, { maxBatch: 8, maxQueueDelayMs: 250 })
    const first = batcher.submit({ inputs: [rowsInput([[1, 0, 0, 0]])], outputs: [] }, 10_000)
    await new Promise((resolve) => setTimeout(resolve, 5))
    const second = batcher.submit({ inputs: [rowsInput([[0, 1, 0, 0]])], outputs: [] }, 10_000)
    const [a, b] = await Promise.all([first, second])
    expect(runs).toEqual([2])
    expect(a.batchJobs).toBe(2)
    expect(b.queueMs).toBeLessThan(a.queueMs)
  })

  it('gives a job that upsets the batch its own error, and the others their answers', async () => {
    const batcher = new Batcher(run, { maxBatch: 8, maxQueueDelayMs: 10 })
    const good = batcher.submit({ inputs: [rowsInput([[1, 2, 3, 4]])], outputs: [] }, 10_000)
    const bad = batcher.submit({ inputs: [rowsInput([[1, 2, 3, 4]])], outputs: ['no-such-output'] }, 10_000)
    await expect(good).resolves.toMatchObject({ batchJobs: 1 })
    await expect(bad).rejects.toThrow(/no-such-output|invalid/i)
  })

  it('fails a job that waited past its deadline without running it', async () => {
    let release!: () => void
    const blocked = new Batcher(async (inputs, outputs) => {
      await new Promise<void>((resolve) => (release = resolve))
      return runModel(session, inputs, outputs)
    }, { maxBatch: 1, maxQueueDelayMs: 0 })
    const first = blocked.submit({ inputs: [rowsInput([[1, 2, 3, 4]])], outputs: [] }, 10_000)
    const late = blocked.submit({ inputs: [rowsInput([[1, 2, 3, 4]])], outputs: [] }, 5)
    await new Promise((resolve) => setTimeout(resolve, 20))
    release()
    await expect(first).resolves.toBeDefined()
    await expect(late).rejects.toBeInstanceOf(DeadlineExceededError)
  })
})
