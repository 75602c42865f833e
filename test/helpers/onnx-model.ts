/**
 * A tiny ONNX ModelProto writer for tests: hand-rolled protobuf encoding of the few onnx.proto
 * messages a small inference graph needs, so suites can generate real models with inputs of every
 * datatype depinfer carries without checking binaries in or pulling in protobuf packages.
 *
 * Field numbers follow onnx/onnx.proto3 (cited per field below). Only writing is supported.
 */
import type { Datatype } from '../../shared/src/datatypes.js'

export type { Datatype }

// ---------------------------------------------------------------------------------------------
// Protobuf wire format
// ---------------------------------------------------------------------------------------------

const WIRE_VARINT = 0
const WIRE_LEN = 2
const WIRE_FIXED32 = 5

const UINT64_MASK = (1n << 64n) - 1n

/**
 * Base-128 varint of an int64/uint64. Negative values are written as their 64-bit two's
 * complement, which protobuf requires for int64 (always 10 bytes), e.g. `axis = -1`.
 */
export function encodeVarint(value: number | bigint): Uint8Array {
  if (typeof value === 'number' && !Number.isSafeInteger(value)) {
    throw new RangeError(`varint value must be a safe integer, got ${value}`)
  }
  let v = BigInt(value)
  if (v < -(1n << 63n) || v > UINT64_MASK) throw new RangeError(`varint value out of 64-bit range: ${v}`)
  v &= UINT64_MASK
  const bytes: number[] = []
  while (v > 0x7fn) {
    bytes.push(Number(v & 0x7fn) | 0x80)
    v >>= 7n
  }
  bytes.push(Number(v))
  return Uint8Array.from(bytes)
}

const utf8 = new TextEncoder()

/** Accumulates one message's fields; nested messages are encoded first and embedded as bytes. */
class ProtoWriter {
  private readonly chunks: Uint8Array[] = []

  private tag(field: number, wireType: number): void {
    this.chunks.push(encodeVarint((field << 3) | wireType))
  }

  varint(field: number, value: number | bigint): this {
    this.tag(field, WIRE_VARINT)
    this.chunks.push(encodeVarint(value))
    return this
  }

  bytes(field: number, value: Uint8Array): this {
    this.tag(field, WIRE_LEN)
    this.chunks.push(encodeVarint(value.length), value)
    return this
  }

  string(field: number, value: string): this {
    return this.bytes(field, utf8.encode(value))
  }

  message(field: number, value: ProtoWriter): this {
    return this.bytes(field, value.finish())
  }

  /** `float` fields are fixed32: 4 little-endian bytes of the IEEE 754 single. */
  float32(field: number, value: number): this {
    this.tag(field, WIRE_FIXED32)
    const buf = new Uint8Array(4)
    new DataView(buf.buffer).setFloat32(0, value, true)
    this.chunks.push(buf)
    return this
  }

  /** Repeated int64 as one packed length-delimited field (proto3's default encoding). */
  packedVarints(field: number, values: readonly (number | bigint)[]): this {
    return this.bytes(field, concat(values.map((v) => encodeVarint(v))))
  }

  finish(): Uint8Array {
    return concat(this.chunks)
  }
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

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
}

/** One attribute value; the key says which AttributeProto field carries it. */
export type AttributeValue = { int: number | bigint } | { float: number } | { ints: readonly (number | bigint)[] }

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

function attributeProto(name: string, value: AttributeValue): ProtoWriter {
  const w = new ProtoWriter().string(1, name) // name = 1
  if ('int' in value) return w.varint(20, ATTR_INT).varint(3, value.int) // type = 20, i = 3
  if ('float' in value) return w.varint(20, ATTR_FLOAT).float32(2, value.float) // f = 2 (fixed32)
  return w.varint(20, ATTR_INTS).packedVarints(8, value.ints) // ints = 8
}

function nodeProto(node: NodeSpec, index: number): ProtoWriter {
  const w = new ProtoWriter()
  for (const input of node.inputs) w.string(1, input) // input = 1
  for (const output of node.outputs) w.string(2, output) // output = 2
  w.string(3, node.name ?? `${node.opType}_${index}`) // name = 3
  w.string(4, node.opType) // op_type = 4
  for (const [name, value] of Object.entries(node.attributes ?? {})) w.message(5, attributeProto(name, value)) // attribute = 5
  return w
}

function valueInfoProto(value: ValueSpec): ProtoWriter {
  const shape = new ProtoWriter()
  for (const dim of value.shape) {
    // TensorShapeProto.dim = 1; Dimension oneof: dim_value = 1 | dim_param = 2.
    const d = typeof dim === 'string' ? new ProtoWriter().string(2, dim) : new ProtoWriter().varint(1, dim)
    shape.message(1, d)
  }
  // TypeProto.Tensor: elem_type = 1, shape = 2.
  const tensorType = new ProtoWriter().varint(1, ONNX_ELEM_TYPE_BY_DATATYPE[value.datatype]).message(2, shape)
  const typeProto = new ProtoWriter().message(1, tensorType) // TypeProto.tensor_type = 1
  return new ProtoWriter().string(1, value.name).message(2, typeProto) // ValueInfoProto: name = 1, type = 2
}

function tensorProto(init: InitializerSpec): ProtoWriter {
  const w = new ProtoWriter()
  if (init.dims.length > 0) w.packedVarints(1, init.dims) // dims = 1
  w.varint(2, ONNX_ELEM_TYPE_BY_DATATYPE[init.datatype]) // data_type = 2
  w.string(8, init.name) // name = 8
  return w.bytes(9, init.data) // raw_data = 9
}

/** Serializes a ModelProto with one graph against the default ai.onnx domain. */
export function buildModel(spec: ModelSpec): Uint8Array {
  const graph = new ProtoWriter()
  spec.nodes.forEach((node, i) => graph.message(1, nodeProto(node, i))) // GraphProto.node = 1
  graph.string(2, spec.graphName ?? 'test_graph') // name = 2
  for (const init of spec.initializers ?? []) graph.message(5, tensorProto(init)) // initializer = 5
  for (const input of spec.inputs) graph.message(11, valueInfoProto(input)) // input = 11
  for (const output of spec.outputs) graph.message(12, valueInfoProto(output)) // output = 12

  // OperatorSetIdProto: domain = 1 ("" is ai.onnx), version = 2.
  const opset = new ProtoWriter().string(1, '').varint(2, spec.opset ?? 13)
  return new ProtoWriter()
    .varint(1, spec.irVersion ?? 8) // ModelProto.ir_version = 1
    .string(2, 'depinfer-test') // producer_name = 2
    .message(7, graph) // graph = 7
    .message(8, opset) // opset_import = 8
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
