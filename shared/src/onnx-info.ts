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
import { WIRE_LEN, WIRE_VARINT, WireFormatError, WireReader, type WireType } from './protobuf-wire.js'

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

/** Throws the OnnxFormatError every malformed file gets, saying in which message and where. */
function fail(why: string, what: string, offset: number): never {
  throw new OnnxFormatError(`not a valid ONNX model: ${why} (in ${what} at byte ${offset})`, 'model')
}

/**
 * Reads the fields of the message `r` is over: `read` reads the value of each field it wants
 * and returns false for the others, which are skipped (length-delimited ones without copying, so
 * initializers' data costs nothing). Malformed protobuf becomes an OnnxFormatError naming `what`;
 * nested messages read with readFields inside `read` are named by their own call.
 */
function readFields(r: WireReader, what: string, read: (field: number, wire: WireType) => boolean): void {
  try {
    while (!r.done) {
      const { field, wire } = r.header()
      if (!read(field, wire)) r.skip(wire)
    }
  } catch (error) {
    if (error instanceof WireFormatError) fail(error.reason, what, error.offset)
    throw error
  }
}

/** A TensorShapeProto's dimensions, -1 for a dynamic one. */
function readShape(r: WireReader, what: string): number[] {
  const shape: number[] = []
  readFields(r, `${what}.shape`, (field, wire) => {
    if (field !== 1 || wire !== WIRE_LEN) return false
    const dim = r.sub()
    let value = -1
    readFields(dim, `${what}.shape.dim`, (d, dWire) => {
      // dim_value (1) is an int64; dim_param (2), a symbolic name, is dynamic.
      if (d !== 1 || dWire !== WIRE_VARINT) return false
      const v = dim.varint()
      value = v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : -1
      return true
    })
    shape.push(value)
    return true
  })
  return shape
}

/** A ValueInfoProto as a TensorSpec, or why it cannot be one. */
function readValueInfo(r: WireReader, what: string): TensorSpec | { name: string; unsupported: string } {
  let name = ''
  let elemType: number | undefined
  let shape: number[] | undefined
  let nonTensor = false
  readFields(r, what, (field, wire) => {
    if (field === 1 && wire === WIRE_LEN) name = r.string()
    else if (field === 2 && wire === WIRE_LEN) {
      // TypeProto: tensor_type = 1; anything else (sequence 4, map 5, optional 9…) is not a tensor.
      const type = r.sub()
      readFields(type, `${what}.type`, (t, tWire) => {
        if (tWire !== WIRE_LEN) return false
        if (t !== 1) {
          nonTensor = true
          return false
        }
        const tensor = type.sub()
        readFields(tensor, `${what}.type.tensor_type`, (tf, tfWire) => {
          if (tf === 1 && tfWire === WIRE_VARINT) elemType = Number(tensor.varint())
          else if (tf === 2 && tfWire === WIRE_LEN) shape = readShape(tensor.sub(), what)
          else return false
          return true
        })
        return true
      })
    } else return false
    return true
  })
  if (!name) fail(`${what} has no name`, what, r.position)
  if (nonTensor || elemType === undefined) return { name, unsupported: 'not a tensor' }
  const datatype = ELEM_TYPES[elemType]
  if (!datatype) return { name, unsupported: `element type ${UNSERVED_ELEM_TYPES[elemType] ?? elemType}, which the Open Inference Protocol's datatypes here do not include` }
  // No shape at all means unknown rank; it cannot be described as a v2 shape.
  if (shape === undefined) return { name, unsupported: 'no shape (unknown rank)' }
  return { name, datatype, shape }
}

/** ONNX element types depinfer does not serve, by their ONNX names (TensorProto.DataType). */
const UNSERVED_ELEM_TYPES: Record<number, string> = {
  8: 'string', 14: 'complex64', 15: 'complex128', 16: 'bfloat16', 17: 'float8e4m3fn', 18: 'float8e4m3fnuz',
  19: 'float8e5m2', 20: 'float8e5m2fnuz', 21: 'uint4', 22: 'int4', 23: 'float4e2m1',
}

/**
 * More graph inputs (or outputs) than this is refused before they are decoded: each costs a
 * reader, and millions of empty ones in a few MB of file would take gigabytes. Models with
 * key-value caches have a few hundred.
 */
const MAX_GRAPH_TENSORS = 100_000
/** Longest input or output name served (real ones are tens of characters). */
export const MAX_TENSOR_NAME_CHARS = 1_024
/** Most metadata of a model's inputs and outputs together, as JSON: a few hundred tensors of a KV cache fit. */
export const MAX_TENSOR_METADATA_CHARS = 64 * 1024

/**
 * Decodes the model's metadata. Throws OnnxFormatError (field `model`) for bytes that are not
 * an ONNX ModelProto, a model without a graph, inputs or outputs, or with inputs/outputs whose
 * type depinfer cannot serve (non-tensor, string, unknown rank).
 */
export function readOnnxModelInfo(bytes: Uint8Array): OnnxModelInfo {
  if (bytes.length === 0) fail('the file is empty', 'ModelProto', 0)
  const model = new WireReader(bytes)
  let irVersion = 0
  let producer = ''
  const opsets: Record<string, number> = {}
  let graph: WireReader | undefined
  readFields(model, 'ModelProto', (field, wire) => {
    if (field === 1 && wire === WIRE_VARINT) irVersion = Number(model.varint())
    else if (field === 2 && wire === WIRE_LEN) producer = model.string()
    else if (field === 7 && wire === WIRE_LEN) graph = model.sub()
    else if (field === 8 && wire === WIRE_LEN) {
      const opset = model.sub()
      let domain = ''
      let version = 0
      readFields(opset, 'opset_import', (o, oWire) => {
        if (o === 1 && oWire === WIRE_LEN) domain = opset.string()
        else if (o === 2 && oWire === WIRE_VARINT) version = Number(opset.varint())
        else return false
        return true
      })
      opsets[domain] = version
    } else return false
    return true
  })
  const end = bytes.length
  if (irVersion < 3) fail(irVersion === 0 ? 'no ir_version' : `ir_version ${irVersion} is too old (need ≥ 3)`, 'ModelProto', end)
  if (!graph) fail('no graph', 'ModelProto', end)
  if (!('' in opsets) && !('ai.onnx' in opsets)) fail('no default-domain opset_import', 'ModelProto', end)

  const g = graph
  let graphName = ''
  let nodeCount = 0
  const initializers = new Set<string>()
  const rawInputs: WireReader[] = []
  const rawOutputs: WireReader[] = []
  readFields(g, 'GraphProto', (field, wire) => {
    if (wire !== WIRE_LEN) return false
    if (field === 1) {
      nodeCount++ // counted, not decoded: the node is skipped
      return false
    }
    if (field === 2) graphName = g.string()
    else if (field === 5) {
      // TensorProto.name is field 8; the (possibly huge) data fields are skipped, not copied.
      const tensor = g.sub()
      readFields(tensor, 'initializer', (t, tWire) => {
        if (t !== 8 || tWire !== WIRE_LEN) return false
        initializers.add(tensor.string())
        return true
      })
    } else if (field === 11 || field === 12) {
      const list = field === 11 ? rawInputs : rawOutputs
      if (list.length === MAX_GRAPH_TENSORS) fail(`more than ${MAX_GRAPH_TENSORS} graph ${field === 11 ? 'inputs' : 'outputs'}`, 'GraphProto', g.position)
      list.push(g.sub())
    } else return false
    return true
  })
  if (nodeCount === 0) fail('the graph has no nodes', 'GraphProto', g.position)
  assertSelfContained(bytes)
  const specs = (readers: WireReader[], kind: 'input' | 'output') =>
    readers
      .map((r, i) => readValueInfo(r, `graph.${kind}[${i}]`))
      .filter((spec) => kind === 'output' || !initializers.has(spec.name))
      .map((spec) => {
        if ('unsupported' in spec) throw new OnnxFormatError(`${kind} ${JSON.stringify(spec.name)} cannot be served: ${spec.unsupported}`, 'model')
        return spec
      })
  const inputs = specs(rawInputs, 'input')
  const outputs = specs(rawOutputs, 'output')
  if (inputs.length === 0) throw new OnnxFormatError('the graph has no inputs: depinfer serves models that take at least one input', 'model')
  if (outputs.length === 0) fail('the graph has no outputs', 'GraphProto', g.position)
  // Two inputs of one name: onnxruntime refuses to load the graph ("Duplicate definition-site").
  // Two outputs: it loads, but answers one tensor under that name; answers name tensors.
  for (const [kind, list, why] of [
    ['input', inputs, 'onnxruntime cannot load it'],
    ['output', outputs, 'answers name their tensors, and onnxruntime returns only one of them'],
  ] as const) {
    const seen = new Set<string>()
    for (const { name } of list) {
      // onnxruntime-node passes names as C strings: it would know this one only up to the NUL,
      // and every request naming it in full would be refused.
      if (name.includes('\u0000')) throw new OnnxFormatError(`${kind} ${JSON.stringify(name)} has a NUL character in its name, which onnxruntime cuts the name at`, 'model')
      if (seen.has(name)) throw new OnnxFormatError(`the graph has two ${kind}s named ${JSON.stringify(name)}: ${why}`, 'model')
      // onnxruntime-node keys its feeds, fetches and results by name in plain JavaScript
      // objects, where this name sets the prototype instead: every run would fail.
      if (name === '__proto__') throw new OnnxFormatError(`${kind} "__proto__" cannot be served: onnxruntime-node cannot pass a tensor of that name`, 'model')
      if (name.length > MAX_TENSOR_NAME_CHARS) {
        throw new OnnxFormatError(`${kind} ${JSON.stringify(name.slice(0, 40))}… has a name of ${name.length} characters; depinfer serves names of up to ${MAX_TENSOR_NAME_CHARS}`, 'model')
      }
      seen.add(name)
    }
  }
  // A declared size 0: every tensor the input takes is empty, and the load-time batching probe's
  // empty input crashed onnxruntime, the device's whole process, at every start (an audit).
  for (const input of inputs) {
    const zero = input.shape.indexOf(0)
    if (zero !== -1) throw new OnnxFormatError(`input ${JSON.stringify(input.name)} declares size 0 in dimension ${zero} ([${input.shape.join(',')}]): it could only take empty tensors, which depinfer refuses`, 'model')
  }
  // Devices advertise every served model's inputs and outputs in their status: a version with
  // megabytes of them (an audit's 1M-character names) made the status too large for the broker
  // after a few versions, taking the device offline, and passed D1's row size at publish (a 500).
  const metadataChars = JSON.stringify([inputs, outputs]).length
  if (metadataChars > MAX_TENSOR_METADATA_CHARS) {
    throw new OnnxFormatError(`the inputs and outputs take ${metadataChars} characters of metadata (names, shapes); depinfer serves models with up to ${MAX_TENSOR_METADATA_CHARS}`, 'model')
  }
  return { irVersion, opsets, producer, graphName, inputs, outputs, nodeCount }
}

/** Throws OnnxFormatError when the model keeps any tensor in external data files (externalDataTensors). */
export function assertSelfContained(bytes: Uint8Array): void {
  const external = externalDataTensors(bytes)
  if (external.length === 0) return
  const names = external.slice(0, 3).map((n) => JSON.stringify(n)).join(', ') + (external.length > 3 ? ', …' : '')
  throw new OnnxFormatError(
    `the model keeps ${external.length} tensor(s) in external data files (${names}); depinfer serves one self-contained .onnx file: save the model with all tensors inside it (onnx.save(model, path, save_as_external_data=False))`,
    'model',
  )
}

/** Deeper nesting of graphs in attributes than this is refused rather than walked. */
const MAX_GRAPH_NESTING = 64

/**
 * The names of the tensors the model keeps in external data files (TensorProto.data_location
 * EXTERNAL, or external_data entries), anywhere: initializers, sparse initializers, node
 * attributes, subgraphs, training info, functions. A model is one self-contained file here:
 * onnxruntime would read an external tensor from a path the file names, relative to the loading
 * process's working directory, so a published model could make a device read its own files
 * (its key) and answer them as outputs.
 */
export function externalDataTensors(bytes: Uint8Array): string[] {
  const found: string[] = []
  walkGraphs(bytes, {
    training: true,
    tensor: (r) => {
      let name = ''
      let external = false
      readFields(r, 'TensorProto', (field, wire) => {
        if (field === 8 && wire === WIRE_LEN) name = r.string()
        else if (field === 13 && wire === WIRE_LEN) {
          external = true // an external_data entry
          return false
        } else if (field === 14 && wire === WIRE_VARINT) {
          // DataLocation.EXTERNAL is 1; onnxruntime reads the enum truncated to 32 bits, so any
          // value but DEFAULT (0) is taken as external rather than decoded the way it would be.
          if (r.varint() !== 0n) external = true
        }
        else return false
        return true
      })
      if (external) found.push(name)
    },
  })
  return found
}

/**
 * The op_type of every node the model would run: in its graph, in graphs nested in node
 * attributes (If, Loop, Scan bodies) and in its model-local functions. Training graphs are left
 * out (inference never runs them).
 */
export function nodeOpTypes(bytes: Uint8Array): Set<string> {
  const found = new Set<string>()
  walkGraphs(bytes, { training: false, opType: (opType) => found.add(opType) })
  return found
}

/** What walkGraphs reports, and where it looks. */
interface GraphVisitor {
  /** Whether training graphs (TrainingInfoProto) are walked too. */
  training: boolean
  /** Each node's op_type. */
  opType?: (opType: string) => void
  /** Each TensorProto: initializers, node attributes' tensors, sparse tensors' values and indices. */
  tensor?: (r: WireReader) => void
}

/**
 * Walks the model's graph, the graphs nested in node attributes (If, Loop, Scan bodies), its
 * model-local functions (their nodes and their attributes' default values) and, with `training`,
 * its training graphs, reporting what `visit` asks for. Refuses nesting deeper than
 * MAX_GRAPH_NESTING rather than walk it.
 */
function walkGraphs(bytes: Uint8Array, visit: GraphVisitor): void {
  const { tensor } = visit
  const sparse = (r: WireReader, read: (r: WireReader) => void) =>
    readFields(r, 'SparseTensorProto', (field, wire) => {
      if ((field !== 1 && field !== 2) || wire !== WIRE_LEN) return false // values, indices
      read(r.sub())
      return true
    })
  const attribute = (a: WireReader, depth: number) =>
    readFields(a, 'AttributeProto', (f, w) => {
      if (w !== WIRE_LEN) return false
      if (f === 6 || f === 11) graph(a.sub(), depth + 1) // g, graphs
      else if (tensor && (f === 5 || f === 10)) tensor(a.sub()) // t, tensors
      else if (tensor && (f === 22 || f === 23)) sparse(a.sub(), tensor) // sparse_tensor, sparse_tensors
      else return false
      return true
    })
  const node = (r: WireReader, depth: number) =>
    readFields(r, 'NodeProto', (field, wire) => {
      if (wire !== WIRE_LEN) return false
      if (field === 5) attribute(r.sub(), depth)
      else if (field === 4 && visit.opType) visit.opType(r.string())
      else return false
      return true
    })
  const graph = (r: WireReader, depth: number): void => {
    if (depth > MAX_GRAPH_NESTING) fail(`graphs nested more than ${MAX_GRAPH_NESTING} deep`, 'GraphProto', r.position)
    readFields(r, 'GraphProto', (field, wire) => {
      if (wire !== WIRE_LEN) return false
      if (field === 1) node(r.sub(), depth)
      else if (tensor && field === 5) tensor(r.sub()) // initializer
      else if (tensor && field === 15) sparse(r.sub(), tensor) // sparse_initializer
      else return false
      return true
    })
  }
  const model = new WireReader(bytes)
  readFields(model, 'ModelProto', (field, wire) => {
    if (wire !== WIRE_LEN) return false
    if (field === 7) graph(model.sub(), 0)
    else if (field === 20 && visit.training) {
      // TrainingInfoProto: initialization = 1, algorithm = 2 (graphs).
      const info = model.sub()
      readFields(info, 'TrainingInfoProto', (f, w) => {
        if ((f !== 1 && f !== 2) || w !== WIRE_LEN) return false
        graph(info.sub(), 1)
        return true
      })
    } else if (field === 25) {
      // FunctionProto: node = 7, attribute_proto = 11 (attributes' default values).
      const fn = model.sub()
      readFields(fn, 'FunctionProto', (f, w) => {
        if (w !== WIRE_LEN) return false
        if (f === 7) node(fn.sub(), 1)
        else if (f === 11) attribute(fn.sub(), 1)
        else return false
        return true
      })
    } else return false
    return true
  })
}
