/**
 * Tensors as they travel inside depinfer: name, v2 datatype, shape and the raw little-endian
 * element bytes (row-major). JSON number arrays exist only at the HTTP boundary; this module
 * converts between the two, validating as it goes.
 */
import { BYTES_PER_ELEMENT, type Datatype } from './datatypes.js'
import { InexactIntegerError, TensorError } from './errors.js'
import { float16BitsToNumber, toFloat16Bits } from './float16.js'
import { cutToLength, jsonPreview } from './text.js'

export interface RawTensor {
  name: string
  datatype: Datatype
  /** Row-major dimensions; `[]` is a scalar. */
  shape: number[]
  /** Little-endian element bytes, `elementCount(shape) × BYTES_PER_ELEMENT[datatype]` long. */
  data: Uint8Array
}

/** The number of elements a shape holds. */
export function elementCount(shape: readonly number[]): number {
  let count = 1
  for (const dim of shape) count *= dim
  return count
}

export function byteLength(datatype: Datatype, shape: readonly number[]): number {
  return elementCount(shape) * BYTES_PER_ELEMENT[datatype]
}

export type TypedArrayOf = Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array
  | Int32Array | BigUint64Array | BigInt64Array | Float32Array | Float64Array

/**
 * A typed-array view of a tensor's bytes in the element type its datatype stores (BOOL as
 * Uint8Array, FP16 as Uint16Array of bit patterns). Copies only when the bytes are misaligned.
 */
export function typedElements(datatype: Datatype, bytes: Uint8Array): TypedArrayOf {
  const size = BYTES_PER_ELEMENT[datatype]
  const aligned = bytes.byteOffset % size === 0 ? bytes : copyBytes(bytes)
  const { buffer, byteOffset } = aligned
  const length = aligned.byteLength / size
  switch (datatype) {
    case 'BOOL':
    case 'UINT8':
      return new Uint8Array(buffer, byteOffset, length)
    case 'INT8':
      return new Int8Array(buffer, byteOffset, length)
    case 'UINT16':
    case 'FP16':
      return new Uint16Array(buffer, byteOffset, length)
    case 'INT16':
      return new Int16Array(buffer, byteOffset, length)
    case 'UINT32':
      return new Uint32Array(buffer, byteOffset, length)
    case 'INT32':
      return new Int32Array(buffer, byteOffset, length)
    case 'UINT64':
      return new BigUint64Array(buffer, byteOffset, length)
    case 'INT64':
      return new BigInt64Array(buffer, byteOffset, length)
    case 'FP32':
      return new Float32Array(buffer, byteOffset, length)
    case 'FP64':
      return new Float64Array(buffer, byteOffset, length)
  }
}

/**
 * A copy of `bytes` in a fresh, exactly sized ArrayBuffer. (Not `.slice()`: on a Node Buffer,
 * and on the Buffer polyfill in Workers, slice returns a view, not a copy.)
 */
export function copyBytes(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes)
}

/** The bytes behind any typed array, as a Uint8Array view (no copy). */
export function bytesOf(elements: ArrayBufferView): Uint8Array {
  return new Uint8Array(elements.buffer, elements.byteOffset, elements.byteLength)
}

const INTEGER_RANGE: Partial<Record<Datatype, [number, number]>> = {
  UINT8: [0, 0xff],
  INT8: [-0x80, 0x7f],
  UINT16: [0, 0xffff],
  INT16: [-0x8000, 0x7fff],
  UINT32: [0, 0xffffffff],
  INT32: [-0x80000000, 0x7fffffff],
}
const INT64_RANGE: Record<'INT64' | 'UINT64', [bigint, bigint]> = {
  INT64: [-(2n ** 63n), 2n ** 63n - 1n],
  UINT64: [0n, 2n ** 64n - 1n],
}

/**
 * The rows of v2 JSON tensor data (flat, or nested to the tensor's rank), in row-major order,
 * checking that its structure matches `shape`: flat data is one row, nested data its innermost
 * arrays. Not copied into one flat array: for a nested image that copy (a growing array of tens
 * of thousands of numbers, in V8's large-object space) cost more than parsing the JSON. `field`
 * names the data for error messages (`field[1][2]` for a nested element).
 */
export function tensorDataRows(data: unknown, shape: readonly number[], field: string): (readonly unknown[])[] {
  const expected = elementCount(shape)
  if (!Array.isArray(data)) {
    if (shape.length === 0) return [[data]]
    throw new TensorError(`data must be an array of ${expected} elements`, field)
  }
  const nested = data.length > 0 && Array.isArray(data[0])
  if (!nested) {
    if (data.length !== expected) {
      throw new TensorError(
        `data has ${data.length} elements but shape [${shape.join(',')}] needs ${expected}`,
        field,
      )
    }
    return [data]
  }
  if (shape.length === 0) throw new TensorError(`data is nested deeper than the shape's rank 0`, field)
  // Level by level, not recursively: a shape of rank 10,000 with data nested as deep would
  // overflow the stack of a recursive walk (a 500 instead of a 400). `level` holds the nodes at
  // `depth` in row-major order; a node's path is worked out from its place only for an error.
  const pathTo = (depth: number, place: number, last?: number) => {
    const indices: number[] = []
    for (let d = depth - 1; d >= 0; d--) {
      indices.push(place % shape[d]!)
      place = Math.floor(place / shape[d]!)
    }
    indices.reverse()
    if (last !== undefined) indices.push(last)
    return `${field}${indices.map((i) => `[${i}]`).join('')}`
  }
  const innermost = shape.length - 1
  let level: unknown[] = [data]
  for (let depth = 0; depth <= innermost; depth++) {
    const next: unknown[] = []
    for (let place = 0; place < level.length; place++) {
      const node = level[place]
      if (!Array.isArray(node) || node.length !== shape[depth]) {
        throw new TensorError(
          `nested data does not match shape [${shape.join(',')}]: expected ${shape[depth]} elements at depth ${depth}`,
          pathTo(depth, place),
        )
      }
      if (depth === innermost) {
        const deeper = node.findIndex((element) => Array.isArray(element))
        if (deeper !== -1) throw new TensorError(`data is nested deeper than the shape's rank ${shape.length}`, pathTo(depth, place, deeper))
      } else {
        for (const child of node) next.push(child)
      }
    }
    if (depth === innermost) return level as (readonly unknown[])[]
    level = next
  }
  return []
}

/**
 * Encodes JSON values (rows in row-major order, as `tensorDataRows` gives them) as the raw bytes
 * of `datatype`, rejecting values the datatype cannot hold (non-integers, out of range,
 * non-booleans for BOOL). 64-bit integers may be given as decimal strings (or bigints) to keep
 * precision beyond 2^53; a JSON number there has lost it, which is an InexactIntegerError. An
 * error names the element by its flat index (`field[i]`).
 */
export function encodeJsonRows(
  datatype: Datatype,
  rows: readonly (readonly unknown[])[],
  field: string,
  /** The tensor's shape when its data was given nested: a refused element is then named by its nested path, as shape errors are. */
  nestedShape?: readonly number[],
): Uint8Array {
  let count = 0
  for (const row of rows) count += row.length
  const bytes = new Uint8Array(count * BYTES_PER_ELEMENT[datatype])
  const out = typedElements(datatype, bytes)
  const encode = ROW_ENCODERS[datatype]
  let start = 0
  for (const row of rows) {
    const refused = encode(out, start, row)
    if (refused !== undefined) {
      const [j, why, inexact] = refused
      // Not echoed: the number JSON.parse made of it is not the one the client sent.
      const at = elementField(field, start + j, nestedShape)
      if (inexact) throw new InexactIntegerError(`${why} for ${datatype}`, at)
      throw new TensorError(`${why} for ${datatype}: ${shownValue(row[j])}`, at)
    }
    start += row.length
  }
  return bytes
}

/** `field[i][j]…`, the element at row-major `index` of nested data of `nestedShape`, or `field[index]` of flat data. */
function elementField(field: string, index: number, nestedShape: readonly number[] | undefined): string {
  if (!nestedShape || nestedShape.length < 2) return `${field}[${index}]`
  const at: number[] = []
  for (let depth = nestedShape.length - 1; depth >= 0; depth--) {
    at[depth] = index % nestedShape[depth]!
    index = Math.floor(index / nestedShape[depth]!)
  }
  return `${field}${at.map((i) => `[${i}]`).join('')}`
}

/** A refused value as an error message shows it, cut short: a number as JS writes it (1e400 was read as Infinity). */
function shownValue(value: unknown): string {
  return typeof value === 'number' || typeof value === 'bigint' ? cutToLength(String(value), 60) : jsonPreview(value, 60)
}

/** A refused element: its index in the row, why, and whether it is an inexact 64-bit integer. */
type Refusal = [index: number, why: string, inexact?: true]

/**
 * Writes a row of JSON values as elements `start…`; returns the index in the row of the first
 * value it cannot hold and why, or undefined. One loop per datatype: a call per element through
 * a table was ~30% slower on a 48×192 image.
 */
type RowEncoder = (out: TypedArrayOf, start: number, row: readonly unknown[]) => Refusal | undefined

const encodeFloats: RowEncoder = (out, start, row) => {
  for (let j = 0; j < row.length; j++) {
    const v = row[j]
    if (typeof v === 'number') out[start + j] = v
    // A bigint is an integer literal beyond 2^53 read with all its digits (the edge's second
    // reading of a body); a float takes it rounded, as it would the JSON number.
    else if (typeof v === 'bigint') out[start + j] = Number(v)
    else return [j, 'expected a number']
    // A number the type cannot hold (1e39 as FP32, 1e999 which JSON.parse reads as Infinity) is
    // refused like an integer out of range, not sent as ±Infinity.
    if (!Number.isFinite(out[start + j])) return [j, 'value out of range']
  }
  return undefined
}

const encodeInt64s = ([min, max]: [bigint, bigint]): RowEncoder => (out, start, row) => {
  for (let j = 0; j < row.length; j++) {
    const v = row[j]
    let big: bigint
    if (typeof v === 'number' && Number.isSafeInteger(v)) big = BigInt(v)
    else if (typeof v === 'bigint') big = v
    else if (typeof v === 'string' && /^-?\d{1,20}$/.test(v)) big = BigInt(v)
    else if (typeof v === 'number' && Number.isInteger(v)) {
      return [j, 'a JSON number beyond ±2^53 lost digits when it was parsed: send this element as a decimal string', true]
    } else return [j, 'expected an integer (or a decimal string beyond 2^53)']
    if (big < min || big > max) return [j, 'value out of range']
    out[start + j] = big
  }
  return undefined
}

const encodeIntegers = ([min, max]: [number, number]): RowEncoder => (out, start, row) => {
  for (let j = 0; j < row.length; j++) {
    const v = row[j]
    if (typeof v === 'bigint') return [j, 'value out of range']
    if (typeof v !== 'number' || !Number.isInteger(v)) return [j, 'expected an integer']
    if (v < min || v > max) return [j, 'value out of range']
    out[start + j] = v
  }
  return undefined
}

const ROW_ENCODERS: Record<Datatype, RowEncoder> = {
  BOOL: (out, start, row) => {
    for (let j = 0; j < row.length; j++) {
      const v = row[j]
      if (typeof v !== 'boolean') return [j, 'expected true or false']
      out[start + j] = v ? 1 : 0
    }
    return undefined
  },
  FP16: (out, start, row) => {
    for (let j = 0; j < row.length; j++) {
      const v = row[j]
      if (typeof v !== 'number' && typeof v !== 'bigint') return [j, 'expected a number']
      const bits = toFloat16Bits(Number(v))
      // 70000 as FP16 would round to infinity: out of range, like an integer.
      if ((bits & 0x7fff) === 0x7c00) return [j, 'value out of range']
      out[start + j] = bits
    }
    return undefined
  },
  FP32: encodeFloats,
  FP64: encodeFloats,
  INT64: encodeInt64s(INT64_RANGE.INT64),
  UINT64: encodeInt64s(INT64_RANGE.UINT64),
  UINT8: encodeIntegers(INTEGER_RANGE.UINT8!),
  INT8: encodeIntegers(INTEGER_RANGE.INT8!),
  UINT16: encodeIntegers(INTEGER_RANGE.UINT16!),
  INT16: encodeIntegers(INTEGER_RANGE.INT16!),
  UINT32: encodeIntegers(INTEGER_RANGE.UINT32!),
  INT32: encodeIntegers(INTEGER_RANGE.INT32!),
}

/**
 * The JSON text of a tensor's elements as a flat array. Written by hand rather than with
 * JSON.stringify so 64-bit integers keep every digit and FP16 is expanded to numbers.
 */
export function elementsToJson(datatype: Datatype, bytes: Uint8Array): string {
  const elements = typedElements(datatype, bytes)
  if (datatype === 'BOOL') {
    let text = '['
    for (let i = 0; i < elements.length; i++) text += (i ? ',' : '') + (elements[i] ? 'true' : 'false')
    return text + ']'
  }
  if (datatype === 'INT64' || datatype === 'UINT64') {
    return `[${Array.from(elements as BigInt64Array, String).join(',')}]`
  }
  const numbers = datatype === 'FP16' ? Array.from(elements as Uint16Array, float16BitsToNumber) : Array.from(elements as Float32Array)
  // JSON has no NaN or Infinity; JSON.stringify writes them as null, as the v2 JSON form must.
  const text = JSON.stringify(numbers)
  // It also writes -0 as 0; a float's sign is part of its value (numpy writes -0.0).
  return numbers.some((n) => Object.is(n, -0)) ? `[${numbers.map((n) => (Object.is(n, -0) ? '-0.0' : JSON.stringify(n))).join(',')}]` : text
}
