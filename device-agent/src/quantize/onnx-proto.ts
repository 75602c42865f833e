/**
 * ONNX model files (onnx.proto, proto2) decoded to plain objects and encoded back.
 *
 * Only what the quantizer reads or rewrites is decoded: the model's IR version, opset imports and
 * graph; the graph's nodes, initializers and inputs/outputs/value_info; nodes with their
 * attributes; tensors. Every other field (producer, doc strings, metadata, training info,
 * functions, sparse initializers, TypeProtos, external-data records…) is kept as a `RawField` and
 * written back unchanged at its place in field-number order, which is the order protobuf
 * serializers emit, so decoding then encoding an untouched model reproduces the file byte for
 * byte (tested on the bundled models).
 *
 * Presence matters in proto2 (an empty string that was written is written again), so optional
 * scalars are `undefined` when the field was absent.
 *
 * Field numbers: https://github.com/onnx/onnx/blob/main/onnx/onnx.proto
 */
import {
  WIRE_FIXED32,
  WIRE_FIXED64,
  WIRE_LEN,
  WIRE_VARINT,
  WireFormatError,
  WireReader,
  WireWriter,
  type RawField,
} from '@depinfer/shared'

/** The input is not a (complete) ONNX model; the message says what was wrong. */
export class OnnxFormatError extends Error {
  override readonly name = 'OnnxFormatError'
}

/** TensorProto.DataType values the quantizer deals with. */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
  FLOAT16: 10,
  DOUBLE: 11,
} as const

/** A TensorProto.DataType for messages: its name where DataType has one (FLOAT16), else the number. */
export function dataTypeName(dataType: number | undefined): string {
  return Object.entries(DataType).find(([, value]) => value === dataType)?.[0] ?? `data type ${dataType ?? 'unset'}`
}

/** AttributeProto.AttributeType values. */
export const AttributeType = {
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
  TENSORS: 9,
  GRAPHS: 10,
} as const

export interface OperatorSetId {
  domain?: string
  version?: number
  unknown: RawField[]
}

export interface Tensor {
  dims: number[]
  dataType?: number
  floatData: number[]
  int32Data: number[]
  int64Data: bigint[]
  name?: string
  /** A view into the decoded file for untouched tensors (no copy of the weights). */
  rawData?: Uint8Array
  doubleData: number[]
  uint64Data: bigint[]
  /** segment, string_data, doc_string, external_data, data_location, metadata_props. */
  unknown: RawField[]
}

export interface Attribute {
  name?: string
  f?: number
  i?: bigint
  s?: Uint8Array
  t?: Tensor
  g?: Graph
  floats: number[]
  ints: bigint[]
  strings: Uint8Array[]
  tensors: Tensor[]
  graphs: Graph[]
  type?: number
  /** doc_string, tp, type_protos, ref_attr_name, sparse tensors. */
  unknown: RawField[]
}

export interface Node {
  input: string[]
  output: string[]
  name?: string
  opType?: string
  attribute: Attribute[]
  domain?: string
  /** doc_string, overload, metadata_props, device_configurations. */
  unknown: RawField[]
}

export interface ValueInfo {
  name?: string
  /** The TypeProto, encoded (read it with `tensorTypeOf`). */
  type?: Uint8Array
  unknown: RawField[]
}

export interface Graph {
  node: Node[]
  name?: string
  initializer: Tensor[]
  input: ValueInfo[]
  output: ValueInfo[]
  valueInfo: ValueInfo[]
  /** doc_string, quantization_annotation, sparse_initializer, metadata_props. */
  unknown: RawField[]
}

export interface Model {
  irVersion?: number
  graph?: Graph
  opsetImport: OperatorSetId[]
  /** producer_name/version, domain, model_version, doc_string, metadata_props, training_info, functions. */
  unknown: RawField[]
}

// ---------------------------------------------------------------------------------------------
// Decoding

function decodeOperatorSetId(r: WireReader): OperatorSetId {
  const out: OperatorSetId = { unknown: [] }
  while (!r.done) {
    const h = r.header()
    if (h.field === 1 && h.wire === WIRE_LEN) out.domain = r.string()
    else if (h.field === 2 && h.wire === WIRE_VARINT) out.version = r.int()
    else out.unknown.push(r.raw(h))
  }
  return out
}

function decodeTensor(r: WireReader): Tensor {
  const out: Tensor = { dims: [], floatData: [], int32Data: [], int64Data: [], doubleData: [], uint64Data: [], unknown: [] }
  while (!r.done) {
    const h = r.header()
    switch (h.field) {
      case 1:
        r.repeated(h.wire, WIRE_VARINT, (x) => x.int(), out.dims)
        break
      case 2:
        r.expect(h.wire, WIRE_VARINT)
        out.dataType = r.int()
        break
      case 4:
        r.repeated(h.wire, WIRE_FIXED32, (x) => x.float(), out.floatData)
        break
      case 5:
        r.repeated(h.wire, WIRE_VARINT, (x) => x.int(), out.int32Data)
        break
      case 7:
        r.repeated(h.wire, WIRE_VARINT, (x) => x.int64(), out.int64Data)
        break
      case 8:
        r.expect(h.wire, WIRE_LEN)
        out.name = r.string()
        break
      case 9:
        r.expect(h.wire, WIRE_LEN)
        out.rawData = r.bytes()
        break
      case 10:
        r.repeated(h.wire, WIRE_FIXED64, (x) => x.double(), out.doubleData)
        break
      case 11:
        r.repeated(h.wire, WIRE_VARINT, (x) => x.varint(), out.uint64Data)
        break
      default:
        out.unknown.push(r.raw(h))
    }
  }
  return out
}

function decodeAttribute(r: WireReader): Attribute {
  const out: Attribute = { floats: [], ints: [], strings: [], tensors: [], graphs: [], unknown: [] }
  while (!r.done) {
    const h = r.header()
    switch (h.field) {
      case 1:
        r.expect(h.wire, WIRE_LEN)
        out.name = r.string()
        break
      case 2:
        r.expect(h.wire, WIRE_FIXED32)
        out.f = r.float()
        break
      case 3:
        r.expect(h.wire, WIRE_VARINT)
        out.i = r.int64()
        break
      case 4:
        r.expect(h.wire, WIRE_LEN)
        out.s = r.bytes()
        break
      case 5:
        r.expect(h.wire, WIRE_LEN)
        out.t = decodeTensor(r.sub())
        break
      case 6:
        r.expect(h.wire, WIRE_LEN)
        out.g = decodeGraph(r.sub())
        break
      case 7:
        r.repeated(h.wire, WIRE_FIXED32, (x) => x.float(), out.floats)
        break
      case 8:
        r.repeated(h.wire, WIRE_VARINT, (x) => x.int64(), out.ints)
        break
      case 9:
        r.expect(h.wire, WIRE_LEN)
        out.strings.push(r.bytes())
        break
      case 10:
        r.expect(h.wire, WIRE_LEN)
        out.tensors.push(decodeTensor(r.sub()))
        break
      case 11:
        r.expect(h.wire, WIRE_LEN)
        out.graphs.push(decodeGraph(r.sub()))
        break
      case 20:
        r.expect(h.wire, WIRE_VARINT)
        out.type = r.int()
        break
      default:
        out.unknown.push(r.raw(h))
    }
  }
  return out
}

function decodeNode(r: WireReader): Node {
  const out: Node = { input: [], output: [], attribute: [], unknown: [] }
  while (!r.done) {
    const h = r.header()
    if (h.field === 1 && h.wire === WIRE_LEN) out.input.push(r.string())
    else if (h.field === 2 && h.wire === WIRE_LEN) out.output.push(r.string())
    else if (h.field === 3 && h.wire === WIRE_LEN) out.name = r.string()
    else if (h.field === 4 && h.wire === WIRE_LEN) out.opType = r.string()
    else if (h.field === 5 && h.wire === WIRE_LEN) out.attribute.push(decodeAttribute(r.sub()))
    else if (h.field === 7 && h.wire === WIRE_LEN) out.domain = r.string()
    else out.unknown.push(r.raw(h))
  }
  return out
}

function decodeValueInfo(r: WireReader): ValueInfo {
  const out: ValueInfo = { unknown: [] }
  while (!r.done) {
    const h = r.header()
    if (h.field === 1 && h.wire === WIRE_LEN) out.name = r.string()
    else if (h.field === 2 && h.wire === WIRE_LEN) out.type = r.bytes()
    else out.unknown.push(r.raw(h))
  }
  return out
}

function decodeGraph(r: WireReader): Graph {
  const out: Graph = { node: [], initializer: [], input: [], output: [], valueInfo: [], unknown: [] }
  while (!r.done) {
    const h = r.header()
    if (h.field === 1 && h.wire === WIRE_LEN) out.node.push(decodeNode(r.sub()))
    else if (h.field === 2 && h.wire === WIRE_LEN) out.name = r.string()
    else if (h.field === 5 && h.wire === WIRE_LEN) out.initializer.push(decodeTensor(r.sub()))
    else if (h.field === 11 && h.wire === WIRE_LEN) out.input.push(decodeValueInfo(r.sub()))
    else if (h.field === 12 && h.wire === WIRE_LEN) out.output.push(decodeValueInfo(r.sub()))
    else if (h.field === 13 && h.wire === WIRE_LEN) out.valueInfo.push(decodeValueInfo(r.sub()))
    else out.unknown.push(r.raw(h))
  }
  return out
}

/**
 * Decodes an ONNX ModelProto. Throws `OnnxFormatError` for anything that is not a complete model:
 * malformed protobuf (which is what most non-ONNX files and truncated files look like), or a
 * message without the graph, IR version and opset imports every model has. Tensors' raw_data
 * stays a view into `bytes`, so keep `bytes` unchanged while the model is in use.
 */
export function decodeModel(bytes: Uint8Array): Model {
  if (bytes.length === 0) throw new OnnxFormatError('not an ONNX model: the file is empty')
  const model: Model = { opsetImport: [], unknown: [] }
  try {
    const r = new WireReader(bytes)
    while (!r.done) {
      const h = r.header()
      if (h.field === 1) {
        r.expect(h.wire, WIRE_VARINT)
        model.irVersion = r.int()
      } else if (h.field === 7) {
        r.expect(h.wire, WIRE_LEN)
        model.graph = decodeGraph(r.sub())
      } else if (h.field === 8) {
        r.expect(h.wire, WIRE_LEN)
        model.opsetImport.push(decodeOperatorSetId(r.sub()))
      } else {
        model.unknown.push(r.raw(h))
      }
    }
  } catch (error) {
    if (error instanceof WireFormatError) {
      throw new OnnxFormatError(`not an ONNX model, or a truncated one: malformed protobuf (${error.message})`, { cause: error })
    }
    throw error
  }
  const missing = [
    model.irVersion === undefined && 'ir_version',
    model.graph === undefined && 'graph',
    model.opsetImport.length === 0 && 'opset_import',
  ].filter((name): name is string => name !== false)
  if (missing.length > 0) {
    throw new OnnxFormatError(`not an ONNX model, or a truncated one: no ${missing.join(', ')} in the ModelProto`)
  }
  return model
}

// ---------------------------------------------------------------------------------------------
// Encoding: fields in field-number order, kept raw fields slotted in at their number.

/** Writes the kept raw fields that belong before field `next` (all of them when `next` is omitted). */
class Interleave {
  #index = 0
  constructor(
    private readonly w: WireWriter,
    private readonly unknown: readonly RawField[],
  ) {}
  upTo(next: number): WireWriter {
    while (this.#index < this.unknown.length && this.unknown[this.#index]!.field < next) this.w.raw(this.unknown[this.#index++]!)
    return this.w
  }
  rest(): void {
    this.upTo(Number.POSITIVE_INFINITY)
  }
}

/** Kept fields in field-number order (stable), which is how they were read from a canonical file. */
function sorted(unknown: RawField[]): RawField[] {
  return unknown.every((f, i) => i === 0 || unknown[i - 1]!.field <= f.field) ? unknown : [...unknown].sort((a, b) => a.field - b.field)
}

function encodeOperatorSetId(w: WireWriter, o: OperatorSetId): void {
  const k = new Interleave(w, sorted(o.unknown))
  if (o.domain !== undefined) k.upTo(1).string(1, o.domain)
  if (o.version !== undefined) k.upTo(2).int(2, o.version)
  k.rest()
}

function encodeTensor(w: WireWriter, t: Tensor): void {
  const k = new Interleave(w, sorted(t.unknown))
  // dims and the other repeated scalars without [packed = true] in onnx.proto go one per field.
  for (const d of t.dims) k.upTo(1).int(1, d)
  if (t.dataType !== undefined) k.upTo(2).int(2, t.dataType)
  if (t.floatData.length > 0) k.upTo(4).packedFloats(4, t.floatData)
  if (t.int32Data.length > 0) k.upTo(5).packedInts(5, t.int32Data)
  if (t.int64Data.length > 0) k.upTo(7).packedInts(7, t.int64Data)
  if (t.name !== undefined) k.upTo(8).string(8, t.name)
  if (t.rawData !== undefined) k.upTo(9).bytes(9, t.rawData)
  if (t.doubleData.length > 0) k.upTo(10).packedDoubles(10, t.doubleData)
  if (t.uint64Data.length > 0) k.upTo(11).packedInts(11, t.uint64Data)
  k.rest()
}

function encodeAttribute(w: WireWriter, a: Attribute): void {
  const k = new Interleave(w, sorted(a.unknown))
  if (a.name !== undefined) k.upTo(1).string(1, a.name)
  if (a.f !== undefined) k.upTo(2).float(2, a.f)
  if (a.i !== undefined) k.upTo(3).int(3, a.i)
  if (a.s !== undefined) k.upTo(4).bytes(4, a.s)
  const t = a.t
  if (t !== undefined) k.upTo(5).message(5, (x) => encodeTensor(x, t))
  const g = a.g
  if (g !== undefined) k.upTo(6).message(6, (x) => encodeGraph(x, g))
  for (const f of a.floats) k.upTo(7).float(7, f)
  for (const i of a.ints) k.upTo(8).int(8, i)
  for (const s of a.strings) k.upTo(9).bytes(9, s)
  for (const tensor of a.tensors) k.upTo(10).message(10, (x) => encodeTensor(x, tensor))
  for (const graph of a.graphs) k.upTo(11).message(11, (x) => encodeGraph(x, graph))
  if (a.type !== undefined) k.upTo(20).int(20, a.type)
  k.rest()
}

function encodeNode(w: WireWriter, n: Node): void {
  const k = new Interleave(w, sorted(n.unknown))
  for (const input of n.input) k.upTo(1).string(1, input)
  for (const output of n.output) k.upTo(2).string(2, output)
  if (n.name !== undefined) k.upTo(3).string(3, n.name)
  if (n.opType !== undefined) k.upTo(4).string(4, n.opType)
  for (const a of n.attribute) k.upTo(5).message(5, (x) => encodeAttribute(x, a))
  if (n.domain !== undefined) k.upTo(7).string(7, n.domain)
  k.rest()
}

function encodeValueInfo(w: WireWriter, v: ValueInfo): void {
  const k = new Interleave(w, sorted(v.unknown))
  if (v.name !== undefined) k.upTo(1).string(1, v.name)
  if (v.type !== undefined) k.upTo(2).bytes(2, v.type)
  k.rest()
}

function encodeGraph(w: WireWriter, g: Graph): void {
  const k = new Interleave(w, sorted(g.unknown))
  for (const n of g.node) k.upTo(1).message(1, (x) => encodeNode(x, n))
  if (g.name !== undefined) k.upTo(2).string(2, g.name)
  for (const t of g.initializer) k.upTo(5).message(5, (x) => encodeTensor(x, t))
  for (const v of g.input) k.upTo(11).message(11, (x) => encodeValueInfo(x, v))
  for (const v of g.output) k.upTo(12).message(12, (x) => encodeValueInfo(x, v))
  for (const v of g.valueInfo) k.upTo(13).message(13, (x) => encodeValueInfo(x, v))
  k.rest()
}

export function encodeModel(m: Model): Uint8Array {
  const w = new WireWriter()
  const k = new Interleave(w, sorted(m.unknown))
  if (m.irVersion !== undefined) k.upTo(1).int(1, m.irVersion)
  const graph = m.graph
  if (graph !== undefined) k.upTo(7).message(7, (x) => encodeGraph(x, graph))
  for (const o of m.opsetImport) k.upTo(8).message(8, (x) => encodeOperatorSetId(x, o))
  k.rest()
  return w.finish()
}

// ---------------------------------------------------------------------------------------------
// TypeProto (read-only) and tensor helpers

export interface TensorType {
  elemType: number
  /** A number for a fixed dimension, the symbolic name (or undefined) for a dynamic one. */
  shape: (number | string | undefined)[] | undefined
}

/** The tensor element type and shape of a graph input/output, or undefined if it is not a tensor. */
export function tensorTypeOf(info: ValueInfo): TensorType | undefined {
  if (info.type === undefined) return undefined
  const type = new WireReader(info.type)
  while (!type.done) {
    const h = type.header()
    if (h.field !== 1 || h.wire !== WIRE_LEN) {
      type.skip(h.wire)
      continue
    }
    const tensor = type.sub()
    const out: TensorType = { elemType: 0, shape: undefined }
    while (!tensor.done) {
      const th = tensor.header()
      if (th.field === 1 && th.wire === WIRE_VARINT) out.elemType = tensor.int()
      else if (th.field === 2 && th.wire === WIRE_LEN) {
        out.shape = []
        const shape = tensor.sub()
        while (!shape.done) {
          const sh = shape.header()
          if (sh.field !== 1 || sh.wire !== WIRE_LEN) {
            shape.skip(sh.wire)
            continue
          }
          const dim = shape.sub()
          let value: number | string | undefined
          while (!dim.done) {
            const dh = dim.header()
            if (dh.field === 1 && dh.wire === WIRE_VARINT) value = dim.int()
            else if (dh.field === 2 && dh.wire === WIRE_LEN) value = dim.string()
            else dim.skip(dh.wire)
          }
          out.shape.push(value)
        }
      } else tensor.skip(th.wire)
    }
    return out
  }
  return undefined
}

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1)
}

/** A FLOAT tensor's values, whether stored as raw_data (little-endian) or float_data. */
export function floatValues(t: Tensor): Float32Array {
  if (t.dataType !== DataType.FLOAT) throw new OnnxFormatError(`tensor ${t.name ?? '?'} is not FLOAT (${dataTypeName(t.dataType)})`)
  const count = elementCount(t.dims)
  if (t.rawData !== undefined) {
    if (t.rawData.length !== count * 4) {
      throw new OnnxFormatError(`tensor ${t.name ?? '?'}: raw_data has ${t.rawData.length} bytes for ${count} floats`)
    }
    const view = new DataView(t.rawData.buffer, t.rawData.byteOffset, t.rawData.byteLength)
    const out = new Float32Array(count)
    for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true)
    return out
  }
  if (t.floatData.length !== count) {
    // No data at all: external data (data_location = EXTERNAL), which this tool does not read.
    throw new OnnxFormatError(`tensor ${t.name ?? '?'}: ${t.floatData.length} values for ${count} elements (external data is not supported)`)
  }
  return Float32Array.from(t.floatData)
}

export function floatTensor(name: string, dims: readonly number[], values: Float32Array): Tensor {
  const raw = new Uint8Array(values.length * 4)
  const view = new DataView(raw.buffer)
  values.forEach((v, i) => view.setFloat32(i * 4, v, true))
  return { ...emptyTensor(name, dims, DataType.FLOAT), rawData: raw }
}

/** An INT8 or UINT8 tensor from its bytes. */
export function byteTensor(name: string, dims: readonly number[], dataType: typeof DataType.INT8 | typeof DataType.UINT8, values: Int8Array | Uint8Array): Tensor {
  return { ...emptyTensor(name, dims, dataType), rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) }
}

function emptyTensor(name: string, dims: readonly number[], dataType: number): Tensor {
  return { dims: [...dims], dataType, name, floatData: [], int32Data: [], int64Data: [], doubleData: [], uint64Data: [], unknown: [] }
}

export function intAttribute(name: string, value: number): Attribute {
  return { name, i: BigInt(value), type: AttributeType.INT, floats: [], ints: [], strings: [], tensors: [], graphs: [], unknown: [] }
}

export function floatAttribute(name: string, value: number): Attribute {
  return { name, f: value, type: AttributeType.FLOAT, floats: [], ints: [], strings: [], tensors: [], graphs: [], unknown: [] }
}

export function intsAttribute(name: string, values: readonly number[]): Attribute {
  return { name, ints: values.map(BigInt), type: AttributeType.INTS, floats: [], strings: [], tensors: [], graphs: [], unknown: [] }
}

/** An INT attribute's value as a number, or `fallback` when the node does not carry it. */
export function intAttr(node: Node, name: string, fallback: number): number {
  const a = node.attribute.find((x) => x.name === name)
  return a?.i === undefined ? fallback : Number(a.i)
}

export function floatAttr(node: Node, name: string, fallback: number): number {
  const a = node.attribute.find((x) => x.name === name)
  return a?.f === undefined ? fallback : a.f
}
