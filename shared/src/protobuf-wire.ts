/**
 * Protocol Buffers wire format: the one reader and writer for ONNX files, used by the edge's
 * model metadata reader (onnx-info.ts, in workerd), the quantizer's ONNX codec and the tests'
 * model builder. Only what ONNX files use: varints (int32/int64/enum, as bigint when 64-bit
 * matters), fixed32 floats, fixed64 doubles and length-delimited fields. Written by hand rather
 * than with protobufjs because the codec has to keep every field it does not understand
 * byte-for-byte (a model must stay valid after the quantizer rewrites part of it), which is
 * simplest with raw fields at hand, and because length-delimited values are read as views, so
 * skipping or keeping a 100 MB initializer copies nothing.
 *
 * Spec: https://protobuf.dev/programming-guides/encoding/
 */

export const WIRE_VARINT = 0
export const WIRE_FIXED64 = 1
export const WIRE_LEN = 2
export const WIRE_FIXED32 = 5
export type WireType = typeof WIRE_VARINT | typeof WIRE_FIXED64 | typeof WIRE_LEN | typeof WIRE_FIXED32

/**
 * A malformed or truncated protobuf message: `reason` says what was wrong, `offset` where in the
 * buffer the reader was given (nested messages included) decoding failed.
 */
export class WireFormatError extends Error {
  override readonly name = 'WireFormatError'
  constructor(
    readonly reason: string,
    readonly offset: number,
  ) {
    super(`${reason} at byte ${offset}`)
  }
}

/**
 * A field kept as it was read: its number and its complete encoding (tag included), so writing
 * it back reproduces the input exactly.
 */
export interface RawField {
  field: number
  bytes: Uint8Array
}

/** One field as the reader sees it: number, wire type and where its value lies. */
export interface FieldHeader {
  field: number
  wire: WireType
  /** Offset of the tag, the start of the field's encoding. */
  start: number
}

const TWO_63 = 1n << 63n
const TWO_64 = 1n << 64n
const MASK_64 = TWO_64 - 1n

export class WireReader {
  readonly #bytes: Uint8Array
  readonly #view: DataView
  #pos: number
  readonly #end: number

  constructor(bytes: Uint8Array, start = 0, end = bytes.length) {
    this.#bytes = bytes
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    this.#pos = start
    this.#end = end
  }

  get done(): boolean {
    return this.#pos >= this.#end
  }

  get position(): number {
    return this.#pos
  }

  /** The next field's tag; throws on a field number of 0 or a wire type ONNX never uses (groups). */
  header(): FieldHeader {
    const start = this.#pos
    const tag = this.varint()
    const field = Number(tag >> 3n)
    const wire = Number(tag & 7n)
    if (field === 0 || field > 0x1fffffff) throw new WireFormatError(`invalid field number ${field}`, start)
    if (wire !== WIRE_VARINT && wire !== WIRE_FIXED64 && wire !== WIRE_LEN && wire !== WIRE_FIXED32) {
      throw new WireFormatError(`unsupported wire type ${wire} (field ${field})`, start)
    }
    return { field, wire, start }
  }

  /** An unsigned varint of up to 64 bits. */
  varint(): bigint {
    // Fast path for the common small values (tags, lengths, enum values) without bigint arithmetic.
    let low = 0
    let shift = 0
    const start = this.#pos
    while (shift < 28) {
      if (this.#pos >= this.#end) throw new WireFormatError('truncated varint', start)
      const byte = this.#bytes[this.#pos++]!
      low |= (byte & 0x7f) << shift
      if (byte < 0x80) return BigInt(low >>> 0)
      shift += 7
    }
    let value = BigInt(low >>> 0)
    let big = 28n
    for (;;) {
      if (this.#pos >= this.#end) throw new WireFormatError('truncated varint', start)
      if (big > 63n) throw new WireFormatError('varint longer than 10 bytes', start)
      const byte = this.#bytes[this.#pos++]!
      value |= BigInt(byte & 0x7f) << big
      if (byte < 0x80) return value & MASK_64
      big += 7n
    }
  }

  /** A varint as a signed 64-bit integer (int64/int32 fields: negatives are 10-byte two's complement). */
  int64(): bigint {
    return BigInt.asIntN(64, this.varint())
  }

  /** A varint that must fit a JS number: lengths, enums, int32 fields, small int64 like dims. */
  int(): number {
    const start = this.#pos
    const value = this.int64()
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new WireFormatError(`integer ${value} does not fit a number`, start)
    }
    return Number(value)
  }

  float(): number {
    this.#need(4)
    const value = this.#view.getFloat32(this.#pos, true)
    this.#pos += 4
    return value
  }

  double(): number {
    this.#need(8)
    const value = this.#view.getFloat64(this.#pos, true)
    this.#pos += 8
    return value
  }

  /** A length-delimited value as a view into the input (not a copy: raw_data of big tensors). */
  bytes(): Uint8Array {
    const start = this.#pos
    const length = this.int()
    if (length < 0 || this.#pos + length > this.#end) {
      throw new WireFormatError(`length ${length} runs past the end of the message`, start)
    }
    const value = this.#bytes.subarray(this.#pos, this.#pos + length)
    this.#pos += length
    return value
  }

  string(): string {
    return DECODER.decode(this.bytes())
  }

  /**
   * A reader over just the nested message that is this field's value. It keeps the whole buffer,
   * so its positions (and error offsets) stay offsets into the outermost message.
   */
  sub(): WireReader {
    const value = this.bytes()
    return new WireReader(this.#bytes, this.#pos - value.length, this.#pos)
  }

  /** Skips the value of a field whose header was just read. */
  skip(wire: WireType): void {
    if (wire === WIRE_VARINT) this.varint()
    else if (wire === WIRE_FIXED64) this.#advance(8)
    else if (wire === WIRE_FIXED32) this.#advance(4)
    else this.bytes()
  }

  /** The field that starts at `header` kept whole (tag and value), after skipping its value. */
  raw(header: FieldHeader): RawField {
    this.skip(header.wire)
    return { field: header.field, bytes: this.#bytes.subarray(header.start, this.#pos) }
  }

  /**
   * Repeated numeric fields arrive packed (one length-delimited run) or one value per field;
   * proto parsers must accept both, so this reads either into `into`.
   */
  repeated<T>(wire: WireType, scalarWire: WireType, read: (reader: WireReader) => T, into: T[]): void {
    if (wire === WIRE_LEN && scalarWire !== WIRE_LEN) {
      const packed = this.sub()
      while (!packed.done) into.push(read(packed))
    } else {
      this.expect(wire, scalarWire)
      into.push(read(this))
    }
  }

  /** Throws unless the field just read has the wire type its declaration implies. */
  expect(wire: WireType, expected: WireType): void {
    if (wire !== expected) throw new WireFormatError(`wire type ${wire} where ${expected} was expected`, this.#pos)
  }

  #need(count: number): void {
    if (this.#pos + count > this.#end) throw new WireFormatError(`truncated: ${count} bytes needed`, this.#pos)
  }

  #advance(count: number): void {
    this.#need(count)
    this.#pos += count
  }
}

// UTF-8, invalid sequences replaced: the defaults (written as options they fail workers-types' check).
const DECODER = new TextDecoder()
const ENCODER = new TextEncoder()

/**
 * An int64 or uint64 value as the 64 bits a varint carries (negatives as two's complement).
 * Throws RangeError for what would be written wrongly otherwise: a number that is not a safe
 * integer (it may already have lost precision), or a value outside both int64 and uint64.
 */
function uint64(value: number | bigint): bigint {
  if (typeof value === 'number' && !Number.isSafeInteger(value)) throw new RangeError(`varint value must be a safe integer, got ${value}`)
  const v = BigInt(value)
  if (v < -TWO_63 || v >= TWO_64) throw new RangeError(`varint value out of 64-bit range: ${v}`)
  return v < 0n ? v + TWO_64 : v
}

/**
 * Accumulates an encoding in chunks; nested messages are encoded on their own writer and
 * embedded with their length (simple, and the copies are cheap next to loading a model).
 * Large byte fields (raw_data) are kept by reference until `finish`.
 */
export class WireWriter {
  #chunks: Uint8Array[] = []
  #scratch = new Uint8Array(256)
  #used = 0
  #length = 0

  get length(): number {
    return this.#length + this.#used
  }

  tag(field: number, wire: WireType): this {
    return this.#varint(BigInt(field) * 8n + BigInt(wire))
  }

  /** An int32/int64/uint64/enum/bool value: negatives as 10-byte two's complement, as protobuf does. */
  int(field: number, value: number | bigint): this {
    this.tag(field, WIRE_VARINT)
    return this.#varint(uint64(value))
  }

  float(field: number, value: number): this {
    this.tag(field, WIRE_FIXED32)
    this.#room(4)
    new DataView(this.#scratch.buffer).setFloat32(this.#used, value, true)
    this.#used += 4
    return this
  }

  double(field: number, value: number): this {
    this.tag(field, WIRE_FIXED64)
    this.#room(8)
    new DataView(this.#scratch.buffer).setFloat64(this.#used, value, true)
    this.#used += 8
    return this
  }

  bytes(field: number, value: Uint8Array): this {
    this.tag(field, WIRE_LEN)
    this.#varint(BigInt(value.length))
    return this.#append(value)
  }

  string(field: number, value: string): this {
    return this.bytes(field, ENCODER.encode(value))
  }

  message(field: number, encode: (writer: WireWriter) => void): this {
    const nested = new WireWriter()
    encode(nested)
    return this.bytes(field, nested.finish())
  }

  /** A packed run of varints (int32/int64 repeated fields declared [packed = true]). */
  packedInts(field: number, values: readonly (number | bigint)[]): this {
    const nested = new WireWriter()
    for (const value of values) nested.#varint(uint64(value))
    return this.bytes(field, nested.finish())
  }

  packedFloats(field: number, values: readonly number[]): this {
    const buffer = new Uint8Array(values.length * 4)
    const view = new DataView(buffer.buffer)
    values.forEach((value, i) => view.setFloat32(i * 4, value, true))
    return this.bytes(field, buffer)
  }

  packedDoubles(field: number, values: readonly number[]): this {
    const buffer = new Uint8Array(values.length * 8)
    const view = new DataView(buffer.buffer)
    values.forEach((value, i) => view.setFloat64(i * 8, value, true))
    return this.bytes(field, buffer)
  }

  /** A field kept from the input, written back exactly as read. */
  raw(field: RawField): this {
    return this.#append(field.bytes)
  }

  finish(): Uint8Array {
    this.#flush()
    if (this.#chunks.length === 1) return this.#chunks[0]!
    const out = new Uint8Array(this.#length)
    let offset = 0
    for (const chunk of this.#chunks) {
      out.set(chunk, offset)
      offset += chunk.length
    }
    this.#chunks = [out]
    return out
  }

  /** `value` must be unsigned and below 2^64 (see `uint64`). */
  #varint(value: bigint): this {
    let v = value
    this.#room(10)
    while (v > 127n) {
      this.#scratch[this.#used++] = Number(v & 127n) | 128
      v >>= 7n
    }
    this.#scratch[this.#used++] = Number(v)
    return this
  }

  #append(value: Uint8Array): this {
    if (value.length <= 64) {
      this.#room(value.length)
      this.#scratch.set(value, this.#used)
      this.#used += value.length
    } else {
      this.#flush()
      this.#chunks.push(value)
      this.#length += value.length
    }
    return this
  }

  #room(count: number): void {
    if (this.#used + count > this.#scratch.length) this.#flush()
  }

  #flush(): void {
    if (this.#used === 0) return
    this.#chunks.push(this.#scratch.slice(0, this.#used))
    this.#length += this.#used
    this.#used = 0
  }
}
