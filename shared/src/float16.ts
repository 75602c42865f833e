/**
 * IEEE 754 binary16 conversion. Node 20 and workerd have no Float16Array, so FP16 tensors travel
 * as their raw 16-bit patterns in a Uint16Array and are converted only at the JSON boundary.
 */

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

/** Rounds a number to the nearest binary16 (ties to even) and returns its bit pattern. */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value
  const bits = u32[0]!
  const sign = (bits >>> 16) & 0x8000
  const exponent = (bits >>> 23) & 0xff
  let mantissa = bits & 0x7fffff

  if (exponent === 0xff) {
    // Infinity stays infinity; NaN keeps a quiet-NaN payload bit so it stays NaN.
    return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0)
  }
  const halfExponent = exponent - 127 + 15
  if (halfExponent >= 0x1f) return sign | 0x7c00 // overflow → ±Infinity
  if (halfExponent <= 0) {
    // Subnormal half (or zero): shift the implicit leading 1 into the mantissa.
    if (halfExponent < -10) return sign
    mantissa |= 0x800000
    const shift = 14 - halfExponent
    const halfMantissa = mantissa >>> shift
    const remainder = mantissa & ((1 << shift) - 1)
    const halfway = 1 << (shift - 1)
    const roundUp = remainder > halfway || (remainder === halfway && (halfMantissa & 1) === 1)
    return sign | (halfMantissa + (roundUp ? 1 : 0))
  }
  const halfMantissa = mantissa >>> 13
  const remainder = mantissa & 0x1fff
  const roundUp = remainder > 0x1000 || (remainder === 0x1000 && (halfMantissa & 1) === 1)
  // A carry out of the mantissa correctly bumps the exponent (and may reach Infinity).
  return (sign | (halfExponent << 10) | halfMantissa) + (roundUp ? 1 : 0)
}

/** Expands a binary16 bit pattern to the number it denotes. */
export function float16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1
  const exponent = (bits >>> 10) & 0x1f
  const mantissa = bits & 0x3ff
  if (exponent === 0) return sign * mantissa * 2 ** -24
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15)
}
