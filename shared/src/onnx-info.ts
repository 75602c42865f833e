/**
 * Reads what a model publisher's ONNX file declares — IR version, opsets, graph inputs and
 * outputs with datatypes and shapes — straight from the protobuf wire format, without
 * onnxruntime (the edge runs in Workers, where there is none). Initializer bytes are skipped,
 * not copied, so a 100 MB model is read in milliseconds.
 *
 * Field numbers are onnx.proto3's (ModelProto, GraphProto, ValueInfoProto, TypeProto,
 * TensorShapeProto); only what is needed here is decoded, everything else is skipped.
 */
import type { Datatype } from './datatypes.js'
import { ProtocolError } from './errors.js'
import type { TensorSpec } from './messages.js'

export class OnnxFormatError extends ProtocolError {
  override name = 'OnnxFormatError'
}

export interface OnnxModelInfo {
  irVersion: number
  /** Operator set versions by domain ('' is the default ONNX domain). */
  opsets: Record<string, number>
  producer: string
  graphName: string
  /** Graph inputs that are not initializers, with `-1` for dynamic dimensions. */
  inputs: TensorSpec[]
  outputs: TensorSpec[]
  nodeCount: number
}

/** TensorProto.DataType → v2 datatype (STRING and complex types are not served). */
const ELEM_TYPES: Record<number, Datatype> = {
  1: 'FP32',
  2: 'UINT8',
  3: 'INT8',
  4: 'UINT16',
  5: 'INT16',
  6: 'INT32',
  7: 'INT64',
  9: 'BOOL',
  10: 'FP16',
  11: 'FP64',
  12: 'UINT32',
  13: 'UINT64',
}

/** One protobuf field: its number, wire type, and value (varint) or byte range (length-delimited). */
interface Field {
  number: number
  wireType: number
  varint: bigint
  start: number
  end: number
}

class Reader {
  pos: number
  constructor(
    readonly bytes: Uint8Array,
    start: number,
    readonly end: number,
    readonly what: string,
  ) {
    this.pos = start
  }

  fail(why: string): never {
    throw new OnnxFormatError(`not a valid ONNX model: ${why} (in ${this.what} at byte ${this.pos})`, 'model')
  }

  varint(): bigint {
    let result = 0n
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.pos >= this.end) this.fail('truncated varint')
      const byte = this.bytes[this.pos++]!
      result |= BigInt(byte & 0x7f) << shift
      if ((byte & 0x80) === 0) return result
    }
    return this.fail('varint longer than 10 bytes')
  }

  *fields(): Generator<Field> {
    while (this.pos < this.end) {
      const key = this.varint()
      const number = Number(key >> 3n)
      const wireType = Number(key & 7n)
      if (number === 0) this.fail('field number 0')
      const field: Field = { number, wireType, varint: 0n, start: this.pos, end: this.pos }
      switch (wireType) {
        case 0:
          field.varint = this.varint()
          break
        case 1:
          this.pos += 8
          break
        case 2: {
          const length = this.varint()
          if (length > BigInt(this.end - this.pos)) this.fail('length-delimited field runs past its end')
          field.start = this.pos
          this.pos += Number(length)
          field.end = this.pos
          break
        }
        case 5:
          this.pos += 4
          break
        default:
          this.fail(`unsupported wire type ${wireType}`)
      }
      if (this.pos > this.end) this.fail('field runs past its end')
      yield field
    }
  }
}

const text = new TextDecoder()
const stringOf = (bytes: Uint8Array, f: Field) => text.decode(bytes.subarray(f.start, f.end))
const sub = (r: Reader, f: Field, what: string) => new Reader(r.bytes, f.start, f.end, what)

/** A ValueInfoProto as a TensorSpec; undefined for a non-tensor (sequence, map) value. */
function readValueInfo(r: Reader, what: string): TensorSpec | { name: string; unsupported: string } {
  let name = ''
  let elemType: number | undefined
  let shape: number[] | undefined
  let nonTensor = false
  for (const f of r.fields()) {
    if (f.number === 1 && f.wireType === 2) name = stringOf(r.bytes, f)
    else if (f.number === 2 && f.wireType === 2) {
      // TypeProto: tensor_type = 1; anything else (sequence 4, map 5, optional 9…) is not a tensor.
      for (const t of sub(r, f, `${what}.type`).fields()) {
        if (t.number !== 1 || t.wireType !== 2) {
          if (t.wireType === 2) nonTensor = true
          continue
        }
        const tensor = sub(r, t, `${what}.type.tensor_type`)
        for (const tf of tensor.fields()) {
          if (tf.number === 1 && tf.wireType === 0) elemType = Number(tf.varint)
          else if (tf.number === 2 && tf.wireType === 2) {
            shape = []
            for (const dim of sub(r, tf, `${what}.shape`).fields()) {
              if (dim.number !== 1 || dim.wireType !== 2) continue
              let value = -1
              for (const d of sub(r, dim, `${what}.shape.dim`).fields()) {
                // dim_value (1) is an int64; dim_param (2), a symbolic name, is dynamic.
                if (d.number === 1 && d.wireType === 0) value = d.varint <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(d.varint) : -1
              }
              shape.push(value)
            }
          }
        }
      }
    }
  }
  if (!name) r.fail(`${what} has no name`)
  if (nonTensor || elemType === undefined) return { name, unsupported: 'not a tensor' }
  const datatype = ELEM_TYPES[elemType]
  if (!datatype) return { name, unsupported: `element type ${elemType} (string, complex or 8-bit float)` }
  // No shape at all means unknown rank; it cannot be described as a v2 shape.
  if (shape === undefined) return { name, unsupported: 'no shape (unknown rank)' }
  return { name, datatype, shape }
}

/**
 * Decodes the model's metadata. Throws OnnxFormatError (field `model`) for bytes that are not
 * an ONNX ModelProto, a model without a graph, inputs or outputs, or with inputs/outputs whose
 * type depinfer cannot serve (non-tensor, string, unknown rank).
 */
export function readOnnxModelInfo(bytes: Uint8Array): OnnxModelInfo {
  const model = new Reader(bytes, 0, bytes.length, 'ModelProto')
  if (bytes.length === 0) model.fail('the file is empty')
  let irVersion = 0
  let producer = ''
  const opsets: Record<string, number> = {}
  let graph: Field | undefined
  for (const f of model.fields()) {
    if (f.number === 1 && f.wireType === 0) irVersion = Number(f.varint)
    else if (f.number === 2 && f.wireType === 2) producer = stringOf(bytes, f)
    else if (f.number === 7 && f.wireType === 2) graph = f
    else if (f.number === 8 && f.wireType === 2) {
      let domain = ''
      let version = 0
      for (const o of sub(model, f, 'opset_import').fields()) {
        if (o.number === 1 && o.wireType === 2) domain = stringOf(bytes, o)
        else if (o.number === 2 && o.wireType === 0) version = Number(o.varint)
      }
      opsets[domain] = version
    }
  }
  if (irVersion < 3) model.fail(irVersion === 0 ? 'no ir_version' : `ir_version ${irVersion} is too old (need ≥ 3)`)
  if (!graph) return model.fail('no graph')
  if (!('' in opsets) && !('ai.onnx' in opsets)) model.fail('no default-domain opset_import')

  const g = sub(model, graph, 'GraphProto')
  let graphName = ''
  let nodeCount = 0
  const initializers = new Set<string>()
  const rawInputs: Field[] = []
  const rawOutputs: Field[] = []
  for (const f of g.fields()) {
    if (f.wireType !== 2) continue
    if (f.number === 1) nodeCount++
    else if (f.number === 2) graphName = stringOf(bytes, f)
    else if (f.number === 5) {
      // TensorProto.name is field 8; the (possibly huge) data fields are skipped by the reader.
      for (const t of sub(g, f, 'initializer').fields()) if (t.number === 8 && t.wireType === 2) initializers.add(stringOf(bytes, t))
    } else if (f.number === 11) rawInputs.push(f)
    else if (f.number === 12) rawOutputs.push(f)
  }
  if (nodeCount === 0) g.fail('the graph has no nodes')
  const specs = (fields: Field[], kind: 'input' | 'output') =>
    fields
      .map((f, i) => readValueInfo(sub(g, f, `graph.${kind}[${i}]`), `graph.${kind}[${i}]`))
      .filter((spec) => kind === 'output' || !initializers.has(spec.name))
      .map((spec) => {
        if ('unsupported' in spec) throw new OnnxFormatError(`${kind} ${JSON.stringify(spec.name)} cannot be served: ${spec.unsupported}`, 'model')
        return spec
      })
  const inputs = specs(rawInputs, 'input')
  const outputs = specs(rawOutputs, 'output')
  if (inputs.length === 0) g.fail('the graph has no inputs')
  if (outputs.length === 0) g.fail('the graph has no outputs')
  return { irVersion, opsets, producer, graphName, inputs, outputs, nodeCount }
}
