/**
 * Execution tuning against the real onnxruntime-node on the bundled PaddleOCR classifier: the
 * configured session options reach the session the agent serves from, execution providers fall
 * back to CPU, and the device status says what was chosen.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { bytesOf, DeviceStatusSchema, typedElements, type RawTensor } from '@depinfer/shared'
import * as ort from 'onnxruntime-node'
import { describe, expect, it } from 'vitest'
import { AgentConfigSchema, GRAPH_OPTIMIZATION_LEVELS, type ExecutionProviderName } from '../config.js'
import { deviceStatus } from '../device-status.js'
import { bundledModelPath } from '../models/bundled.js'
import { OrtRuntime, preferredProviders, sessionOptions, spinningEntries, type CreateSession, type OrtSettings } from './execution.js'
import { loadModel, type LoadedModel } from './loaded-model.js'
import { temporaryDirectory } from '../../../test/helpers/temporary-directory.js'

const CLS = bundledModelPath('ppocr-cls')
/** The parsed defaults, with overrides: exactly what the agent gets from its config. */
const settingsWith = (ort: Partial<OrtSettings>): OrtSettings =>
  AgentConfigSchema.parse({ deviceId: 'd', broker: { url: 'mqtt://x' }, models: [{ bundled: 'ppocr-cls' }], keyPath: '/k', ort }).ort
const clsModel = (): LoadedModel => ({ name: 'ppocr-cls', version: '1', path: CLS, state: 'loading', maxBatch: 1 })

async function load(settings: OrtSettings, create?: CreateSession, log: (message: string) => void = () => {}) {
  const runtime = new OrtRuntime(settings, log, { create })
  const model = await loadModel(clsModel(), { runtime, maxBatch: 8 })
  expect(model.error).toBeUndefined()
  return { runtime, model }
}

/** Deterministic, non-constant pixels, so every layer of the network matters. */
function input(rows: number, width: number): RawTensor {
  const values = Float32Array.from({ length: rows * 3 * 48 * width }, (_, i) => Math.sin(i * 0.37) * 0.8)
  return { name: 'x', datatype: 'FP32', shape: [rows, 3, 48, width], data: bytesOf(values) }
}

/** How many nodes of `opType` an ONNX file's graph has: NodeProto.op_type is field 4 (tag 0x22). */
function countOps(model: Uint8Array, opType: string): number {
  const needle = Buffer.from([0x22, opType.length, ...Buffer.from(opType)])
  let count = 0
  for (let at = Buffer.from(model).indexOf(needle); at !== -1; at = Buffer.from(model).indexOf(needle, at + 1)) count++
  return count
}

// A host with an NVIDIA GPU (desktop or Jetson) may really have CUDA: the fallback is then not
// what happens, so these cases only run where it must.
const nvidiaHost = existsSync('/dev/nvidia0') || existsSync('/dev/nvhost-ctrl')

describe('execution provider preference', () => {
  it('resolves "auto" to TensorRT then CUDA where the build lists them, and always ends with CPU', () => {
    expect(preferredProviders('auto', ['cpu', 'webgpu', 'cuda', 'tensorrt'], true)).toEqual(['tensorrt', 'cuda', 'cpu'])
    expect(preferredProviders('auto', ['cpu', 'webgpu', 'cuda', 'tensorrt'], false)).toEqual(['cpu'])
    expect(preferredProviders('auto', ['cpu'], true)).toEqual(['cpu'])
    expect(preferredProviders(['cuda'], ['cpu'], false)).toEqual(['cuda', 'cpu'])
    expect(preferredProviders(['webgpu', 'cpu'], ['cpu', 'webgpu'], false)).toEqual(['webgpu', 'cpu'])
  })

  it('leaves a thread count of 0 to onnxruntime, keeps its threads from spinning unless allowed, and passes every other option under its onnxruntime name', () => {
    const spinning = (allowed: '0' | '1') => ({ session: { intra_op: { allow_spinning: allowed }, inter_op: { allow_spinning: allowed } } })
    expect(sessionOptions(settingsWith({}), ['cpu'])).toEqual({ executionProviders: ['cpu'], graphOptimizationLevel: 'all', executionMode: 'sequential', extra: spinning('0') })
    expect(
      sessionOptions(settingsWith({ intraOpThreads: 3, interOpThreads: 2, allowSpinning: true, executionMode: 'parallel', graphOptimizationLevel: 'basic' }), ['cuda', 'cpu']),
    ).toEqual({
      executionProviders: ['cuda', 'cpu'],
      graphOptimizationLevel: 'basic',
      executionMode: 'parallel',
      intraOpNumThreads: 3,
      interOpNumThreads: 2,
      extra: spinning('1'),
    })
  })

  it.skipIf(nvidiaHost)('falls back from an unavailable CUDA to CPU, says why once, and reports cpu in the status', async () => {
    const lines: string[] = []
    const runtime = new OrtRuntime(settingsWith({ executionProviders: ['cuda', 'cpu'] }), (line) => lines.push(line))
    const models = await Promise.all([clsModel(), { ...clsModel(), name: 'cls-again' }].map((model) => loadModel(model, { runtime, maxBatch: 8 })))
    expect(models.map((model) => [model.state, model.executionProvider])).toEqual([['ready', 'cpu'], ['ready', 'cpu']])
    // npm's linux/x64 build lists cuda without its libraries; other builds do not list it at all.
    const reason = /Failed to load shared library|not in this onnxruntime-node build/
    expect(lines.filter((line) => line.includes('cuda'))).toEqual([expect.stringMatching(reason)])
    const status = DeviceStatusSchema.parse(deviceStatus('d', models, true, undefined, runtime.status()))
    expect(status.runtime).toMatchObject({
      executionProviders: ['cpu'],
      skippedExecutionProviders: [{ name: 'cuda', reason: expect.stringMatching(reason) }],
    })
    expect(status.models.map((model) => model.executionProvider)).toEqual(['cpu', 'cpu'])
    await Promise.all(models.map((model) => model.session?.release()))
  })

  it.skipIf(process.platform === 'darwin')('skips an EP this build does not have without trying it (onnxruntime would drop it silently)', async () => {
    const tried: ExecutionProviderName[][] = []
    const create: CreateSession = (model, options) => {
      tried.push(options.executionProviders as ExecutionProviderName[])
      return ort.InferenceSession.create(model, options)
    }
    const { runtime, model } = await load(settingsWith({ executionProviders: ['coreml', 'cpu'] }), create)
    expect(tried).toEqual([['cpu']])
    expect(model.executionProvider).toBe('cpu')
    expect(runtime.status().skippedExecutionProviders).toEqual([{ name: 'coreml', reason: expect.stringMatching(/^not in this onnxruntime-node build \(it has cpu/) }])
    await model.session?.release()
  })

  it('falls back per model when an EP that works on the probe cannot create this model\'s session', async () => {
    // No EP but CPU works on this host, so the seam plays a CUDA that is present but runs out
    // of memory on the real model: the probe (a one-node model) runs on CPU instead.
    const lines: string[] = []
    const tried: string[][] = []
    const create: CreateSession = async (model, options) => {
      const providers = options.executionProviders as string[]
      tried.push(providers)
      if (providers[0] !== 'cuda') return ort.InferenceSession.create(model, options)
      if (model.byteLength < 1000) return ort.InferenceSession.create(model, { ...options, executionProviders: ['cpu'] })
      throw new Error('CUDA failure 2: out of memory')
    }
    const { runtime, model } = await load(settingsWith({ executionProviders: ['cuda', 'cpu'] }), create, (line) => lines.push(line))
    expect(tried).toEqual([['cuda'], ['cuda', 'cpu'], ['cpu']])
    expect(model.executionProvider).toBe('cpu')
    expect(runtime.status().executionProviders).toEqual(['cuda', 'cpu'])
    expect(lines).toContain('model ppocr-cls: cuda could not create its session (CUDA failure 2: out of memory); trying cpu')
    await model.session?.release()
  })
})

describe('session options reach the session the agent serves from', () => {
  // onnxruntime has no getter for a session's options. Two real effects show them instead: its
  // worker threads (Linux lists a process's threads in /proc/self/task) and the optimized graph,
  // which onnxruntime writes out when given optimizedModelFilePath. That path is added by a
  // pass-through CreateSession seam: the agent's own options, to onnxruntime's own create.
  const liveThreads = () => readdirSync('/proc/self/task').length

  it.skipIf(!existsSync('/proc/self/task'))('starts the configured intra-op and inter-op threads', async () => {
    const extraThreads = async (ort: Partial<OrtSettings>) => {
      const before = liveThreads()
      const { model } = await load(settingsWith({ executionProviders: ['cpu'], ...ort }))
      const during = liveThreads()
      await model.session!.release()
      return during - before
    }
    await extraThreads({ intraOpThreads: 1 }) // warms up libuv's pool (readFile) so it is not counted below
    // onnxruntime's pools count the calling thread: n threads start n − 1 workers.
    expect(await extraThreads({ intraOpThreads: 1 })).toBe(0)
    expect(await extraThreads({ intraOpThreads: 4 })).toBe(3)
    expect(await extraThreads({ intraOpThreads: 1, interOpThreads: 3, executionMode: 'parallel' })).toBe(2)
    // Inter-op threads serve only the parallel executor: sequential mode starts none.
    expect(await extraThreads({ intraOpThreads: 1, interOpThreads: 3, executionMode: 'sequential' })).toBe(0)
  })

  it('optimizes the graph at the configured level, and the status reports the options', async () => {
    const dir = temporaryDirectory('ort-optimized-')
    const original = readFileSync(CLS)
    const graphs = new Map<string, Buffer>()
    for (const level of ['disabled', 'basic', 'extended', 'all'] as const) {
      const path = join(dir, `${level}.onnx`)
      const used: ort.InferenceSession.SessionOptions[] = []
      const create: CreateSession = (model, options) => {
        used.push(options)
        return ort.InferenceSession.create(model, { ...options, optimizedModelFilePath: path })
      }
      const settings = settingsWith({ executionProviders: ['cpu'], graphOptimizationLevel: level, intraOpThreads: 2 })
      const { runtime, model } = await load(settings, create)
      await model.session!.release()
      expect(used).toEqual([{ executionProviders: ['cpu'], graphOptimizationLevel: level, executionMode: 'sequential', intraOpNumThreads: 2, extra: spinningEntries(false) }])
      expect(runtime.status()).toMatchObject({
        executionProviders: ['cpu'],
        threads: { intraOp: 2, interOp: 0, allowSpinning: false },
        graphOptimizationLevel: level,
        executionMode: 'sequential',
      })
      graphs.set(level, readFileSync(path))
    }
    // disabled: the graph as exported (PaddleOCR keeps its BatchNormalization nodes)
    expect(countOps(original, 'BatchNormalization')).toBeGreaterThan(0)
    expect(countOps(graphs.get('disabled')!, 'BatchNormalization')).toBe(countOps(original, 'BatchNormalization'))
    // basic: constant folding folds them into the convolutions, no fused operators yet
    expect(countOps(graphs.get('basic')!, 'BatchNormalization')).toBe(0)
    expect(countOps(graphs.get('basic')!, 'FusedConv')).toBe(0)
    // extended: Conv + activation become onnxruntime's FusedConv
    expect(countOps(graphs.get('extended')!, 'FusedConv')).toBeGreaterThan(0)
    // all adds layout transforms that depend on the CPU (NCHWc on x64), so only check it optimized
    expect(countOps(graphs.get('all')!, 'BatchNormalization')).toBe(0)
  })

  it('computes the same outputs at every optimization level as onnxruntime called directly', async () => {
    const x = input(2, 160)
    const direct = await ort.InferenceSession.create(CLS)
    const expected = (await direct.run({ x: new ort.Tensor('float32', typedElements('FP32', x.data) as Float32Array, x.shape) }))['softmax_0.tmp_0']!
    await direct.release()
    const reference = Array.from(expected.data as Float32Array)
    expect(reference).toHaveLength(4)
    for (const level of GRAPH_OPTIMIZATION_LEVELS) {
      const { model } = await load(settingsWith({ executionProviders: ['cpu'], graphOptimizationLevel: level }))
      const [output] = await model.session!.run([x], [])
      await model.session!.release()
      expect(output).toMatchObject({ name: 'softmax_0.tmp_0', datatype: 'FP32', shape: [2, 2] })
      const values = Array.from(typedElements('FP32', output!.data) as Float32Array)
      values.forEach((value, i) => expect(value, `${level}[${i}]`).toBeCloseTo(reference[i]!, 5))
    }
  })
})
