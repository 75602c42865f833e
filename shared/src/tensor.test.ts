import { describe, expect, it } from 'vitest'
import { expectProtocolError } from './testing/expect-protocol-error.js'
import type { Datatype } from './datatypes.js'
import { InexactIntegerError, TensorError } from './errors.js'
import {
  byteLength,
  bytesOf,
  copyBytes,
  elementCount,
  elementsToJson,
  encodeJsonRows,
  tensorDataRows,
  typedElements,
} from './tensor.js'


/** Writes `values` little-endian with DataView: an independent reference for element bytes. */
function leBytes(datatype: Datatype, values: readonly (number | bigint | boolean)[]): Uint8Array {
  const size = { BOOL: 1, UINT8: 1, INT8: 1, UINT16: 2, INT16: 2, FP16: 2, UINT32: 4, INT32: 4, FP32: 4, UINT64: 8, INT64: 8, FP64: 8 }[datatype]
  const bytes = new Uint8Array(values.length * size)
  const view = new DataView(bytes.buffer)
  values.forEach((v, i) => {
    const at = i * size
    switch (datatype) {
      case 'BOOL': return view.setUint8(at, v ? 1 : 0)
      case 'UINT8': return view.setUint8(at, Number(v))
      case 'INT8': return view.setInt8(at, Number(v))
      case 'UINT16':
      case 'FP16': return view.setUint16(at, Number(v), true) // FP16 given as bit patterns
      case 'INT16': return view.setInt16(at, Number(v), true)
      case 'UINT32': return view.setUint32(at, Number(v), true)
      case 'INT32': return view.setInt32(at, Number(v), true)
      case 'FP32': return view.setFloat32(at, Number(v), true)
      case 'FP64': return view.setFloat64(at, Number(v), true)
      case 'UINT64': return view.setBigUint64(at, BigInt(v), true)
      case 'INT64': return view.setBigInt64(at, BigInt(v), true)
    }
  })
  return bytes
}

/** Node's Buffer, reached through globalThis: the shared package type-checks without Node types. */
const NodeBuffer = (globalThis as unknown as {
  Buffer: { alloc(size: number): Uint8Array; from(data: number[]): Uint8Array }
}).Buffer

/** `bytes` placed at byteOffset 1 of a Node Buffer: misaligned for every multi-byte type. */
function atOddOffset(bytes: Uint8Array): Uint8Array {
  const buffer = NodeBuffer.alloc(bytes.byteLength + 1)
  buffer.set(bytes, 1)
  const view = new Uint8Array(buffer.buffer, buffer.byteOffset + 1, bytes.byteLength)
  expect(view.byteOffset % 2).toBe(1)
  return view
}

describe('elementCount / byteLength', () => {
  it.each([
    [[], 1],
    [[5], 5],
    [[2, 3], 6],
    [[2, 3, 4], 24],
    [[0], 0],
    [[3, 0, 2], 0],
  ])('shape %j holds %i elements', (shape, count) => {
    expect(elementCount(shape)).toBe(count)
  })

  it.each([
    ['BOOL', [2, 3], 6],
    ['UINT8', [4], 4],
    ['INT16', [2, 3], 12],
    ['FP16', [3], 6],
    ['FP32', [2, 3], 24],
    ['INT32', [], 4],
    ['UINT64', [5], 40],
    ['FP64', [2, 2], 32],
    ['INT64', [0, 7], 0],
  ] as const)('%s %j takes %i bytes', (datatype, shape, bytes) => {
    expect(byteLength(datatype, shape)).toBe(bytes)
  })
})

/** Flat values, as one row. */
const encodeJsonElements = (datatype: Datatype, values: readonly unknown[], field: string) => encodeJsonRows(datatype, [values], field)

/** The rows joined: the elements in row-major order. */
const elementsOf = (data: unknown, shape: number[], field: string) => tensorDataRows(data, shape, field).flat()

describe('tensorDataRows', () => {
  it('returns flat data of the right length unchanged, in order', () => {
    expect(elementsOf([1, 2, 3, 4, 5, 6], [2, 3], 'inputs[0].data')).toEqual([1, 2, 3, 4, 5, 6])
    expect(elementsOf([true, false], [2], 'x')).toEqual([true, false])
  })

  it('flattens nested data in row-major order', () => {
    expect(elementsOf([[1, 2, 3], [4, 5, 6]], [2, 3], 'f')).toEqual([1, 2, 3, 4, 5, 6])
    expect(elementsOf([[[1, 2], [3, 4]], [[5, 6], [7, 8]], [[9, 10], [11, 12]]], [3, 2, 2], 'f')).toEqual([
      1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ])
    expect(elementsOf([[7]], [1, 1], 'f')).toEqual([7])
  })

  it('accepts a bare value or a one-element list for a scalar', () => {
    expect(elementsOf(42, [], 'f')).toEqual([42])
    expect(elementsOf([42], [], 'f')).toEqual([42])
  })

  it('gives flat data as one row and nested data as its innermost arrays, without copying them', () => {
    const flat = [1, 2, 3, 4, 5, 6]
    expect(tensorDataRows(flat, [2, 3], 'f')).toEqual([flat])
    expect(tensorDataRows(flat, [2, 3], 'f')[0]).toBe(flat)
    const nested = [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
    const rows = tensorDataRows(nested, [2, 2, 2], 'f')
    expect(rows).toEqual([[1, 2], [3, 4], [5, 6], [7, 8]])
    expect(rows[3]).toBe(nested[1]![1])
  })

  it('walks data nested 100,000 deep without overflowing the stack, and names a wrong element\'s path', () => {
    const rank = 100_000
    const nest = (innermost: unknown) => {
      let node: unknown = innermost
      for (let d = 0; d < rank; d++) node = [node]
      return node
    }
    expect(elementsOf(nest(7), Array(rank).fill(1), 'f')).toEqual([7])
    const wrong = Array(rank).fill(1)
    wrong[rank - 1] = 2
    const error = expectProtocolError(TensorError, () => elementsOf(nest(7), wrong, 'f'), `f${'[0]'.repeat(rank - 1)}`)
    expect(error.message).toMatch(/expected 2 elements at depth 99999/)
  })

  it('accepts empty data for shapes with a zero dimension', () => {
    expect(elementsOf([], [0], 'f')).toEqual([])
    expect(elementsOf([], [0, 3], 'f')).toEqual([])
    expect(elementsOf([[], []], [2, 0], 'f')).toEqual([])
  })

  it.each([
    ['too few flat elements', [1, 2, 3, 4, 5], [2, 3], 'inputs[0].data'],
    ['too many flat elements', [1, 2, 3, 4, 5, 6, 7], [2, 3], 'inputs[0].data'],
    ['empty data for a non-empty shape', [], [2], 'inputs[0].data'],
    ['a non-array for a non-scalar shape', 5, [1], 'inputs[0].data'],
    ['an object for a non-scalar shape', { 0: 1 }, [1], 'inputs[0].data'],
    ['too many rows', [[1, 2, 3], [4, 5, 6], [7, 8, 9]], [2, 3], 'inputs[0].data'],
    ['too few rows', [[1, 2, 3]], [2, 3], 'inputs[0].data'],
    ['a short second row', [[1, 2, 3], [4, 5]], [2, 3], 'inputs[0].data[1]'],
    ['a long first row', [[1, 2, 3, 4], [4, 5, 6]], [2, 3], 'inputs[0].data[0]'],
    ['a scalar where a row belongs', [[1, 2, 3], 4], [2, 3], 'inputs[0].data[1]'],
    ['an element nested one level too deep', [[1, 2, 3], [4, 5, [6]]], [2, 3], 'inputs[0].data[1][2]'],
    ['an inner row of the wrong length at depth 2', [[[1, 2], [3, 4]], [[5, 6], [7]]], [2, 2, 2], 'inputs[0].data[1][1]'],
    ['nesting deeper than a rank-1 shape', [[1], [2]], [2], 'inputs[0].data[0]'],
    ['nesting for a scalar', [[1]], [], 'inputs[0].data'],
  ])('rejects %s, naming the exact path', (_case, data, shape, field) => {
    const error = expectProtocolError(TensorError, () => elementsOf(data, shape, 'inputs[0].data'), field)
    expect(error.message).not.toBe('')
  })

  it('reports the shape and counts in the message for a flat length mismatch', () => {
    const error = expectProtocolError(TensorError, () => elementsOf([1, 2, 3, 4, 5], [2, 3], 'd'), 'd')
    expect(error.message).toContain('5')
    expect(error.message).toContain('6')
  })
})

describe('encodeJsonElements', () => {
  it.each([
    ['BOOL', [true, false, true], [true, false, true]],
    ['UINT8', [0, 1, 255], [0, 1, 255]],
    ['INT8', [-128, -1, 0, 127], [-128, -1, 0, 127]],
    ['UINT16', [0, 258, 65535], [0, 258, 65535]],
    ['INT16', [-32768, -2, 32767], [-32768, -2, 32767]],
    ['UINT32', [0, 0x01020304, 4294967295], [0, 0x01020304, 4294967295]],
    ['INT32', [-2147483648, -1, 2147483647], [-2147483648, -1, 2147483647]],
    ['INT64', [0, -1, 2 ** 53 - 1, -(2 ** 53 - 1)], [0n, -1n, 2n ** 53n - 1n, -(2n ** 53n - 1n)]],
    [
      'INT64',
      ['9007199254740993', '-9223372036854775808', '9223372036854775807', '-0', '12'],
      [9007199254740993n, -9223372036854775808n, 9223372036854775807n, 0n, 12n],
    ],
    ['UINT64', [0, 2 ** 53 - 1], [0n, 2n ** 53n - 1n]],
    ['UINT64', ['18446744073709551615', '9007199254740993'], [18446744073709551615n, 9007199254740993n]],
    ['FP16', [1, -2, 65504, 0.1, 2 ** -24, 65519], [0x3c00, 0xc000, 0x7bff, 0x2e66, 0x0001, 0x7bff]],
    ['FP32', [1.5, -0.1, 3.4e38, 3.4028234663852886e38, 1e-45], [1.5, -0.1, 3.4e38, 3.4028234663852886e38, 1e-45]],
    ['FP64', [0.1, -1e308, 5e-324, 2 ** 53 + 2], [0.1, -1e308, 5e-324, 2 ** 53 + 2]],
  ] as const)('%s %j → little-endian bytes', (datatype, values, expected) => {
    expect(encodeJsonElements(datatype, values, 'd')).toEqual(leBytes(datatype, expected))
  })

  it('rounds FP32 values to the nearest float32', () => {
    const bytes = encodeJsonElements('FP32', [0.1, 1 / 3], 'd')
    const view = new DataView(bytes.buffer, bytes.byteOffset)
    expect(view.getFloat32(0, true)).toBe(Math.fround(0.1))
    expect(view.getFloat32(4, true)).toBe(Math.fround(1 / 3))
  })

  it('encodes an empty list as no bytes', () => {
    expect(encodeJsonElements('FP64', [], 'd').byteLength).toBe(0)
    expect(encodeJsonElements('BOOL', [], 'd').byteLength).toBe(0)
  })

  it('returns bytes that start at offset 0 of their own buffer', () => {
    const bytes = encodeJsonElements('INT64', ['1', '2'], 'd')
    expect(bytes.byteOffset).toBe(0)
    expect(bytes.buffer.byteLength).toBe(16)
  })

  it.each([
    ['UINT8', -1],
    ['UINT8', 256],
    ['INT8', -129],
    ['INT8', 128],
    ['UINT16', -1],
    ['UINT16', 65536],
    ['INT16', -32769],
    ['INT16', 32768],
    ['UINT32', -1],
    ['UINT32', 4294967296],
    ['INT32', -2147483649],
    ['INT32', 2147483648],
    ['INT64', '-9223372036854775809'],
    ['INT64', '9223372036854775808'],
    ['INT64', '99999999999999999999'],
    ['UINT64', -1],
    ['UINT64', '-1'],
    ['UINT64', '18446744073709551616'],
    ['UINT64', '99999999999999999999'],
    ['FP32', 1e39],
    ['FP32', -3.5e38],
    ['FP32', Infinity], // what JSON.parse makes of 1e999
    ['FP64', -Infinity],
    ['FP16', 65520], // the first value that rounds to FP16 infinity
    ['FP16', -70000],
  ] as const)('rejects %s out of range: %j, naming field[i]', (datatype, bad) => {
    const error = expectProtocolError(TensorError, () => encodeJsonElements(datatype, [0, 1, bad], 'inputs[2].data'), 'inputs[2].data[2]')
    expect(error.message).toMatch(/range/)
  })

  it.each([
    ['BOOL', 1],
    ['BOOL', 0],
    ['BOOL', 'true'],
    ['BOOL', null],
    ['UINT8', 1.5],
    ['UINT8', '1'],
    ['INT8', true],
    ['INT16', null],
    ['UINT16', NaN],
    ['INT32', Infinity],
    ['INT32', -0.5],
    ['UINT32', [1]],
    ['INT64', 1.5],
    ['INT64', 2 ** 53], // not a safe integer: precision may already be lost
    ['INT64', -(2 ** 53)],
    ['INT64', '1.0'],
    ['INT64', '1e3'],
    ['INT64', '0x10'],
    ['INT64', '+1'],
    ['INT64', ' 1'],
    ['INT64', ''],
    ['INT64', '123456789012345678901'], // 21 digits
    ['INT64', true],
    ['UINT64', null],
    ['UINT64', 1e20],
    ['FP16', '1'],
    ['FP16', null],
    ['FP32', '1.5'],
    ['FP32', true],
    ['FP64', null],
    ['FP64', {}],
  ] as const)('rejects %s of the wrong type: %j, naming field[i]', (datatype, bad) => {
    const ok = datatype === 'BOOL' ? true : 1
    expectProtocolError(TensorError, () => encodeJsonElements(datatype, [ok, bad, ok], 'inputs[0].data'), 'inputs[0].data[1]')
  })

  it('names the first bad element when several are bad', () => {
    expectProtocolError(TensorError, () => encodeJsonElements('INT8', [1, 2, 3, 200, 'x'], 'f'), 'f[3]')
    // Across rows the index is the element's flat one, as for flat data.
    expectProtocolError(TensorError, () => encodeJsonRows('INT8', [[1, 2], [3, 200]], 'f'), 'f[3]')
    // Given nested, named by its nested path, as a shape error there is.
    expectProtocolError(TensorError, () => encodeJsonRows('INT8', [[1, 2], [3, 200]], 'f', [2, 2]), 'f[1][1]')
    expectProtocolError(TensorError, () => encodeJsonRows('INT8', tensorDataRows([[[1, 2], [3, 4]], [[5, 6], [7, 'x']]], [2, 2, 2], 'f'), 'f', [2, 2, 2]), 'f[1][1][1]')
    expect(encodeJsonRows('INT8', [[1, -2], [], [3]], 'f')).toEqual(Uint8Array.from([1, 0xfe, 3]))
  })

  it('names the datatype in the message', () => {
    const error = expectProtocolError(TensorError, () => encodeJsonElements('UINT16', [70000], 'f'), 'f[0]')
    expect(error.message).toContain('UINT16')
  })

  it('takes bigints for 64-bit integers with every digit, and for floats as their nearest value', () => {
    const int64 = encodeJsonElements('INT64', [2n ** 62n + 1n, -(2n ** 63n)], 'f')
    expect([...new BigInt64Array(int64.buffer)]).toEqual([2n ** 62n + 1n, -(2n ** 63n)])
    const uint64 = encodeJsonElements('UINT64', [2n ** 64n - 1n], 'f')
    expect([...new BigUint64Array(uint64.buffer)]).toEqual([2n ** 64n - 1n])
    expect([...new Float32Array(encodeJsonElements('FP32', [2n ** 60n + 1n], 'f').buffer)]).toEqual([2 ** 60])
    expect(expectProtocolError(TensorError, () => encodeJsonElements('INT32', [2n ** 60n], 'f'), 'f[0]').message).toMatch(/range/)
    expect(expectProtocolError(TensorError, () => encodeJsonElements('INT64', [2n ** 63n], 'f'), 'f[0]').message).toContain('9223372036854775808')
  })

  it('calls a JSON number beyond 2^53 for a 64-bit integer inexact, without echoing the rounded value', () => {
    // JSON.parse('9007199254740993') is 9007199254740992: the client's digits are gone.
    const error = expectProtocolError(InexactIntegerError, () => encodeJsonElements('INT64', [1, 9007199254740993], 'f'), 'f[1]')
    expect(error.message).toContain('decimal string')
    expect(error.message).not.toContain('9007199254740992')
  })

  it('shows a refused value as JavaScript writes the number, cut short when long', () => {
    // JSON.parse reads 1e400 as Infinity, which JSON.stringify would show as null.
    expect(expectProtocolError(TensorError, () => encodeJsonElements('FP32', [Infinity], 'f'), 'f[0]').message).toContain('Infinity')
    const long = expectProtocolError(TensorError, () => encodeJsonElements('FP32', ['x'.repeat(10_000)], 'f'), 'f[0]')
    expect(long.message.length).toBeLessThan(120)
    // A bigint inside a refused value (the edge's exact reading of a body) is shown, not thrown on.
    expect(expectProtocolError(TensorError, () => encodeJsonElements('INT64', [[2n ** 60n]], 'f'), 'f[0]').message).toContain('1152921504606846976')
  })

  it('shows a refused element nested a million deep, cut short, without overflowing the stack', () => {
    // One array nested 1,000,000 deep is 2 MB of JSON: JSON.stringify of it overflowed the stack (a 500 at the edge).
    let deep: unknown[] = []
    for (let depth = 0; depth < 1_000_000; depth++) deep = [deep]
    const error = expectProtocolError(TensorError, () => encodeJsonElements('FP32', [0, deep], 'f'), 'f[1]')
    expect(error.message).toContain('expected a number for FP32: [[[[')
    expect(error.message.length).toBeLessThan(120)
    // Objects and strings inside are written as JSON, up to the cut.
    expect(expectProtocolError(TensorError, () => encodeJsonElements('FP32', [{ a: [1, 'b'], c: null }], 'f'), 'f[0]').message).toContain('{"a":[1,"b"],"c":null}')
  })
})

describe('elementsToJson', () => {
  it.each([
    ['BOOL', [true, false, true], '[true,false,true]'],
    ['UINT8', [0, 255], '[0,255]'],
    ['INT8', [-128, 127], '[-128,127]'],
    ['UINT16', [65535, 1], '[65535,1]'],
    ['INT16', [-32768, 32767], '[-32768,32767]'],
    ['UINT32', [4294967295], '[4294967295]'],
    ['INT32', [-2147483648, 2147483647], '[-2147483648,2147483647]'],
    ['INT64', ['9007199254740993', '-9223372036854775808', '9223372036854775807', 0, -1], '[9007199254740993,-9223372036854775808,9223372036854775807,0,-1]'],
    ['UINT64', ['18446744073709551615', '9007199254740993', 7], '[18446744073709551615,9007199254740993,7]'],
    ['FP16', [1, -2, 0.1, 65504, 2 ** -24], `[1,-2,0.0999755859375,65504,${2 ** -24}]`],
    ['FP32', [1.5, -0.25], '[1.5,-0.25]'],
    ['FP64', [0.1, -1e308], '[0.1,-1e+308]'],
  ] as const)('%s round trips %j as JSON text', (datatype, values, text) => {
    expect(elementsToJson(datatype, encodeJsonElements(datatype, values, 'd'))).toBe(text)
  })

  it('writes 64-bit integers beyond 2^53 with every digit', () => {
    const text = elementsToJson('INT64', leBytes('INT64', [2n ** 62n + 1n, -(2n ** 62n) - 3n]))
    expect(text).toBe('[4611686018427387905,-4611686018427387907]')
  })

  it("keeps a float's negative zero (JSON.stringify would write 0), for every float datatype", () => {
    expect(elementsToJson('FP32', bytesOf(Float32Array.of(-0, 0, 1.5)))).toBe('[-0.0,0,1.5]')
    expect(elementsToJson('FP64', bytesOf(Float64Array.of(0, -0)))).toBe('[0,-0.0]')
    expect(elementsToJson('FP16', leBytes('FP16', [0x8000, 0x0000]))).toBe('[-0.0,0]')
    expect(Object.is(JSON.parse(elementsToJson('FP32', bytesOf(Float32Array.of(-0))))[0], -0)).toBe(true)
    expect(elementsToJson('FP32', bytesOf(Float32Array.of(Number.NaN, -0)))).toBe('[null,-0.0]')
  })

  it('writes any non-zero BOOL byte as true', () => {
    expect(elementsToJson('BOOL', new Uint8Array([0, 1, 2, 255]))).toBe('[false,true,true,true]')
  })

  it('expands FP16 bit patterns to numbers', () => {
    const text = elementsToJson('FP16', leBytes('FP16', [0x3c00, 0x3555, 0x0001, 0xc400]))
    expect(JSON.parse(text)).toEqual([1, 0.333251953125, 2 ** -24, -4])
  })

  it('writes FP32 values as the doubles the float32s denote', () => {
    const text = elementsToJson('FP32', encodeJsonElements('FP32', [0.1], 'd'))
    expect(JSON.parse(text)).toEqual([Math.fround(0.1)])
  })

  it.each(['FP16', 'FP32', 'FP64'] as const)('writes %s NaN and ±Infinity as null (JSON has neither)', (datatype) => {
    const values = datatype === 'FP16' ? [0x7e00, 0x7c00, 0xfc00, 0x3c00] : [NaN, Infinity, -Infinity, 1]
    expect(elementsToJson(datatype, leBytes(datatype, values))).toBe('[null,null,null,1]')
  })

  it.each(['BOOL', 'UINT8', 'INT64', 'UINT64', 'FP16', 'FP32', 'FP64'] as const)('writes no %s elements as []', (datatype) => {
    expect(elementsToJson(datatype, new Uint8Array(0))).toBe('[]')
  })

  it('produces JSON whose values encode back to the same bytes', () => {
    const cases: [Datatype, unknown[]][] = [
      ['INT32', [-5, 0, 7, 2147483647]],
      ['UINT16', [1, 2, 3]],
      ['FP64', [Math.PI, -0.5, 1e-300]],
      ['FP16', [0.5, -1024, 6e-8]],
      ['BOOL', [false, true]],
    ]
    for (const [datatype, values] of cases) {
      const bytes = encodeJsonElements(datatype, values, 'd')
      const again = encodeJsonElements(datatype, JSON.parse(elementsToJson(datatype, bytes)), 'd')
      expect(again).toEqual(bytes)
    }
  })

  it('reads misaligned bytes correctly', () => {
    const bytes = atOddOffset(leBytes('INT64', [9007199254740993n, -2n]))
    expect(elementsToJson('INT64', bytes)).toBe('[9007199254740993,-2]')
    expect(elementsToJson('FP64', atOddOffset(leBytes('FP64', [0.1, 2.5])))).toBe('[0.1,2.5]')
  })
})

describe('typedElements', () => {
  it.each([
    ['BOOL', Uint8Array, 1],
    ['UINT8', Uint8Array, 1],
    ['INT8', Int8Array, 1],
    ['UINT16', Uint16Array, 2],
    ['FP16', Uint16Array, 2],
    ['INT16', Int16Array, 2],
    ['UINT32', Uint32Array, 4],
    ['INT32', Int32Array, 4],
    ['FP32', Float32Array, 4],
    ['UINT64', BigUint64Array, 8],
    ['INT64', BigInt64Array, 8],
    ['FP64', Float64Array, 8],
  ] as const)('views %s bytes as %o', (datatype, Type, size) => {
    const bytes = new Uint8Array(size * 3)
    const elements = typedElements(datatype, bytes)
    expect(elements).toBeInstanceOf(Type)
    expect(elements.length).toBe(3)
  })

  it('returns a view (no copy) when the bytes are aligned', () => {
    const buffer = new ArrayBuffer(32)
    const bytes = new Uint8Array(buffer, 8, 16)
    new DataView(buffer).setFloat64(8, 2.5, true)
    const elements = typedElements('FP64', bytes) as Float64Array
    expect(elements.buffer).toBe(buffer)
    expect(elements.byteOffset).toBe(8)
    expect(Array.from(elements)).toEqual([2.5, 0])
    bytes.set(leBytes('FP64', [-7]), 8) // writes through to the view
    expect(elements[1]).toBe(-7)
  })

  it.each([
    ['UINT16', [1, 0xfffe, 0x1234]],
    ['INT16', [-2, 300, -32768]],
    ['FP16', [0x3c00, 0xc000, 0x7bff]],
    ['UINT32', [0xdeadbeef, 1]],
    ['INT32', [-123456789, 42]],
    ['FP32', [1.5, -0.25, 3]],
    ['FP64', [0.1, -1e300]],
    ['INT64', [-(2n ** 63n), 9007199254740993n]],
    ['UINT64', [2n ** 64n - 1n, 5n]],
  ] as const)('copies and reads %s correctly at byteOffset 1 of a Node Buffer', (datatype, values) => {
    const bytes = atOddOffset(leBytes(datatype, values))
    const elements = typedElements(datatype, bytes)
    expect(Array.from(elements as ArrayLike<number | bigint>)).toEqual(values)
    expect(elements.buffer).not.toBe(bytes.buffer)
    expect(elements.byteOffset % leBytes(datatype, [0]).byteLength).toBe(0)
  })

  it('does not copy single-byte types at odd offsets', () => {
    const bytes = atOddOffset(new Uint8Array([1, 255]))
    const elements = typedElements('INT8', bytes)
    expect(Array.from(elements as Int8Array)).toEqual([1, -1])
    expect(elements.buffer).toBe(bytes.buffer)
  })
})

describe('copyBytes / bytesOf', () => {
  it('copyBytes makes an independent, exactly sized copy of a Buffer view', () => {
    const source = NodeBuffer.from([9, 8, 7, 6, 5, 4])
    const view = source.subarray(2, 5)
    const copy = copyBytes(view)
    expect(Array.from(copy)).toEqual([7, 6, 5])
    expect(copy.byteOffset).toBe(0)
    expect(copy.buffer.byteLength).toBe(3)
    source[2] = 0
    expect(copy[0]).toBe(7)
  })

  it('bytesOf views exactly the bytes behind a typed array (no copy)', () => {
    const all = new Float64Array([1, 2, 3, 4])
    const middle = all.subarray(1, 3)
    const bytes = bytesOf(middle)
    expect(bytes.buffer).toBe(all.buffer)
    expect(bytes.byteOffset).toBe(8)
    expect(bytes).toEqual(leBytes('FP64', [2, 3]))
    bytes.set(leBytes('FP64', [-9]), 0)
    expect(all[1]).toBe(-9)
  })
})
