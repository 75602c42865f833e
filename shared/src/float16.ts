/**
 * IEEE 754 binary16 conversion. Node 20 and workerd have no Float16Array, so FP16 tensors travel
 * as their raw 16-bit patterns in a Uint16Array and are converted only at the JSON boundary.
 */

/** Rounds to the nearest integer, ties to even (exact for the values used here, all < 2^12). */
function roundHalfEven(value: number): number {
  const floor = Math.floor(value)
  const fraction = value - floor
  if (fraction > 0.5) return floor + 1
  if (fraction < 0.5) return floor
  return floor % 2 === 0 ? floor : floor + 1
}

/**
 * Rounds a number (a double, as JSON gives it) to the nearest binary16, ties to even, and returns
 * its bit pattern. Rounds the double directly: going through float32 first would round twice
 * and can land on the wrong side of a binary16 midpoint.
 */
export function toFloat16Bits(value: number): number {
  if (Number.isNaN(value)) return 0x7e00
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0
  const magnitude = Math.abs(value)
  if (magnitude === Infinity) return sign | 0x7c00
  if (magnitude < 2 ** -14) {
    // Subnormal range: units of 2^-24. A result of 1024 is the smallest normal, 0x0400.
    return sign | roundHalfEven(magnitude * 2 ** 24)
  }
  let exponent = Math.floor(Math.log2(magnitude))
  // log2 can be off by one next to powers of two; settle 2^e <= magnitude < 2^(e+1) exactly.
  if (2 ** exponent > magnitude) exponent--
  else if (2 ** (exponent + 1) <= magnitude) exponent++
  // Scaling by a power of two is exact, so the mantissa's rounding is the only rounding.
  let mantissa = roundHalfEven(magnitude * 2 ** (10 - exponent))
  if (mantissa === 2048) {
    mantissa = 1024
    exponent++
  }
  if (exponent + 15 >= 0x1f) return sign | 0x7c00 // overflow → ±Infinity
  return sign | ((exponent + 15) << 10) | (mantissa - 1024)
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
