/**
 * A tiny ONNX ModelProto writer for tests: the few onnx.proto messages a small inference graph
 * needs, encoded with shared's protobuf wire writer, so suites can generate real models with
 * inputs of every datatype depinfer carries without checking binaries in or pulling in protobuf
 * packages.
 *
 * Field numbers follow onnx/onnx.proto3 (cited per field below). Only writing is supported.
 */
import type { Datatype } from '../../shared/src/datatypes.js'
import { WireWriter } from '../../shared/src/protobuf-wire.js'
import { seededRandom } from '../../shared/src/seeded-random.js'
import { bytesOf, type RawTensor } from '../../shared/src/tensor.js'

export type { Datatype }

// ---------------------------------------------------------------------------------------------
// ONNX types
// ---------------------------------------------------------------------------------------------

/** TensorProto.DataType values (onnx.proto3) for the element types depinfer carries. */
export const OnnxElemType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
} as const
export type OnnxElemType = (typeof OnnxElemType)[keyof typeof OnnxElemType]

/** v2 datatype (shared/src/datatypes.ts) → ONNX element type. */
export const ONNX_ELEM_TYPE_BY_DATATYPE: Record<Datatype, OnnxElemType> = {
  BOOL: OnnxElemType.BOOL,
  UINT8: OnnxElemType.UINT8,
  UINT16: OnnxElemType.UINT16,
  UINT32: OnnxElemType.UINT32,
  UINT64: OnnxElemType.UINT64,
  INT8: OnnxElemType.INT8,
  INT16: OnnxElemType.INT16,
  INT32: OnnxElemType.INT32,
  INT64: OnnxElemType.INT64,
  FP16: OnnxElemType.FLOAT16,
  FP32: OnnxElemType.FLOAT,
  FP64: OnnxElemType.DOUBLE,
}

/** A fixed size, or a named symbolic dimension (dim_param) such as a dynamic batch 'N'. */
export type Dim = number | string

/** A graph input or output (ValueInfoProto). */
export interface ValueSpec {
  name: string
  datatype: Datatype
  shape: readonly Dim[]
  /** Declared with no shape at all (unknown rank); `shape` is then ignored. */
  unknownRank?: true
}

/** One attribute value; the key says which AttributeProto field carries it. */
export type AttributeValue =
  | { int: number | bigint }
  | { float: number }
  | { ints: readonly (number | bigint)[] }
  | { tensor: InitializerSpec }
  | { graph: Omit<ModelSpec, 'opset' | 'irVersion'> }

export interface NodeSpec {
  opType: string
  inputs: readonly string[]
  outputs: readonly string[]
  name?: string
  attributes?: Readonly<Record<string, AttributeValue>>
}

/** A constant tensor (TensorProto) whose elements are given as little-endian raw bytes. */
export interface InitializerSpec {
  name: string
  datatype: Datatype
  dims: readonly number[]
  data: Uint8Array
  /** Stored in an external data file at this path instead (data_location EXTERNAL; `data` unused). */
  externalLocation?: string
}

export interface ModelSpec {
  inputs: readonly ValueSpec[]
  outputs: readonly ValueSpec[]
  nodes: readonly NodeSpec[]
  initializers?: readonly InitializerSpec[]
  /** Default ai.onnx opset version: 13. */
  opset?: number
  /** ModelProto.ir_version: 8 (onnx 1.10+), which every current onnxruntime accepts. */
  irVersion?: number
  graphName?: string
}

/** The raw little-endian bytes of a typed array, as TensorProto.raw_data expects (x64/arm64 are little-endian). */
export function rawData(values: ArrayBufferView): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength).slice()
}

// AttributeProto.AttributeType (onnx.proto3).
const ATTR_FLOAT = 1
const ATTR_INT = 2
const ATTR_INTS = 7
const ATTR_TENSOR = 4
const ATTR_GRAPH = 5

function attributeProto(w: WireWriter, name: string, value: AttributeValue): void {
  w.string(1, name) // name = 1
  if ('int' in value) w.int(20, ATTR_INT).int(3, value.int) // type = 20, i = 3
  else if ('float' in value) w.int(20, ATTR_FLOAT).float(2, value.float) // f = 2 (fixed32)
  else if ('tensor' in value) w.int(20, ATTR_TENSOR).message(5, (t) => tensorProto(t, value.tensor)) // t = 5
  else if ('graph' in value) w.int(20, ATTR_GRAPH).message(6, (g) => graphProto(g, value.graph)) // g = 6
  else w.int(20, ATTR_INTS).packedInts(8, value.ints) // ints = 8
}

function nodeProto(w: WireWriter, node: NodeSpec, index: number): void {
  for (const input of node.inputs) w.string(1, input) // input = 1
  for (const output of node.outputs) w.string(2, output) // output = 2
  w.string(3, node.name ?? `${node.opType}_${index}`) // name = 3
  w.string(4, node.opType) // op_type = 4
  for (const [name, value] of Object.entries(node.attributes ?? {})) w.message(5, (a) => attributeProto(a, name, value)) // attribute = 5
}

function shapeProto(w: WireWriter, shape: readonly Dim[]): void {
  // TensorShapeProto.dim = 1; Dimension oneof: dim_value = 1 | dim_param = 2.
  for (const dim of shape) w.message(1, (d) => (typeof dim === 'string' ? d.string(2, dim) : d.int(1, dim)))
}

function valueInfoProto(w: WireWriter, value: ValueSpec): void {
  w.string(1, value.name) // ValueInfoProto: name = 1
  // type = 2, a TypeProto whose tensor_type = 1 is a TypeProto.Tensor: elem_type = 1, shape = 2.
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.int(1, ONNX_ELEM_TYPE_BY_DATATYPE[value.datatype])
      if (!value.unknownRank) tensor.message(2, (shape) => shapeProto(shape, value.shape))
    }),
  )
}

function tensorProto(w: WireWriter, init: InitializerSpec): void {
  if (init.dims.length > 0) w.packedInts(1, init.dims) // dims = 1
  w.int(2, ONNX_ELEM_TYPE_BY_DATATYPE[init.datatype]) // data_type = 2
  w.string(8, init.name) // name = 8
  if (init.externalLocation === undefined) {
    w.bytes(9, init.data) // raw_data = 9
    return
  }
  // external_data = 13 (StringStringEntryProto: key = 1, value = 2), data_location = 14 (EXTERNAL = 1).
  w.message(13, (entry) => entry.string(1, 'location').string(2, init.externalLocation!))
  w.int(14, 1)
}

function graphProto(w: WireWriter, spec: Omit<ModelSpec, 'opset' | 'irVersion'>): void {
  spec.nodes.forEach((node, i) => w.message(1, (n) => nodeProto(n, node, i))) // GraphProto.node = 1
  w.string(2, spec.graphName ?? 'test_graph') // name = 2
  for (const init of spec.initializers ?? []) w.message(5, (t) => tensorProto(t, init)) // initializer = 5
  for (const input of spec.inputs) w.message(11, (v) => valueInfoProto(v, input)) // input = 11
  for (const output of spec.outputs) w.message(12, (v) => valueInfoProto(v, output)) // output = 12
}

/** Serializes a ModelProto with one graph against the default ai.onnx domain. */
export function buildModel(spec: ModelSpec): Uint8Array {
  return new WireWriter()
    .int(1, spec.irVersion ?? 8) // ModelProto.ir_version = 1
    .string(2, 'depinfer-test') // producer_name = 2
    .message(7, (graph) => graphProto(graph, spec)) // graph = 7
    .message(8, (opset) => opset.string(1, '').int(2, spec.opset ?? 13)) // opset_import = 8: OperatorSetIdProto domain = 1 ("" is ai.onnx), version = 2
    .finish()
}

// ---------------------------------------------------------------------------------------------
// Ready-made models
// ---------------------------------------------------------------------------------------------

export interface KitchenSinkOutput extends ValueSpec {
  /** The graph input this output is computed from. */
  from: string
  /** The op producing it: `Add` (from, from) doubles the input, `Not` negates a boolean. */
  opType: 'Add' | 'Not'
}

export interface KitchenSinkModel {
  bytes: Uint8Array
  opset: number
  inputs: readonly ValueSpec[]
  outputs: readonly KitchenSinkOutput[]
}

/** Kitchen-sink inputs: one per datatype, each [N, 4] with a dynamic batch dimension 'N'. */
const KITCHEN_SINK_INPUTS: readonly (readonly [string, Datatype])[] = [
  ['f32', 'FP32'],
  ['f16', 'FP16'],
  ['f64', 'FP64'],
  ['i64', 'INT64'],
  ['i32', 'INT32'],
  ['i16', 'INT16'],
  ['i8', 'INT8'],
  ['u8', 'UINT8'],
  ['b', 'BOOL'],
]

/**
 * One input per datatype (f32 f16 f64 i64 i32 i16 i8 u8 b, all [N, 4]); each numeric input is
 * doubled by Add(x, x) into `<name>_out` and the boolean negated by Not into `b_out`.
 * Opset 14 because Add-13 rejects int8/int16/uint8 at load ("Type 'tensor(int8)' ... is invalid");
 * Add-14 covers every numeric type on onnxruntime's CPU provider, float16 included.
 */
export function kitchenSinkModel(): KitchenSinkModel {
  const opset = 14
  const inputs: ValueSpec[] = KITCHEN_SINK_INPUTS.map(([name, datatype]) => ({ name, datatype, shape: ['N', 4] }))
  const outputs: KitchenSinkOutput[] = inputs.map((input) => ({
    name: `${input.name}_out`,
    datatype: input.datatype,
    shape: input.shape,
    from: input.name,
    opType: input.datatype === 'BOOL' ? 'Not' : 'Add',
  }))
  const nodes: NodeSpec[] = outputs.map((out) => ({
    opType: out.opType,
    inputs: out.opType === 'Add' ? [out.from, out.from] : [out.from],
    outputs: [out.name],
  }))
  return { bytes: buildModel({ inputs, outputs, nodes, opset, graphName: 'kitchen_sink' }), opset, inputs, outputs }
}

export interface TinyClassifierModel {
  bytes: Uint8Array
  inputName: 'x'
  outputName: 'probs'
  /** The 4×3 weight initializer 'W', row-major: logits = x · W. */
  weights: Float32Array
}

/**
 * probs[N, 3] = Softmax(x[N, 4] · W, axis = -1). Feature i (i < 3) votes for class i and feature 3
 * for none, so the winning class of a row is predictable: the argmax of its first three features.
 */
export function tinyClassifierModel(): TinyClassifierModel {
  // prettier-ignore
  const weights = new Float32Array([
    2, 0, 0,
    0, 2, 0,
    0, 0, 2,
    0.5, 0.5, 0.5,
  ])
  const bytes = buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 4] }],
    outputs: [{ name: 'probs', datatype: 'FP32', shape: ['N', 3] }],
    initializers: [{ name: 'W', datatype: 'FP32', dims: [4, 3], data: rawData(weights) }],
    nodes: [
      { opType: 'MatMul', inputs: ['x', 'W'], outputs: ['logits'] },
      { opType: 'Softmax', inputs: ['logits'], outputs: ['probs'], attributes: { axis: { int: -1 } } },
    ],
    graphName: 'tiny_classifier',
  })
  return { bytes, inputName: 'x', outputName: 'probs', weights }
}

/**
 * Two outputs with a class-like last axis, of which only one is a class output (int8 agreement, issue 6):
 * probs[N, 4] = Softmax(x[N, 4]), left fp32 by the quantizer (no MatMul), so int8's arg-max is
 * fp32's on every row; embedding[N, 16] = x · E, E's columns all 1 but for differences far below
 * an int8 step: quantized they are equal, int8's arg-max is always column 0 while fp32's follows
 * those differences, and the two agree on about 1 row in 16.
 */
export function classifierWithEmbeddingModel(): Uint8Array {
  const embedding = Float32Array.from({ length: 4 * 16 }, (_, i) => 1 + 1e-4 * Math.sin(i * 1.9))
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 4] }],
    outputs: [
      { name: 'probs', datatype: 'FP32', shape: ['N', 4] },
      { name: 'embedding', datatype: 'FP32', shape: ['N', 16] },
    ],
    initializers: [{ name: 'E', datatype: 'FP32', dims: [4, 16], data: rawData(embedding) }],
    nodes: [
      { opType: 'Softmax', inputs: ['x'], outputs: ['probs'], attributes: { axis: { int: -1 } } },
      { opType: 'MatMul', inputs: ['x', 'E'], outputs: ['embedding'] },
    ],
    graphName: 'classifier_with_embedding',
  })
}

/**
 * probs[N, 4] = Softmax(x[N, 4] · w), the product elementwise: no MatMul, Gemm or Conv, so the
 * int8 quantizer has nothing to convert.
 */
export function elementwiseSoftmaxModel(): Uint8Array {
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 4] }],
    outputs: [{ name: 'probs', datatype: 'FP32', shape: ['N', 4] }],
    initializers: [{ name: 'w', datatype: 'FP32', dims: [4], data: rawData(Float32Array.of(1, 2, 3, 4)) }],
    nodes: [
      { opType: 'Mul', inputs: ['x', 'w'], outputs: ['logits'] },
      { opType: 'Softmax', inputs: ['logits'], outputs: ['probs'], attributes: { axis: { int: -1 } } },
    ],
  })
}

/** The 64×64 weight of slowModel()'s Loop: uniform in ±0.25, so tanh(x · W) neither vanishes nor saturates over many iterations. */
function tanhLoopWeights(): InitializerSpec {
  const random = seededRandom(0x510)
  const weights = Float32Array.from({ length: 64 * 64 }, () => (random() - 0.5) * 0.5)
  return { name: 'W', datatype: 'FP32', dims: [64, 64], data: rawData(weights) }
}

/** A Loop's body: v = tanh(v · W), for a v of [N, 64] and the outer graph's W. */
const TANH_LOOP_BODY = {
  inputs: [
    { name: 'i', datatype: 'INT64', shape: [] },
    { name: 'cond_in', datatype: 'BOOL', shape: [] },
    { name: 'v_in', datatype: 'FP32', shape: ['N', 64] },
  ],
  outputs: [
    { name: 'cond_out', datatype: 'BOOL', shape: [] },
    { name: 'v_out', datatype: 'FP32', shape: ['N', 64] },
  ],
  nodes: [
    { opType: 'Identity', inputs: ['cond_in'], outputs: ['cond_out'] },
    { opType: 'MatMul', inputs: ['v_in', 'W'], outputs: ['m'] },
    { opType: 'Tanh', inputs: ['m'], outputs: ['v_out'] },
  ],
  graphName: 'slow_body',
} as const satisfies Omit<ModelSpec, 'opset' | 'irVersion'>

/**
 * y[N, 64] = tanh(… tanh(tanh(x · W) · W) …), applied `iterations` times (an ONNX Loop, with one
 * seeded 64×64 weight): a small model whose run takes as long as its caller asks, for tests that
 * need a run long enough to matter on any machine. `iterations` is an INT64 scalar input.
 */
export function slowModel(): Uint8Array {
  return buildModel({
    inputs: [
      { name: 'x', datatype: 'FP32', shape: ['N', 64] },
      { name: 'iterations', datatype: 'INT64', shape: [] },
    ],
    outputs: [{ name: 'y', datatype: 'FP32', shape: ['N', 64] }],
    initializers: [tanhLoopWeights()],
    nodes: [{ opType: 'Loop', inputs: ['iterations', '', 'x'], outputs: ['y'], attributes: { body: { graph: TANH_LOOP_BODY } } }],
    graphName: 'slow',
  })
}

/**
 * slowModel()'s Loop with its trip count read from x itself: max(x) × 10^9 iterations. Every
 * dimension 0 is a dynamic batch axis (the load-time batching probe runs it), and the probe's
 * inputs (floats to ±1 and ±100) make a run of 10^9 iterations and more, hours here; inputs
 * within ±1e-8 run in a few iterations (slowOnLargeInputs()).
 */
export function slowOnLargeInputsModel(): Uint8Array {
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 64] }],
    outputs: [{ name: 'y', datatype: 'FP32', shape: ['N', 64] }],
    initializers: [tanhLoopWeights(), { name: 'per_unit', datatype: 'FP32', dims: [], data: rawData(Float32Array.of(1e9)) }],
    nodes: [
      // ReduceMax-13 over every axis (no `axes`), keepdims 0: a scalar, as Loop's trip count must be.
      { opType: 'ReduceMax', inputs: ['x'], outputs: ['largest'], attributes: { keepdims: { int: 0 } } },
      { opType: 'Mul', inputs: ['largest', 'per_unit'], outputs: ['trips'] },
      { opType: 'Cast', inputs: ['trips'], outputs: ['iterations'], attributes: { to: { int: OnnxElemType.INT64 } } },
      { opType: 'Loop', inputs: ['iterations', '', 'x'], outputs: ['y'], attributes: { body: { graph: TANH_LOOP_BODY } } },
    ],
    graphName: 'slow_on_large_inputs',
  })
}

/** slowOnLargeInputsModel()'s quick inputs: two rows within ±1e-8, a run of at most 10 iterations. */
export function slowOnLargeInputs(): RawTensor[] {
  const x = Float32Array.from({ length: 2 * 64 }, (_, i) => Math.cos(i * 0.7) * 1e-8)
  return [{ name: 'x', datatype: 'FP32', shape: [2, 64], data: bytesOf(x) }]
}

/** slowModel()'s inputs: two fixed rows, iterated `iterations` times. */
export function slowModelInputs(iterations: number): RawTensor[] {
  const x = Float32Array.from({ length: 2 * 64 }, (_, i) => Math.cos(i * 0.7))
  return [
    { name: 'x', datatype: 'FP32', shape: [2, 64], data: bytesOf(x) },
    { name: 'iterations', datatype: 'INT64', shape: [], data: bytesOf(BigInt64Array.of(BigInt(iterations))) },
  ]
}

/**
 * sum = ReduceSum(ConstantOfShape(shape, 1.0)): a model whose memory is set by an input's values
 * (`shape`, INT64[3]): a run allocates 4 bytes per element of that shape, and answers a scalar.
 */
export function memoryHungryModel(): Uint8Array {
  return buildModel({
    inputs: [{ name: 'shape', datatype: 'INT64', shape: [3] }],
    outputs: [{ name: 'sum', datatype: 'FP32', shape: [] }],
    nodes: [
      { opType: 'ConstantOfShape', inputs: ['shape'], outputs: ['ones'], attributes: { value: { tensor: { name: 'one', datatype: 'FP32', dims: [1], data: rawData(Float32Array.of(1)) } } } },
      { opType: 'ReduceSum', inputs: ['ones'], outputs: ['sum'], attributes: { keepdims: { int: 0 } } },
    ],
    graphName: 'memory_hungry',
  })
}

/** memoryHungryModel()'s input: a run over `dims` (its product × 4 bytes are allocated). */
export function memoryHungryInputs(dims: readonly [number, number, number]): RawTensor[] {
  return [{ name: 'shape', datatype: 'INT64', shape: [3], data: bytesOf(BigInt64Array.from(dims, BigInt)) }]
}

/** probs = Softmax(x · W): x [batch, k], W [64, 8] (k may be symbolic: onnxruntime then checks it only when running). */
export function matmulSoftmaxModel(batch: Dim, k: Dim = 64): Uint8Array {
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', shape: [batch, k] }],
    outputs: [{ name: 'probs', datatype: 'FP32', shape: [batch, 8] }],
    initializers: [{ name: 'W', datatype: 'FP32', dims: [64, 8], data: rawData(Float32Array.from({ length: 64 * 8 }, (_, i) => Math.sin(i * 1.7))) }],
    nodes: [
      { opType: 'MatMul', inputs: ['x', 'W'], outputs: ['logits'] },
      { opType: 'Softmax', inputs: ['logits'], outputs: ['probs'], attributes: { axis: { int: -1 } } },
    ],
  })
}
