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
import { WIRE_FIXED32, WIRE_FIXED64, WIRE_LEN, WIRE_VARINT, WireFormatError, WireWriter } from './protobuf-wire.js'

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

/**
 * Fields visited, data fields included: a file of millions of tiny fields (tensor data written one
 * value per field) would otherwise cost CPU time without bound. A graph of a million nodes has
 * about 10 million.
 */
export const MAX_SKELETON_FIELDS = 32_000_000

/** Bytes `from` to `to` of a chunk the stream delivered. */
interface ChunkSpan {
  chunk: Uint8Array
  from: number
  to: number
}

/** A varint's encoding, for values below 2^53 (tags and lengths): no bigint on the hot path. */
function varintBytes(value: number): Uint8Array {
  const out: number[] = []
  let v = value
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80)
    v = Math.floor(v / 0x80)
  }
  out.push(v)
  return Uint8Array.from(out)
}

/**
 * Bytes pulled from an async source. Each read is synchronous while the current chunk holds what
 * it needs (`…Here` methods return undefined otherwise, and the awaited method crosses chunks), so
 * walking millions of small fields costs no promise per field.
 */
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

  #consume(count: number): void {
    this.#offset += count
    this.position += count
  }

  /** The varint at the reader as a number, if the current chunk holds all of it and it is below 2^53. */
  numberHere(): number | undefined {
    const chunk = this.#chunk
    let value = 0
    let scale = 1
    for (let i = this.#offset; i < chunk.length && i - this.#offset < 8; i++) {
      const byte = chunk[i]!
      value += (byte & 0x7f) * scale
      if (byte < 0x80) {
        this.#consume(i + 1 - this.#offset)
        return value
      }
      scale *= 0x80
    }
    return undefined
  }

  /** The varint at the reader as a number (tags, lengths), across chunks; above 2^53 is an error. */
  async number(): Promise<number> {
    const start = this.position
    const bytes = await this.varintBytes()
    let value = 0n
    for (let i = bytes.length - 1; i >= 0; i--) value = (value << 7n) | BigInt(bytes[i]! & 0x7f)
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new WireFormatError(`varint ${value} is too large here`, start)
    return Number(value)
  }

  /** The encoding of the varint at the reader (copied), across chunks. */
  async varintBytes(): Promise<Uint8Array> {
    const start = this.position
    const bytes: number[] = []
    for (;;) {
      if (bytes.length === 10) throw new WireFormatError('varint longer than 10 bytes', start)
      if (this.#offset >= this.#chunk.length) await this.#fill()
      const byte = this.#chunk[this.#offset]!
      this.#consume(1)
      bytes.push(byte)
      if (byte < 0x80) return Uint8Array.from(bytes)
    }
  }

  /** Skips the varint at the reader if the current chunk holds all of it. */
  skipVarintHere(): boolean {
    const chunk = this.#chunk
    for (let i = this.#offset; i < chunk.length && i - this.#offset < 10; i++) {
      if (chunk[i]! < 0x80) {
        this.#consume(i + 1 - this.#offset)
        return true
      }
    }
    return false
  }

  /**
   * Where in the current chunk the bytes from file offset `from` (a field's tag) through the
   * varint at the reader, or through `length` more bytes, lie, consumed; undefined (and nothing
   * consumed) unless they all lie in it. A kept field is copied as it is, tag included.
   */
  fieldHere(from: number, length: number | 'varint'): ChunkSpan | undefined {
    const chunkStart = this.position - this.#offset
    if (from < chunkStart) return undefined
    let end = -1
    if (length === 'varint') {
      for (let i = this.#offset; i < this.#chunk.length && i - this.#offset < 10; i++) {
        if (this.#chunk[i]! < 0x80) {
          end = i + 1
          break
        }
      }
      if (end < 0) return undefined
    } else {
      end = this.#offset + length
      if (end > this.#chunk.length) return undefined
    }
    const span = { chunk: this.#chunk, from: from - chunkStart, to: end }
    this.#consume(end - this.#offset)
    return span
  }

  /** Skips `length` bytes if the current chunk holds them. */
  skipHere(length: number): boolean {
    if (this.#chunk.length - this.#offset < length) return false
    this.#consume(length)
    return true
  }

  async skip(length: number): Promise<void> {
    let left = length
    while (left > 0) {
      await this.#fill()
      const count = Math.min(left, this.#chunk.length - this.#offset)
      this.#consume(count)
      left -= count
    }
  }

  /** The next `length` bytes, copied: a view would keep the whole chunk alive in the skeleton. */
  async take(length: number): Promise<Uint8Array> {
    if (this.#chunk.length - this.#offset >= length) {
      const copy = this.#chunk.slice(this.#offset, this.#offset + length)
      this.#consume(length)
      return copy
    }
    const out = new Uint8Array(length)
    let filled = 0
    while (filled < length) {
      await this.#fill()
      const count = Math.min(length - filled, this.#chunk.length - this.#offset)
      out.set(this.#chunk.subarray(this.#offset, this.#offset + count), filled)
      this.#consume(count)
      filled += count
    }
    return out
  }
}

export interface SkeletonOptions {
  /** The file's size in bytes: where the top-level message ends. */
  size: number
  /** Refuse a model whose skeleton (graph structure and metadata) is larger than this. */
  maxSkeletonBytes: number
  /** Refuse a file with more fields than this (default MAX_SKELETON_FIELDS). */
  maxFields?: number
}

/**
 * The model in `chunks` (its bytes in order, `size` of them) without its tensors' data, as a
 * ModelProto for readOnnxModelInfo. Throws OnnxFormatError (field `model`) for a file that is
 * not protobuf, ends early, has more than MAX_SKELETON_FIELDS fields, or whose structure alone
 * is over `maxSkeletonBytes`. Offsets in its messages are the file's.
 */
export async function onnxSkeleton(chunks: AsyncIterable<Uint8Array>, options: SkeletonOptions): Promise<Uint8Array> {
  if (options.size === 0) throw new OnnxFormatError('not a valid ONNX model: the file is empty (in ModelProto at byte 0)', 'model')
  const reader = new StreamReader(chunks)
  let kept = 0
  let fields = 0
  const maxFields = options.maxFields ?? MAX_SKELETON_FIELDS
  /** Appends `parts` to `into` (copies, never views into a chunk: they would keep it alive). */
  const keep = (into: WireWriter, ...parts: Uint8Array[]) => {
    for (const part of parts) {
      kept += part.length
      into.raw({ field: 0, bytes: part })
    }
    if (kept > options.maxSkeletonBytes) {
      throw new OnnxFormatError(
        `the model's structure without its tensors' data is over ${options.maxSkeletonBytes} bytes (at byte ${reader.position}); depinfer reads at most that much of a large file's graph`,
        'model',
      )
    }
  }

  const copyMessage = async (end: number, kind: Kind, into: WireWriter, depth: number): Promise<void> => {
    if (depth > MAX_NESTING) throw new WireFormatError(`messages nested more than ${MAX_NESTING} deep`, reader.position)
    const schema = SCHEMA[kind]
    // Kept fields that follow one another in a chunk are appended as one copy, when something
    // else comes (a dropped or nested field, a field across chunks, the message's end): a graph's
    // thousands of small fields then cost no allocation each.
    let run: ChunkSpan | undefined
    const flush = () => {
      if (run) keep(into, run.chunk.slice(run.from, run.to))
      run = undefined
    }
    const extend = (span: ChunkSpan) => {
      if (run && run.chunk === span.chunk && run.to === span.from) run.to = span.to
      else {
        flush()
        run = span
      }
    }
    while (reader.position < end) {
      const start = reader.position
      if (++fields > maxFields) throw new WireFormatError(`more than ${maxFields} fields`, start)
      const tag = reader.numberHere() ?? (await reader.number())
      const field = Math.floor(tag / 8)
      const wire = tag % 8
      if (field === 0 || field > 0x1fffffff) throw new WireFormatError(`invalid field number ${field}`, start)
      const action = schema[field]
      if (wire === WIRE_VARINT) {
        if (action === 'drop') {
          if (!reader.skipVarintHere()) await reader.varintBytes()
        } else {
          const span = reader.fieldHere(start, 'varint')
          if (span) extend(span)
          else {
            flush()
            keep(into, varintBytes(tag), await reader.varintBytes())
          }
        }
      } else if (wire === WIRE_FIXED32 || wire === WIRE_FIXED64) {
        const size = wire === WIRE_FIXED32 ? 4 : 8
        if (action === 'drop') {
          if (!reader.skipHere(size)) await reader.skip(size)
        } else {
          const span = reader.fieldHere(start, size)
          if (span) extend(span)
          else {
            flush()
            keep(into, varintBytes(tag), await reader.take(size))
          }
        }
      } else if (wire === WIRE_LEN) {
        const lengthAt = reader.position
        const length = reader.numberHere() ?? (await reader.number())
        if (length > end - reader.position) throw new WireFormatError(`length ${length} runs past the end of the message`, lengthAt)
        if (action === 'drop') {
          if (!reader.skipHere(length)) await reader.skip(length)
        } else if (action !== undefined) {
          flush()
          const nested = new WireWriter()
          await copyMessage(reader.position + length, action, nested, depth + 1)
          const value = nested.finish()
          keep(into, varintBytes(tag), varintBytes(value.length))
          into.raw({ field, bytes: value }) // counted already, as the nested message's own fields
        } else {
          const span = reader.fieldHere(start, length)
          if (span) extend(span)
          else {
            flush()
            keep(into, varintBytes(tag), varintBytes(length), await reader.take(length))
          }
        }
      } else throw new WireFormatError(`unsupported wire type ${wire} (field ${field})`, start)
    }
    flush()
    if (reader.position !== end) throw new WireFormatError(`a field runs past the end of its message`, reader.position)
  }

  const model = new WireWriter()
  try {
    await copyMessage(options.size, 'model', model, 0)
  } catch (error) {
    if (error instanceof WireFormatError) throw new OnnxFormatError(`not a valid ONNX model: ${error.reason} (at byte ${error.offset})`, 'model')
    throw error
  }
  return model.finish()
}
