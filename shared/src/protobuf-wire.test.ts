import { describe, expect, it } from 'vitest'
import { WIRE_FIXED32, WIRE_LEN, WIRE_VARINT, WireFormatError, WireReader, WireWriter } from './protobuf-wire.js'

const hex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')

/** The varint a field carries: `value` written as field 1, without its one-byte tag. */
const varint = (value: number | bigint) => hex(new WireWriter().int(1, value).finish()).slice(2)

/** The WireFormatError `read` throws. */
function failure(read: () => unknown): WireFormatError {
  try {
    read()
  } catch (error) {
    if (error instanceof WireFormatError) return error
    throw error
  }
  throw new Error('expected a WireFormatError')
}

describe('WireWriter', () => {
  it('encodes protobuf base-128 varints', () => {
    expect(varint(0)).toBe('00')
    expect(varint(1)).toBe('01')
    expect(varint(127)).toBe('7f')
    expect(varint(128)).toBe('8001')
    expect(varint(300)).toBe('ac02')
    expect(varint((1n << 63n) - 1n)).toBe('ffffffffffffffff7f')
    expect(varint((1n << 64n) - 1n)).toBe('ffffffffffffffffff01')
  })

  it('writes negative int64 as 10-byte two’s complement', () => {
    expect(varint(-1)).toBe('ffffffffffffffffff01')
    expect(varint(-2n)).toBe('feffffffffffffffff01')
    expect(varint(-(1n << 63n))).toBe('80808080808080808001')
  })

  it('rejects values a varint cannot carry exactly', () => {
    expect(() => varint(2 ** 53)).toThrow(RangeError)
    expect(() => varint(1.5)).toThrow(RangeError)
    expect(() => varint(1n << 64n)).toThrow(RangeError)
    expect(() => varint(-(1n << 63n) - 1n)).toThrow(RangeError)
    expect(() => new WireWriter().packedInts(1, [1, 2 ** 53])).toThrow(RangeError)
  })
})

describe('WireReader', () => {
  it('reads back what the writer wrote', () => {
    const big = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff)
    const bytes = new WireWriter()
      .int(1, -1n)
      .int(2, (1n << 64n) - 1n)
      .float(3, 1.5)
      .double(4, Math.PI)
      .string(5, 'größe')
      .bytes(6, big)
      .message(7, (m) => m.int(1, 42))
      .finish()
    const r = new WireReader(bytes)
    const read = () => {
      const { field } = r.header()
      return field
    }
    expect([read(), r.int64()]).toEqual([1, -1n])
    expect([read(), r.varint()]).toEqual([2, (1n << 64n) - 1n])
    expect([read(), r.float()]).toEqual([3, 1.5])
    expect([read(), r.double()]).toEqual([4, Math.PI])
    expect([read(), r.string()]).toEqual([5, 'größe'])
    expect(read()).toBe(6)
    const value = r.bytes()
    expect(value).toEqual(big)
    // A view into the input, not a copy: skipping or keeping big tensors costs nothing.
    expect(value.buffer).toBe(bytes.buffer)
    expect(read()).toBe(7)
    const nested = r.sub()
    expect([nested.header().field, nested.int(), nested.done]).toEqual([1, 42, true])
    expect(r.done).toBe(true)
  })

  it('reads repeated numbers whether packed or not', () => {
    const unpacked = new WireWriter().int(1, 2).int(1, 3).finish()
    const packed = new WireWriter().packedInts(1, [2, 3]).finish()
    for (const bytes of [unpacked, packed]) {
      const r = new WireReader(bytes)
      const dims: number[] = []
      while (!r.done) r.repeated(r.header().wire, WIRE_VARINT, (x) => x.int(), dims)
      expect(dims).toEqual([2, 3])
    }
  })

  it('keeps a field it skips whole, so writing it back reproduces the input', () => {
    const bytes = new WireWriter().int(1, 7).string(99, 'future field').float(3, 0.25).finish()
    const r = new WireReader(bytes)
    const out = new WireWriter()
    while (!r.done) out.raw(r.raw(r.header()))
    expect(hex(out.finish())).toBe(hex(bytes))
  })

  it('reports what is wrong and where, as an offset into the outermost message', () => {
    // Field 2 holds a nested message whose second field claims 5 bytes but has 1.
    const bytes = Uint8Array.of(0x08, 0x01, 0x12, 0x04, 0x08, 0x01, 0x12, 0x05)
    const r = new WireReader(bytes)
    r.header()
    r.int()
    expect(r.header()).toMatchObject({ field: 2, wire: WIRE_LEN, start: 2 })
    const nested = r.sub()
    nested.header()
    nested.int()
    nested.header()
    const error = failure(() => nested.bytes())
    expect(error).toMatchObject({ offset: 7, reason: 'length 5 runs past the end of the message' })
    expect(error.message).toBe('length 5 runs past the end of the message at byte 7')
  })

  it.each<[string, Uint8Array, RegExp]>([
    ['a truncated varint', Uint8Array.of(0x08, 0x80), /truncated varint/],
    ['a varint longer than 10 bytes', Uint8Array.of(0x08, ...new Array<number>(10).fill(0xff), 0x01), /longer than 10 bytes/],
    ['field number 0', Uint8Array.of(0x00, 0x01), /invalid field number 0/],
    ['a group (wire type 3)', Uint8Array.of(0x0b), /unsupported wire type 3/],
    ['a truncated fixed32', Uint8Array.of(0x0d, 0x00, 0x00), /truncated/],
  ])('refuses %s', (_case, bytes, reason) => {
    const r = new WireReader(bytes)
    expect(
      failure(() => {
        while (!r.done) r.skip(r.header().wire)
      }).reason,
    ).toMatch(reason)
  })

  it('checks a field has the wire type its declaration implies', () => {
    const r = new WireReader(new WireWriter().float(1, 1).finish())
    expect(failure(() => r.expect(r.header().wire, WIRE_VARINT)).reason).toBe(`wire type ${WIRE_FIXED32} where ${WIRE_VARINT} was expected`)
  })
})
