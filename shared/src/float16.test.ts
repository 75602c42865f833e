import { describe, expect, it } from 'vitest'
import { float16BitsToNumber, toFloat16Bits } from './float16.js'
import { seededRandom } from './seeded-random.js'

/**
 * Independent reference: the binary16 bit pattern nearest to `x` (ties to even), computed with
 * exact power-of-two scaling of the double itself (no float32 intermediate).
 */
function referenceHalfBits(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0
  const ax = Math.abs(x)
  if (Number.isNaN(x)) return 0x7e00
  if (ax === Infinity) return sign | 0x7c00
  const roundHalfEven = (q: number): number => {
    const floor = Math.floor(q)
    const frac = q - floor // exact: q < 2^12 here
    if (frac > 0.5) return floor + 1
    if (frac < 0.5) return floor
    return floor % 2 === 0 ? floor : floor + 1
  }
  if (ax < 2 ** -14) {
    // Subnormal range: the pattern is the count of 2^-24 steps (1024 steps = the smallest normal).
    return sign | roundHalfEven(ax * 2 ** 24)
  }
  let e = Math.floor(Math.log2(ax))
  while (2 ** e > ax) e--
  while (2 ** (e + 1) <= ax) e++
  if (e > 15) return sign | 0x7c00
  const significand = roundHalfEven(ax / 2 ** (e - 10)) // in [1024, 2048]
  const bits = ((e + 15) << 10) + significand - 1024 // a carry into the exponent is correct
  return sign | Math.min(bits, 0x7c00)
}

const hex = (bits: number) => bits.toString(16).padStart(4, '0')
const isNaNPattern = (bits: number) => (bits & 0x7c00) === 0x7c00 && (bits & 0x03ff) !== 0

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)
const float32FromBits = (bits: number) => {
  u32[0] = bits
  return f32[0]!
}
const float32Bits = (value: number) => {
  f32[0] = value
  return u32[0]!
}

describe('toFloat16Bits', () => {
  it.each([
    [1, 0x3c00],
    [-1, 0xbc00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [2, 0x4000],
    [0, 0x0000],
    [-0, 0x8000],
    [65504, 0x7bff], // largest finite half
    [-65504, 0xfbff],
    [65519, 0x7bff], // just below the rounding boundary to Infinity
    [65520, 0x7c00], // halfway to 2^16: ties-to-even rounds up to Infinity
    [1e6, 0x7c00],
    [-1e6, 0xfc00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -24, 0x0001], // smallest subnormal
    [-(2 ** -24), 0x8001],
    [1023 * 2 ** -24, 0x03ff], // largest subnormal
    [2 ** -14, 0x0400], // smallest normal
    [0.1, 0x2e66],
    [1 / 3, 0x3555],
    [Math.PI, 0x4248],
    [1e-8, 0x0000], // below half the smallest subnormal → zero
    [-1e-8, 0x8000], // keeps its sign
  ].map(([value, bits]) => [value!, hex(bits!), bits!] as const))('encodes %d as 0x%s', (value, _hex, bits) => {
    expect(toFloat16Bits(value)).toBe(bits)
  })

  it.each([
    // [why, value, expected bits]
    ['tie between 0x3c00 and 0x3c01 → even 0x3c00', 1 + 2 ** -11, 0x3c00],
    ['tie between 0x3c01 and 0x3c02 → even 0x3c02', 1 + 3 * 2 ** -11, 0x3c02],
    ['tie between 2048 and 2050 → 2048', 2049, 0x6800],
    ['tie between 2050 and 2052 → 2052', 2051, 0x6802],
    ['tie between 0 and the smallest subnormal → 0', 2 ** -25, 0x0000],
    ['tie between subnormals 1 and 2 → 2', 3 * 2 ** -25, 0x0002],
    ['tie between subnormals 2 and 3 → 2', 5 * 2 ** -25, 0x0002],
    ['tie between largest subnormal and smallest normal → normal', 1023.5 * 2 ** -24, 0x0400],
    ['negative tie → even', -(1 + 2 ** -11), 0xbc00],
  ] as const)('rounds ties to even: %s', (_why, value, bits) => {
    expect(toFloat16Bits(value)).toBe(bits)
  })

  it('rounds values just past a tie away from it', () => {
    // float32 can represent 1 + 2^-11 + 2^-23, which is above the tie → rounds up.
    expect(toFloat16Bits(1 + 2 ** -11 + 2 ** -23)).toBe(0x3c01)
    expect(toFloat16Bits(1 + 2 ** -11 - 2 ** -23)).toBe(0x3c00)
    expect(toFloat16Bits(2 ** -25 * (1 + 2 ** -20))).toBe(0x0001)
    expect(toFloat16Bits(65520 - 2 ** -8)).toBe(0x7bff)
  })

  it('encodes NaN as a NaN pattern (exponent all ones, non-zero mantissa)', () => {
    expect(isNaNPattern(toFloat16Bits(NaN))).toBe(true)
    expect(isNaNPattern(toFloat16Bits(float32FromBits(0x7f800001)))).toBe(true) // signalling NaN
    expect(isNaNPattern(toFloat16Bits(float32FromBits(0xffc00000)))).toBe(true) // negative NaN
  })

  it('agrees with the reference at every half value, every midpoint and its float32 neighbours', () => {
    const mismatches: string[] = []
    const check = (x: number) => {
      const got = toFloat16Bits(x)
      const want = referenceHalfBits(x)
      if (got !== want) mismatches.push(`${x}: got 0x${got.toString(16)}, want 0x${want.toString(16)}`)
    }
    for (let bits = 0; bits < 0x7c00; bits++) {
      const v = float16BitsToNumber(bits)
      const next = float16BitsToNumber(bits + 1) // 0x7c00 → Infinity; use 65520 as the boundary
      const midpoint = bits === 0x7bff ? 65520 : (v + next) / 2
      const midBits = float32Bits(midpoint)
      for (const x of [v, midpoint, float32FromBits(midBits - 1), float32FromBits(midBits + 1)]) {
        check(x)
        check(-x)
      }
    }
    expect(mismatches.slice(0, 10)).toEqual([])
  })

  it('agrees with the reference on random float32 values across the whole range', () => {
    const next = seededRandom(0x5eed)
    const mismatches: string[] = []
    for (let i = 0; i < 100_000; i++) {
      // Bias half the samples to exponents near the binary16 range, where rounding is interesting.
      const bits = i % 2 === 0 ? next() : ((next() & 0x807fffff) | ((95 + (next() % 60)) << 23)) >>> 0
      const x = float32FromBits(bits)
      if (Number.isNaN(x)) continue
      const got = toFloat16Bits(x)
      const want = referenceHalfBits(x)
      if (got !== want) mismatches.push(`${x}: got 0x${got.toString(16)}, want 0x${want.toString(16)}`)
    }
    expect(mismatches.slice(0, 10)).toEqual([])
  })

  // Regression: rounding through float32 first (double rounding) collapsed a double just
  // above/below a binary16 midpoint onto the midpoint, which then went the wrong way on the tie.
  // encodeJsonRows feeds this JSON numbers (doubles).
  it('rounds a double (not its float32 rounding) to the nearest binary16', () => {
    // 1 + 2^-11 is the midpoint of 0x3c00 and 0x3c01; anything above it is nearer 0x3c01.
    expect(toFloat16Bits(1 + 2 ** -11 + 2 ** -40)).toBe(0x3c01)
    // 1 + 3·2^-11 is the midpoint of 0x3c01 and 0x3c02; anything below it is nearer 0x3c01.
    expect(toFloat16Bits(1 + 3 * 2 ** -11 - 2 ** -40)).toBe(0x3c01)
  })
})

describe('float16BitsToNumber', () => {
  it.each([
    [0x3c00, 1],
    [0xbc00, -1],
    [0xc000, -2],
    [0x3800, 0.5],
    [0x7bff, 65504],
    [0xfbff, -65504],
    [0x0001, 2 ** -24],
    [0x03ff, 1023 * 2 ** -24],
    [0x0400, 2 ** -14],
    [0x2e66, 0.0999755859375],
    [0x3555, 0.333251953125],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
    [0x0000, 0],
  ].map(([bits, value]) => [hex(bits!), bits!, value!] as const))('decodes 0x%s as %d', (_hex, bits, value) => {
    expect(float16BitsToNumber(bits)).toBe(value)
  })

  it('decodes 0x8000 as negative zero', () => {
    expect(Object.is(float16BitsToNumber(0x8000), -0)).toBe(true)
    expect(Object.is(float16BitsToNumber(0x0000), 0)).toBe(true)
  })

  it.each([0x7c01, 0x7e00, 0x7fff, 0xfc01, 0xfe00, 0xffff].map((bits) => [hex(bits), bits] as const))('decodes NaN pattern 0x%s as NaN', (_hex, bits) => {
    expect(float16BitsToNumber(bits)).toBeNaN()
  })

  it('is strictly increasing over the positive patterns with the binary16 step sizes', () => {
    const failures: number[] = []
    for (let bits = 0; bits < 0x7bff; bits++) {
      const exponent = Math.max(bits >> 10, 1) // subnormals share the step of exponent 1
      const step = 2 ** (exponent - 15 - 10)
      if (float16BitsToNumber(bits + 1) - float16BitsToNumber(bits) !== step) failures.push(bits)
    }
    expect(failures.slice(0, 10)).toEqual([])
  })

  it('negative patterns are the negation of the positive ones', () => {
    const failures: number[] = []
    for (let bits = 1; bits <= 0x7c00; bits++) {
      if (float16BitsToNumber(bits | 0x8000) !== -float16BitsToNumber(bits)) failures.push(bits)
    }
    expect(failures.slice(0, 10)).toEqual([])
  })
})

describe('round trip', () => {
  it('bits → number → bits is the identity for all 65536 patterns (NaNs stay NaN)', () => {
    const failures: string[] = []
    for (let bits = 0; bits <= 0xffff; bits++) {
      const back = toFloat16Bits(float16BitsToNumber(bits))
      if (isNaNPattern(bits) ? !isNaNPattern(back) : back !== bits) {
        failures.push(`0x${bits.toString(16)} → 0x${back.toString(16)}`)
      }
    }
    expect(failures.slice(0, 10)).toEqual([])
  })
})
