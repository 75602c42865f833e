/**
 * Loading a model file into the agent: one self-contained file only (no external data), and
 * dynamic batching only where the model answers each row as it would alone — with the real
 * onnxruntime on generated models and the bundled ones.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as ort from 'onnxruntime-node'
import { describe, expect, it } from 'vitest'
import { buildModel, rawData, type ModelSpec } from '../../../test/helpers/onnx-model.js'
import { temporaryDirectory } from '../../../test/helpers/temporary-directory.js'
import { AgentConfigSchema } from '../config.js'
import { BUNDLED_MODELS, bundledModelPath, type BundledModelName } from '../models/bundled.js'
import { OrtRuntime } from './execution.js'
import { loadModel, type LoadedModel } from './loaded-model.js'

const dir = temporaryDirectory('loaded-model-')
const ortSettings = AgentConfigSchema.parse({ deviceId: 'd', broker: { url: 'mqtt://x' }, models: [{ bundled: 'ppocr-cls' }], keyPath: '/k' }).ort

async function load(name: string, path: string) {
  const lines: string[] = []
  const model: LoadedModel = { name, version: '1', path, state: 'loading', maxBatch: 1 }
  await loadModel(model, { runtime: new OrtRuntime(ortSettings, () => {}), maxBatch: 8, log: (line) => lines.push(line) })
  await model.session?.release()
  return { model, lines }
}
const file = (name: string, spec: ModelSpec) => {
  const path = join(dir, `${name}.onnx`)
  writeFileSync(path, buildModel(spec))
  return path
}
/** x [N,3] FP32 → y = op(x), both with a dynamic first dimension. */
const rowModel = (name: string, nodes: ModelSpec['nodes'], initializers: ModelSpec['initializers'] = []) =>
  file(name, {
    inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 3] }],
    outputs: [{ name: 'y', datatype: 'FP32', shape: ['N', 3] }],
    nodes,
    initializers,
  })

describe('loadModel', () => {
  it('refuses a model with a tensor in an external data file, and never opens it', async () => {
    const path = file('external', {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [1] }, { name: 'leak', datatype: 'UINT8', shape: [4] }],
      initializers: [{ name: 'W', datatype: 'UINT8', dims: [4], data: new Uint8Array(4), externalLocation: 'package.json' }],
      nodes: [{ opType: 'Identity', inputs: ['x'], outputs: ['y'] }, { opType: 'Identity', inputs: ['W'], outputs: ['leak'] }],
    })
    const { model } = await load('external', path)
    expect(model.state).toBe('failed')
    expect(model.error).toMatch(/external data files \("W"\)/)
    expect(model.session).toBeUndefined()
  })

  it('refuses a model with a tensor of unknown rank, as publishing does, rather than advertise it as a scalar', async () => {
    for (const [which, unknown] of [['input', { inputs: true }], ['output', { outputs: true }]] as const) {
      const path = file(`unknown-rank-${which}`, {
        inputs: [{ name: 'r', datatype: 'FP32', shape: [], ...('inputs' in unknown && { unknownRank: true }) }],
        outputs: [{ name: 'r_out', datatype: 'FP32', shape: [], ...('outputs' in unknown && { unknownRank: true }) }],
        nodes: [{ opType: 'Identity', inputs: ['r'], outputs: ['r_out'] }],
      })
      const { model } = await load(which, path)
      expect(model.state).toBe('failed')
      expect(model.error).toBe(`${which} "${which === 'input' ? 'r' : 'r_out'}" cannot be served: no shape (unknown rank)`)
    }
    // A real scalar is served as one.
    const scalar = file('scalar', {
      inputs: [{ name: 'r', datatype: 'FP32', shape: [] }],
      outputs: [{ name: 'r_out', datatype: 'FP32', shape: [] }],
      nodes: [{ opType: 'Identity', inputs: ['r'], outputs: ['r_out'] }],
    })
    const { model } = await load('scalar', scalar)
    expect(model).toMatchObject({ state: 'ready', inputs: [{ name: 'r', datatype: 'FP32', shape: [] }], outputs: [{ name: 'r_out', datatype: 'FP32', shape: [] }] })
  })

  it('advertises the shapes the file declares, also where onnxruntime\'s inference contradicts them (as the registry lists them)', async () => {
    // y = Identity(x[n]) declared [n, m]: onnxruntime's metadata turns y into [].
    const path = file('contradicted', {
      inputs: [{ name: 'x', datatype: 'FP32', shape: ['n'] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: ['n', 'm'] }],
      nodes: [{ opType: 'Identity', inputs: ['x'], outputs: ['y'] }],
    })
    const { model } = await load('contradicted', path)
    expect(model).toMatchObject({ state: 'ready', inputs: [{ name: 'x', shape: [-1] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, -1] }] })
  })

  it('batches a model whose rows are independent', async () => {
    const { model, lines } = await load('relu', rowModel('relu', [{ opType: 'Relu', inputs: ['x'], outputs: ['y'] }]))
    expect(model).toMatchObject({ state: 'ready', maxBatch: 8 })
    expect(lines).toEqual([])
  })

  it.each(Object.keys(BUNDLED_MODELS) as BundledModelName[])('batches the bundled %s', async (name) => {
    const { model, lines } = await load(name, bundledModelPath(name))
    expect(lines).toEqual([])
    expect(model).toMatchObject({ state: 'ready', maxBatch: 8 })
  })

  it.each([
    ['a running sum down the rows (CumSum, axis 0)', 'cumsum', [{ opType: 'CumSum', inputs: ['x', 'axis'], outputs: ['y'] }], [{ name: 'axis', datatype: 'INT64' as const, dims: [], data: rawData(BigInt64Array.of(0n)) }]],
    ['a softmax across the rows', 'softmax0', [{ opType: 'Softmax', inputs: ['x'], outputs: ['y'], attributes: { axis: { int: 0 } } }], []],
    ['rows minus their mean over the batch', 'centre', [
      { opType: 'ReduceMean', inputs: ['x'], outputs: ['m'], attributes: { axes: { ints: [0] }, keepdims: { int: 1 } } },
      { opType: 'Sub', inputs: ['x', 'm'], outputs: ['y'] },
    ], []],
    ['rows divided by the largest value of the whole batch', 'batch-max', [
      { opType: 'ReduceMax', inputs: ['x'], outputs: ['m'], attributes: { keepdims: { int: 1 } } },
      { opType: 'Div', inputs: ['x', 'm'], outputs: ['y'] },
    ], []],
    // The outputs are all about 1e-5: a fixed absolute tolerance of 1e-4 took any difference for noise.
    ['tiny outputs that depend on the batch\'s mean', 'tiny-centre', [
      { opType: 'ReduceMean', inputs: ['x'], outputs: ['m'], attributes: { axes: { ints: [0] }, keepdims: { int: 1 } } },
      { opType: 'Sub', inputs: ['x', 'm'], outputs: ['d'] },
      { opType: 'Mul', inputs: ['d', 'small'], outputs: ['y'] },
    ], [{ name: 'small', datatype: 'FP32' as const, dims: [], data: rawData(Float32Array.of(1e-5)) }]],
    // Alone, a row's spread over the batch is 0 and it divides into ±Infinity; batched, finite.
    ['rows divided by the batch\'s standard deviation', 'batch-std', [
      { opType: 'ReduceMean', inputs: ['x'], outputs: ['m'], attributes: { axes: { ints: [0] }, keepdims: { int: 1 } } },
      { opType: 'Sub', inputs: ['x', 'm'], outputs: ['d'] },
      { opType: 'Mul', inputs: ['d', 'd'], outputs: ['d2'] },
      { opType: 'ReduceMean', inputs: ['d2'], outputs: ['v'], attributes: { axes: { ints: [0] }, keepdims: { int: 1 } } },
      { opType: 'Sqrt', inputs: ['v'], outputs: ['s'] },
      { opType: 'Div', inputs: ['x', 's'], outputs: ['y'] },
    ], []],
  ])('runs unbatched, and says why, a model whose rows depend on each other: %s', async (_case, name, nodes, initializers) => {
    const { model, lines } = await load(name, rowModel(name, nodes, initializers))
    expect(model).toMatchObject({ state: 'ready', maxBatch: 1 })
    expect(lines).toEqual([expect.stringMatching(new RegExp(`model ${name} v1 runs unbatched: output y of a row depends on the other rows`))])
  })

  // What a dynamic int8 model does before each MatMul: one scale for the whole batch tensor.
  const dynamicInt8 = [
    { opType: 'DynamicQuantizeLinear', inputs: ['x'], outputs: ['q', 'scale', 'zero'] },
    { opType: 'DequantizeLinear', inputs: ['q', 'scale', 'zero'], outputs: ['d'] },
  ]
  it('runs unbatched, from its operators, a model that quantizes activations at run time, also where no output shows it on the probe\'s rows', async () => {
    // A threshold on the dequantized value (as a label is, an ArgMax): on the probe's rows (within
    // ±100) it is false alone and batched alike, yet 170 alone is over 165, and batched with
    // -10000 it is not (the scale of [-10000, 170] rounds it to 159.5).
    const path = file('dynamic-int8-threshold', {
      inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 1] }],
      outputs: [{ name: 'over', datatype: 'BOOL', shape: ['N', 1] }],
      nodes: [...dynamicInt8, { opType: 'Greater', inputs: ['d', 'limit'], outputs: ['over'] }],
      initializers: [{ name: 'limit', datatype: 'FP32', dims: [], data: rawData(Float32Array.of(165)) }],
    })
    const threshold = await load('dynamic-int8-threshold', path)
    expect(threshold.model).toMatchObject({ state: 'ready', maxBatch: 1 })
    expect(threshold.lines).toEqual([expect.stringContaining('runs unbatched: it quantizes activations at run time (DynamicQuantizeLinear)')])
    const session = await ort.InferenceSession.create(path)
    const over = async (rows: number[]) => Array.from((await session.run({ x: new ort.Tensor('float32', Float32Array.from(rows), [rows.length, 1]) })).over!.data as Uint8Array)
    expect([await over([170]), await over([170, -10000])]).toEqual([[1], [0, 0]])
    await session.release()

    // Where an output does show it, the reason is the same.
    const { model, lines } = await load('dynamic-int8', rowModel('dynamic-int8', [...dynamicInt8, { opType: 'Identity', inputs: ['d'], outputs: ['y'] }]))
    expect(model).toMatchObject({ state: 'ready', maxBatch: 1 })
    expect(lines).toEqual(['model dynamic-int8 v1 runs unbatched: it quantizes activations at run time (DynamicQuantizeLinear), with one scale for the whole batch, so a row\'s outputs depend on the other rows of its batch'])
  })

  it('runs unbatched a UINT8 image model that divides by the batch\'s brightest pixel', async () => {
    const path = file('u8-norm', {
      inputs: [{ name: 'img', datatype: 'UINT8', shape: ['N', 4] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: ['N', 4] }],
      nodes: [
        { opType: 'Cast', inputs: ['img'], outputs: ['f'], attributes: { to: { int: 1 } } },
        { opType: 'ReduceMax', inputs: ['f'], outputs: ['m'], attributes: { keepdims: { int: 1 } } },
        { opType: 'Div', inputs: ['f', 'm'], outputs: ['y'] },
      ],
    })
    const { model, lines } = await load('u8-norm', path)
    expect(model).toMatchObject({ state: 'ready', maxBatch: 1 })
    expect(lines).toEqual([expect.stringContaining('output y of a row depends on the other rows')])
  })

  it('runs unbatched a model whose outputs do not have one row per input row (a Transpose)', async () => {
    const path = file('transpose', {
      inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 'M'] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: ['M', 'N'] }],
      nodes: [{ opType: 'Transpose', inputs: ['x'], outputs: ['y'] }],
    })
    const { model, lines } = await load('transpose', path)
    expect(model.maxBatch).toBe(1)
    expect(lines).toEqual([expect.stringContaining('do not have one row per input row')])
  })

  it('runs unbatched, without building probe inputs, a model whose declared shapes make a huge row (a 30,000 x 30,000 image)', async () => {
    const path = file('huge-declared', {
      inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 30_000, 30_000] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: ['N', 30_000, 30_000] }],
      nodes: [{ opType: 'Relu', inputs: ['x'], outputs: ['y'] }],
    })
    const heapBefore = process.memoryUsage().heapUsed
    const { model, lines } = await load('huge-declared', path)
    expect(model).toMatchObject({ state: 'ready', maxBatch: 1 })
    expect(lines).toEqual([expect.stringContaining('its declared input shapes make a row of 900000000 elements, too large to check on probe inputs')])
    // The probe built nothing of that size (a row alone would be 3.6 GB).
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(100 * 1024 * 1024)
  })
})
