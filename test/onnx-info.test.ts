/**
 * The edge reads published models' inputs and outputs without onnxruntime: checked against what
 * onnxruntime-node itself reports for real models, and against malformed files. A large upload is
 * read as a stream, without its tensors' data (onnxSkeleton): the skeleton must read the same.
 */
import { readFileSync } from 'node:fs'
import * as ort from 'onnxruntime-node'
import { describe, expect, it } from 'vitest'
import { BUNDLED_MODELS, bundledModelPath, type BundledModelName } from '../device-agent/src/models/bundled.js'
import { externalDataTensors, nodeOpTypes, OnnxFormatError, onnxSkeleton, readOnnxModelInfo } from '../shared/src/index.js'
import { WireWriter } from '../shared/src/protobuf-wire.js'
import { buildModel, kitchenSinkModel, rawData, tinyClassifierModel, type NodeSpec } from './helpers/onnx-model.js'

/** onnxruntime's view of a model, in v2 terms (named dynamic dimensions as -1). */
async function ortSpecs(bytes: Uint8Array) {
  const session = await ort.InferenceSession.create(bytes)
  try {
    const spec = (meta: ort.InferenceSession.ValueMetadata) => ({
      name: meta.name,
      shape: meta.isTensor ? meta.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1)) : [],
    })
    return { inputs: session.inputMetadata.map(spec), outputs: session.outputMetadata.map(spec) }
  } finally {
    await session.release()
  }
}

/** `bytes` in pieces of `chunkBytes`, as a stream delivers them. */
async function* chunksOf(bytes: Uint8Array, chunkBytes: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += chunkBytes) yield bytes.subarray(at, at + chunkBytes)
}

/** The model as the edge reads a large upload: streamed, without its tensors' data. */
const skeletonOf = (bytes: Uint8Array, chunkBytes = 7, maxSkeletonBytes = 1 << 20) =>
  onnxSkeleton(chunksOf(bytes, chunkBytes), { size: bytes.length, maxSkeletonBytes })

describe('readOnnxModelInfo', () => {
  it.each(Object.keys(BUNDLED_MODELS) as BundledModelName[])('reads %s as onnxruntime does, from the whole file and from its skeleton', async (name) => {
    const bytes = readFileSync(bundledModelPath(name))
    const info = readOnnxModelInfo(bytes)
    // Streamed in 64 KiB pieces, as R2 delivers a file: the same metadata from a few KiB.
    const skeleton = await skeletonOf(bytes, 65_536)
    expect(readOnnxModelInfo(skeleton)).toEqual(info)
    expect(skeleton.length).toBeLessThan(bytes.length / 5)
    // The limit is on the skeleton's size: each byte counted once, nested messages included.
    expect(await skeletonOf(bytes, 65_536, skeleton.length)).toEqual(skeleton)
    await expect(skeletonOf(bytes, 65_536, skeleton.length - 1)).rejects.toThrow(/structure without its tensors' data is over/)
    const expected = await ortSpecs(bytes)
    expect(info.inputs.map(({ name, shape }) => ({ name, shape }))).toEqual(expected.inputs)
    expect(info.outputs.map(({ name, shape }) => ({ name, shape }))).toEqual(expected.outputs)
    expect(info.inputs.every((s) => s.datatype === 'FP32')).toBe(true)
    expect(info.nodeCount).toBeGreaterThan(10)
    expect(info.opsets['']).toBeGreaterThan(0)
  })

  it('reads every datatype of a generated model, from the whole file and from its skeleton streamed a byte at a time', async () => {
    const model = kitchenSinkModel()
    const info = readOnnxModelInfo(model.bytes)
    expect(readOnnxModelInfo(await skeletonOf(model.bytes, 1))).toEqual(info)
    expect(info.inputs).toEqual(model.inputs.map(({ name, datatype }) => ({ name, datatype, shape: [-1, 4] })))
    expect(info.outputs).toEqual(model.outputs.map(({ name, datatype }) => ({ name, datatype, shape: [-1, 4] })))
    expect(info).toMatchObject({ opsets: { '': model.opset }, graphName: 'kitchen_sink', irVersion: 8 })
  })

  it('leaves out inputs that are initializers (weights listed as graph inputs by older exporters)', () => {
    const tiny = tinyClassifierModel()
    const bytes = buildModel({
      inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 4] }, { name: 'W', datatype: 'FP32', shape: [4, 3] }],
      outputs: [{ name: 'logits', datatype: 'FP32', shape: ['N', 3] }],
      initializers: [{ name: 'W', datatype: 'FP32', dims: [4, 3], data: rawData(tiny.weights) }],
      nodes: [{ opType: 'MatMul', inputs: ['x', 'W'], outputs: ['logits'] }],
    })
    expect(readOnnxModelInfo(bytes).inputs.map((s) => s.name)).toEqual(['x'])
  })

  it('refuses a graph with two inputs of one name (onnxruntime cannot load it) or two outputs (it answers one of them)', async () => {
    const twice = (where: 'inputs' | 'outputs') => buildModel({
      inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 4] }, { name: where === 'inputs' ? 'x' : 'y', datatype: 'FP32', shape: ['N', 4] }],
      outputs: [{ name: 'z', datatype: 'FP32', shape: ['N', 4] }, ...(where === 'outputs' ? [{ name: 'z', datatype: 'FP32' as const, shape: ['N', 4] }] : [])],
      nodes: [{ opType: 'Add', inputs: ['x', where === 'inputs' ? 'x' : 'y'], outputs: ['z'] }],
    })
    for (const where of ['inputs', 'outputs'] as const) {
      const bytes = twice(where)
      if (where === 'inputs') {
        await expect(ort.InferenceSession.create(bytes)).rejects.toThrow(/Duplicate definition-site/)
      } else {
        const session = await ort.InferenceSession.create(bytes)
        const one = new ort.Tensor('float32', new Float32Array(4), [1, 4])
        expect(Object.keys(await session.run({ x: one, y: one }))).toEqual(['z'])
        await session.release()
      }
      expect(() => readOnnxModelInfo(bytes), where).toThrow(where === 'inputs' ? 'the graph has two inputs named "x"' : 'the graph has two outputs named "z"')
    }
  })

  it('refuses more than 100,000 graph inputs before decoding them (each costs memory: millions fit in a few MB of file)', () => {
    const input = new WireWriter().message(11, (v) => v.string(1, 'x')).finish()
    const inputs = new Uint8Array(input.length * 100_001)
    for (let i = 0; i <= 100_000; i++) inputs.set(input, i * input.length)
    const model = new WireWriter().int(1, 8).message(7, (g) => g.raw({ field: 11, bytes: inputs })).message(8, (o) => o.string(1, '').int(2, 13)).finish()
    expect(() => readOnnxModelInfo(model)).toThrow(/not a valid ONNX model: more than 100000 graph inputs/)
  })

  it('refuses a tensor name with a NUL, which onnxruntime knows only up to the NUL', async () => {
    const bytes = buildModel({
      inputs: [{ name: 'x\u0000y', datatype: 'FP32', shape: ['N', 4] }],
      outputs: [{ name: 'z', datatype: 'FP32', shape: ['N', 4] }],
      nodes: [{ opType: 'Relu', inputs: ['x\u0000y'], outputs: ['z'] }],
    })
    const session = await ort.InferenceSession.create(bytes)
    expect(session.inputNames).toEqual(['x'])
    await session.release()
    expect(() => readOnnxModelInfo(bytes)).toThrow('input "x\\u0000y" has a NUL character in its name')
  })

  it('refuses what devices could not serve safely: an input declaring size 0, a 1,025-character name, 64 KiB of tensor metadata', () => {
    const relu = (input: { name: string; shape: (number | string)[] }, outputs = [{ name: 'y', datatype: 'FP32' as const, shape: ['N'] as (number | string)[] }]) =>
      buildModel({
        inputs: [{ ...input, datatype: 'FP32' }],
        outputs,
        nodes: [{ opType: 'Relu', inputs: [input.name], outputs: [outputs[0]!.name] }],
      })
    expect(() => readOnnxModelInfo(relu({ name: 'x', shape: ['N', 3, 4, 0] }))).toThrow(
      'input "x" declares size 0 in dimension 3 ([-1,3,4,0]): it could only take empty tensors, which depinfer refuses',
    )
    const long = 'x'.repeat(1_025)
    expect(() => readOnnxModelInfo(relu({ name: 'x', shape: ['N'] }, [{ name: '__proto__', datatype: 'FP32', shape: ['N'] }]))).toThrow(
      'output "__proto__" cannot be served: onnxruntime-node cannot pass a tensor of that name',
    )
    expect(() => readOnnxModelInfo(relu({ name: long, shape: ['N'] }))).toThrow(/input "x{40}"… has a name of 1025 characters; depinfer serves names of up to 1024/)
    expect(readOnnxModelInfo(relu({ name: 'x'.repeat(1_024), shape: ['N'] })).inputs[0]!.name).toHaveLength(1_024)
    // 100 outputs of 1,000-character names: each fits, together they do not.
    const outputs = Array.from({ length: 100 }, (_, i) => ({ name: `${i}`.padStart(1_000, 'o'), datatype: 'FP32' as const, shape: ['N'] as (number | string)[] }))
    const wide = buildModel({
      inputs: [{ name: 'x', datatype: 'FP32', shape: ['N'] }],
      outputs,
      nodes: outputs.map((o) => ({ opType: 'Relu', inputs: ['x'], outputs: [o.name] })),
    })
    expect(() => readOnnxModelInfo(wide)).toThrow(/the inputs and outputs take \d+ characters of metadata \(names, shapes\); depinfer serves models with up to 65536/)
  })

  it('names the element type it does not serve', () => {
    const bytes = buildModel({
      inputs: [{ name: 'x', datatype: 'FP32', shape: ['N'] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: ['N'] }],
      nodes: [{ opType: 'Relu', inputs: ['x'], outputs: ['y'] }],
    })
    // The input's element type, 1 (float), rewritten to 16 (bfloat16): the first tensor_type's
    // elem_type field (tag 0x08, value 0x01) followed by its shape (tag 0x12).
    const bf16 = Uint8Array.from(bytes)
    const marker = bf16.findIndex((b, i) => b === 0x08 && bf16[i + 1] === 0x01 && bf16[i + 2] === 0x12)
    bf16[marker + 1] = 16
    expect(() => readOnnxModelInfo(bf16)).toThrow(/input "x" cannot be served: element type bfloat16, which the Open Inference Protocol's datatypes here do not include/)
  })

  it.each<[string, Uint8Array, RegExp]>([
    ['an empty file', new Uint8Array(0), /empty/],
    ['text', new TextEncoder().encode('this is not a model, just some text\n'), /not a valid ONNX model/],
    ['a truncated model', readFileSync(bundledModelPath('ppocr-cls')).subarray(0, 100_000), /not a valid ONNX model/],
    ['a protobuf without a graph', Uint8Array.of(0x08, 0x08), /no graph/],
  ])('refuses %s with an OnnxFormatError naming the model', (_case, bytes, message) => {
    expect(() => readOnnxModelInfo(bytes)).toThrow(OnnxFormatError)
    expect(() => readOnnxModelInfo(bytes)).toThrow(message)
  })
})

describe('models with tensors in external data files', () => {
  const weight = (externalLocation?: string) => ({ name: 'W', datatype: 'UINT8' as const, dims: [4], data: Uint8Array.of(1, 2, 3, 4), ...(externalLocation && { externalLocation }) })
  const identity = (initializers: ReturnType<typeof weight>[], nodes: NodeSpec[] = [{ opType: 'Identity', inputs: ['W'], outputs: ['leak'] }, { opType: 'Identity', inputs: ['x'], outputs: ['y'] }]) =>
    buildModel({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [1] }, { name: 'leak', datatype: 'UINT8', shape: [4] }],
      initializers,
      nodes,
    })
  /** The same model, its W a Constant node's tensor attribute, or an initializer of an If branch. */
  const inConstant = (externalLocation: string) => identity([], [
    { opType: 'Constant', inputs: [], outputs: ['W'], attributes: { value: { tensor: weight(externalLocation) } } },
    { opType: 'Identity', inputs: ['x'], outputs: ['y'] },
    { opType: 'Identity', inputs: ['W'], outputs: ['leak'] },
  ])
  const inSubgraph = (externalLocation: string) => {
    const branch = { inputs: [], outputs: [{ name: 'b', datatype: 'UINT8' as const, shape: [4] }], initializers: [{ ...weight(externalLocation), name: 'Wb' }], nodes: [{ opType: 'Identity', inputs: ['Wb'], outputs: ['b'] }] }
    return buildModel({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1] }, { name: 'c', datatype: 'BOOL', shape: [] }],
      outputs: [{ name: 'leak', datatype: 'UINT8', shape: [4] }],
      nodes: [{ opType: 'If', inputs: ['c'], outputs: ['leak'], attributes: { then_branch: { graph: branch }, else_branch: { graph: { ...branch, initializers: [{ ...weight(), name: 'Wb' }] } } } }],
    })
  }

  it.each([
    ['an initializer', () => identity([weight('.depinfer/keys/local-device-1.key')])],
    ["a Constant node's tensor", () => inConstant('package.json')],
    ["an If branch's initializer", () => inSubgraph('../../etc/passwd')],
  ])('refuses a model keeping %s in an external file, naming the tensor, from its skeleton too', async (_case, make) => {
    expect(() => readOnnxModelInfo(make())).toThrow(OnnxFormatError)
    expect(() => readOnnxModelInfo(make())).toThrow(/external data files \("W[b]?"\).*self-contained/)
    expect(externalDataTensors(make()).length).toBe(1)
    const skeleton = await skeletonOf(make())
    expect(() => readOnnxModelInfo(skeleton)).toThrow(/external data files \("W[b]?"\).*self-contained/)
  })

  /** A TensorProto named `name` marked external by data_location alone (no external_data entry). */
  const externalTensor = (w: WireWriter, name: string, location = 1n) => w.string(8, name).int(14, location)
  it.each([
    // FunctionProto.attribute_proto (11): an attribute's default value, a tensor.
    ['a function attribute\'s default tensor', () => new WireWriter().message(25, (fn) => fn.message(11, (a) => a.string(1, 'v').message(5, (t) => externalTensor(t, 'fdefault')))).finish(), 'fdefault'],
    // TrainingInfoProto.initialization (1): a graph with an initializer.
    ['a training-info graph\'s initializer', () => new WireWriter().message(20, (info) => info.message(1, (g) => g.message(5, (t) => externalTensor(t, 'tinit')))).finish(), 'tinit'],
    // GraphProto.sparse_initializer (15): SparseTensorProto.values (1).
    ['a sparse initializer\'s values', () => new WireWriter().message(7, (g) => g.message(15, (sp) => sp.message(1, (t) => externalTensor(t, 'svalues')))).finish(), 'svalues'],
    // data_location 2^32 + 1: onnxruntime truncates the enum to EXTERNAL.
    ['a data_location past 32 bits', () => new WireWriter().message(7, (g) => g.message(5, (t) => externalTensor(t, 'wide', 2n ** 32n + 1n))).finish(), 'wide'],
  ])('finds %s, in the skeleton too', async (_case, make, name) => {
    expect(externalDataTensors(make())).toEqual([name])
    expect(externalDataTensors(await skeletonOf(make(), 3))).toEqual([name])
  })

  it('finds none in self-contained models, the bundled ones included', () => {
    expect(externalDataTensors(identity([weight()]))).toEqual([])
    for (const name of Object.keys(BUNDLED_MODELS) as BundledModelName[]) expect(externalDataTensors(readFileSync(bundledModelPath(name)))).toEqual([])
  })

  it('is what onnxruntime would read from the working directory (why it is refused)', async () => {
    // The same file loaded from bytes: onnxruntime resolves the location against the process's
    // working directory and answers the file's bytes. (package.json: a file every checkout has.)
    const session = await ort.InferenceSession.create(inConstant('package.json'))
    const { leak } = await session.run({ x: new ort.Tensor('float32', Float32Array.of(1), [1]) })
    await session.release()
    expect(Buffer.from(leak!.data as Uint8Array).toString()).toBe(readFileSync('package.json').subarray(0, 4).toString())
  })
})

describe('nodeOpTypes', () => {
  it('lists the operators of the graph, of graphs nested in attributes and of model-local functions', () => {
    const branch = (opType: string) => ({ inputs: [], outputs: [{ name: 'b', datatype: 'FP32' as const, shape: [1] }], nodes: [{ opType, inputs: ['x'], outputs: ['b'] }] })
    const model = buildModel({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1] }, { name: 'c', datatype: 'BOOL', shape: [] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [1] }],
      nodes: [{ opType: 'If', inputs: ['c'], outputs: ['y'], attributes: { then_branch: { graph: branch('Relu') }, else_branch: { graph: branch('DynamicQuantizeLinear') } } }],
    })
    expect([...nodeOpTypes(model)].sort()).toEqual(['DynamicQuantizeLinear', 'If', 'Relu'])
    // FunctionProto (ModelProto field 25): node = 7, NodeProto.op_type = 4.
    const fn = new WireWriter().message(25, (f) => f.message(7, (n) => n.string(4, 'DynamicQuantizeMatMul'))).finish()
    expect([...nodeOpTypes(fn)]).toEqual(['DynamicQuantizeMatMul'])
    expect([...nodeOpTypes(readFileSync(bundledModelPath('ppocr-cls')))]).not.toContain('DynamicQuantizeLinear')
  })
})

describe('onnxSkeleton', () => {
  const tiny = tinyClassifierModel()
  const weights = { name: 'W', datatype: 'FP32' as const, dims: [4, 3] }
  const classifier = (initializer: (w: WireWriter) => void) =>
    new WireWriter()
      .int(1, 8)
      .message(7, (g) => {
        g.message(1, (n) => n.string(1, 'x').string(1, 'W').string(2, 'logits').string(4, 'MatMul'))
        g.message(5, (t) => {
          t.packedInts(1, weights.dims).int(2, 1).string(8, weights.name)
          initializer(t)
        })
        g.message(11, (v) => v.string(1, 'x').message(2, (type) => type.message(1, (tt) => tt.int(1, 1).message(2, (sh) => sh.message(1, (d) => d.string(2, 'N')).message(1, (d) => d.int(1, 4))))))
        g.message(12, (v) => v.string(1, 'logits').message(2, (type) => type.message(1, (tt) => tt.int(1, 1).message(2, (sh) => sh.message(1, (d) => d.string(2, 'N')).message(1, (d) => d.int(1, 3))))))
      })
      .message(8, (o) => o.string(1, '').int(2, 13))
      .finish()

  it('drops tensor data however it is written (raw, packed, one value per field) and keeps what onnxruntime needs to describe the model', async () => {
    const raw = buildModel({
      inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 4] }],
      outputs: [{ name: 'logits', datatype: 'FP32', shape: ['N', 3] }],
      initializers: [{ ...weights, data: rawData(tiny.weights) }],
      nodes: [{ opType: 'MatMul', inputs: ['x', 'W'], outputs: ['logits'] }],
    })
    const packed = classifier((t) => t.packedFloats(4, [...tiny.weights])) // float_data, packed
    const unpacked = classifier((t) => tiny.weights.forEach((v) => t.float(4, v))) // float_data, a fixed32 field per value
    const bigWeights = classifier((t) => t.bytes(9, new Uint8Array(3_000_000))) // raw_data of 3 MB
    for (const model of [raw, packed, unpacked, bigWeights]) {
      const skeleton = await skeletonOf(model, 4096)
      expect(readOnnxModelInfo(skeleton)).toEqual(readOnnxModelInfo(model))
      expect(skeleton.length).toBeLessThan(300)
    }
    // What remains is the graph without weights: onnxruntime refuses it, so it is never served.
    await expect(ort.InferenceSession.create(await skeletonOf(raw))).rejects.toThrow()
  })

  it('refuses a file that ends early, is not protobuf, or whose structure alone is over the limit, saying where', async () => {
    const model = readFileSync(bundledModelPath('ppocr-cls'))
    const cut = model.subarray(0, model.length - 100)
    await expect(onnxSkeleton(chunksOf(cut, 4096), { size: model.length, maxSkeletonBytes: 1 << 20 })).rejects.toThrow(/not a valid ONNX model: the file ends early \(at byte \d+\)/)
    await expect(skeletonOf(new TextEncoder().encode('<html>not a model</html>'))).rejects.toThrow(OnnxFormatError)
    await expect(skeletonOf(new Uint8Array(0))).rejects.toThrow(/the file is empty/)
    await expect(skeletonOf(model, 4096, 1000)).rejects.toThrow(/structure without its tensors' data is over 1000 bytes/)
    // Tensor data written one value per field is dropped, but each field costs a step: bounded.
    const unpacked = classifier((t) => tiny.weights.forEach((v) => t.float(4, v)))
    await expect(onnxSkeleton(chunksOf(unpacked, 4096), { size: unpacked.length, maxSkeletonBytes: 1 << 20, maxFields: 20 })).rejects.toThrow(/more than 20 fields \(at byte \d+\)/)
    expect(await onnxSkeleton(chunksOf(unpacked, 4096), { size: unpacked.length, maxSkeletonBytes: 1 << 20, maxFields: 40 })).toBeInstanceOf(Uint8Array)
    // A length that runs past its message: the offset is the file's.
    const overrun = new WireWriter().message(7, (g) => g.string(2, 'graph')).finish()
    overrun[1] = 100
    await expect(skeletonOf(overrun)).rejects.toThrow(/length 100 runs past the end of the message \(at byte 1\)/)
  })
})
