/**
 * An ONNX file read as a stream, for files too large to hold in memory (a Worker has 128 MB):
 * `onnxSkeleton` rewrites the model without its tensors' data (TensorProto's data fields, in
 * initializers, Constant nodes, subgraphs, functions) and returns that much smaller ModelProto.
 * readOnnxModelInfo and externalDataTensors read a skeleton exactly as they read the whole file:
 * they never look at tensor data, only at names, shapes, types and data locations.
 *
 * The walk descends into the messages that can hold tensors (the same ones externalDataTensors
 * visits) and copies every other field as it was, so whatever the metadata readers check is in
 * the skeleton. Malformed protobuf is an OnnxFormatError with the offset in the file.
 */
import { OnnxFormatError } from './onnx-info.js'
import { WIRE_FIXED32, WIRE_FIXED64, WIRE_LEN, WIRE_VARINT, WireFormatError, WireWriter, type WireType } from './protobuf-wire.js'

/** What the walk does with a field: descend into it as a message of that kind, or drop it. */
type Action = Kind | 'drop'
type Kind = 'model' | 'graph' | 'node' | 'attribute' | 'tensor' | 'sparse' | 'training' | 'function'

/** onnx.proto3's field numbers of the messages that can hold tensors; other fields are copied. */
const SCHEMA: Record<Kind, Readonly<Record<number, Action>>> = {
  model: { 7: 'graph', 20: 'training', 25: 'function' },
  training: { 1: 'graph', 2: 'graph' }, // initialization, algorithm
  function: { 7: 'node', 11: 'attribute' }, // node, attribute_proto (defaults)
  graph: { 1: 'node', 5: 'tensor', 15: 'sparse' }, // node, initializer, sparse_initializer
  node: { 5: 'attribute' },
  attribute: { 5: 'tensor', 6: 'graph', 10: 'tensor', 11: 'graph', 22: 'sparse', 23: 'sparse' },
  sparse: { 1: 'tensor', 2: 'tensor' }, // values, indices
  // The data: float_data, int32_data, string_data, int64_data, raw_data, double_data, uint64_data.
  tensor: { 4: 'drop', 5: 'drop', 6: 'drop', 7: 'drop', 9: 'drop', 10: 'drop', 11: 'drop' },
}

/** Deeper nesting than this is refused rather than walked (as externalDataTensors does). */
const MAX_NESTING = 200

/** Bytes pulled from an async source: varints, copies and skips across chunk boundaries. */
class StreamReader {
  readonly #chunks: AsyncIterator<Uint8Array>
  #chunk: Uint8Array = new Uint8Array(0)
  #offset = 0
  /** Bytes consumed so far: the offset in the file. */
  position = 0

  constructor(chunks: AsyncIterable<Uint8Array>) {
    this.#chunks = chunks[Symbol.asyncIterator]()
  }

  /** Makes at least one byte available, or throws: the file ended early. */
  async #fill(): Promise<void> {
    while (this.#offset >= this.#chunk.length) {
      const next = await this.#chunks.next()
      if (next.done) throw new WireFormatError('the file ends early', this.position)
      this.#chunk = next.value
      this.#offset = 0
    }
  }

  async varint(): Promise<bigint> {
    const start = this.position
    let value = 0n
    for (let shift = 0n; ; shift += 7n) {
      if (shift > 63n) throw new WireFormatError('varint longer than 10 bytes', start)
      if (this.#offset >= this.#chunk.length) await this.#fill()
      const byte = this.#chunk[this.#offset++]!
      this.position++
      value |= BigInt(byte & 0x7f) << shift
      if (byte < 0x80) return value & 0xffff_ffff_ffff_ffffn
    }
  }

  /** The next `length` bytes, copied. */
  async take(length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length)
    let filled = 0
    while (filled < length) {
      await this.#fill()
      const count = Math.min(length - filled, this.#chunk.length - this.#offset)
      out.set(this.#chunk.subarray(this.#offset, this.#offset + count), filled)
      this.#offset += count
      filled += count
      this.position += count
    }
    return out
  }

  async skip(length: number): Promise<void> {
    let left = length
    while (left > 0) {
      await this.#fill()
      const count = Math.min(left, this.#chunk.length - this.#offset)
      this.#offset += count
      left -= count
      this.position += count
    }
  }
}

export interface SkeletonOptions {
  /** The file's size in bytes: where the top-level message ends. */
  size: number
  /** Refuse a model whose skeleton (graph structure and metadata) is larger than this. */
  maxSkeletonBytes: number
}

/**
 * The model in `chunks` (its bytes in order, `size` of them) without its tensors' data, as a
 * ModelProto for readOnnxModelInfo. Throws OnnxFormatError (field `model`) for a file that is
 * not protobuf, ends early, or whose structure alone is over `maxSkeletonBytes`.
 */
export async function onnxSkeleton(chunks: AsyncIterable<Uint8Array>, options: SkeletonOptions): Promise<Uint8Array> {
  if (options.size === 0) throw new OnnxFormatError('not a valid ONNX model: the file is empty (in ModelProto at byte 0)', 'model')
  const reader = new StreamReader(chunks)
  let kept = 0
  const keep = (bytes: number) => {
    kept += bytes
    if (kept > options.maxSkeletonBytes) {
      throw new OnnxFormatError(
        `the model's structure without its tensors' data is over ${options.maxSkeletonBytes} bytes (at byte ${reader.position}); depinfer reads at most that much of a large file's graph`,
        'model',
      )
    }
  }

  const copyMessage = async (end: number, kind: Kind, into: WireWriter, depth: number, what: string): Promise<void> => {
    if (depth > MAX_NESTING) throw new WireFormatError(`messages nested more than ${MAX_NESTING} deep`, reader.position)
    const schema = SCHEMA[kind]
    while (reader.position < end) {
      const start = reader.position
      const tag = await reader.varint()
      const field = Number(tag >> 3n)
      const wire = Number(tag & 7n) as WireType
      if (field === 0 || field > 0x1fffffff) throw new WireFormatError(`invalid field number ${field}`, start)
      const action = schema[field]
      if (wire === WIRE_VARINT) {
        const value = await reader.varint()
        if (action !== 'drop') {
          keep(reader.position - start)
          into.int(field, value)
        }
      } else if (wire === WIRE_FIXED32 || wire === WIRE_FIXED64) {
        const value = await reader.take(wire === WIRE_FIXED32 ? 4 : 8)
        if (action !== 'drop') {
          keep(reader.position - start)
          into.tag(field, wire).raw({ field, bytes: value })
        }
      } else if (wire === WIRE_LEN) {
        const lengthAt = reader.position
        const length = await reader.varint()
        if (length > BigInt(end - reader.position)) throw new WireFormatError(`length ${length} runs past the end of the message`, lengthAt)
        const valueEnd = reader.position + Number(length)
        if (action === 'drop') await reader.skip(Number(length))
        else if (action !== undefined) {
          const nested = new WireWriter()
          await copyMessage(valueEnd, action, nested, depth + 1, action)
          keep(lengthAt - start + 10) // its tag and (at most) a 10-byte length; the content kept itself
          into.bytes(field, nested.finish())
        } else {
          keep(reader.position - start + Number(length))
          into.bytes(field, await reader.take(Number(length)))
        }
      } else throw new WireFormatError(`unsupported wire type ${wire} (field ${field})`, start)
    }
    if (reader.position !== end) throw new WireFormatError(`a field runs past the end of the ${what} message`, reader.position)
  }

  const model = new WireWriter()
  try {
    await copyMessage(options.size, 'model', model, 0, 'model')
  } catch (error) {
    if (error instanceof WireFormatError) throw new OnnxFormatError(`not a valid ONNX model: ${error.reason} (at byte ${error.offset})`, 'model')
    throw error
  }
  return model.finish()
}
