/**
 * Weight quantization arithmetic (linear, round half to even like onnxruntime's QuantizeLinear).
 *
 * int8 weights are symmetric: zero point 0 and range ±127 (-128 unused, so that w and -w
 * round to opposite values), which is what lets onnxruntime pick its symmetric int8 kernels
 * (QLinearConv's ConvSym path needs weight zero points of 0). uint8 weights are asymmetric over
 * [min(w,0), max(w,0)].
 */

export type WeightType = 'int8' | 'uint8'

export interface QuantizedWeights {
  values: Int8Array | Uint8Array
  /** One scale per channel along `axis` (per-channel), or a single one. */
  scales: Float32Array
  zeroPoints: Int8Array | Uint8Array
  /** The channel axis, or undefined for per-tensor quantization. */
  axis: number | undefined
}

/** Round half to even (numpy/onnxruntime rounding), so both sides agree on ties. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x)
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r
}

/**
 * Quantizes `values` (row-major, shape `dims`). With `axis`, each slice along it gets its own
 * scale; `reduceRange` uses 7 bits (±63 / 0..127), for x86 CPUs without VNNI where u8×s8
 * dot products can saturate (onnxruntime's `reduce_range`).
 */
export function quantizeWeights(
  values: Float32Array,
  dims: readonly number[],
  type: WeightType,
  axis: number | undefined,
  reduceRange = false,
): QuantizedWeights {
  const channels = axis === undefined ? 1 : dims[axis]!
  // Elements of one channel are `inner` apart in runs of `inner`, every `channels * inner`.
  const inner = axis === undefined ? values.length : dims.slice(axis + 1).reduce((a, b) => a * b, 1)
  const channelOf = (i: number) => (axis === undefined ? 0 : Math.floor(i / inner) % channels)
  const min = new Float64Array(channels).fill(0)
  const max = new Float64Array(channels).fill(0)
  for (let i = 0; i < values.length; i++) {
    const c = channelOf(i)
    const v = values[i]!
    if (v < min[c]!) min[c] = v
    if (v > max[c]!) max[c] = v
  }
  const scales = new Float32Array(channels)
  const out = type === 'int8' ? new Int8Array(values.length) : new Uint8Array(values.length)
  const zeroPoints = type === 'int8' ? new Int8Array(channels) : new Uint8Array(channels)
  const qmax = type === 'int8' ? (reduceRange ? 63 : 127) : reduceRange ? 127 : 255
  for (let c = 0; c < channels; c++) {
    if (type === 'int8') {
      const absMax = Math.max(-min[c]!, max[c]!)
      scales[c] = absMax === 0 ? 1 : absMax / qmax
    } else {
      const range = max[c]! - min[c]!
      scales[c] = range === 0 ? 1 : range / qmax
      zeroPoints[c] = Math.min(qmax, Math.max(0, roundHalfEven(-min[c]! / scales[c]!)))
    }
  }
  const lo = type === 'int8' ? -qmax : 0
  for (let i = 0; i < values.length; i++) {
    const c = channelOf(i)
    const q = roundHalfEven(values[i]! / scales[c]!) + zeroPoints[c]!
    out[i] = Math.min(qmax, Math.max(lo, q))
  }
  return { values: out, scales, zeroPoints, axis }
}

/** Transposes a row-major [rows, cols] matrix. */
export function transpose2d(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length)
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c]!
  return out
}

/** Scale and zero point of an asymmetric uint8 range that contains 0 (activations). */
export function activationParams(min: number, max: number): { scale: number; zeroPoint: number } {
  const lo = Math.min(min, 0)
  const hi = Math.max(max, 0)
  const scale = hi - lo === 0 ? 1 : (hi - lo) / 255
  return { scale, zeroPoint: Math.min(255, Math.max(0, roundHalfEven(-lo / scale))) }
}
