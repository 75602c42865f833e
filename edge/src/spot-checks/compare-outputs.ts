/**
 * Whether two devices' outputs for the same input agree (spot checks, spot-check.ts): the same
 * tensors (names, datatypes, shapes), integers and booleans bit for bit, floats within a
 * tolerance. Floats cannot be held to equality: honest devices on different CPUs (AVX-512
 * against ARM NEON, say) or onnxruntime builds sum in different orders and round differently.
 */
import { float16BitsToNumber, typedElements, type RawTensor } from '@depinfer/shared'

/** Two floats x, y agree when |x − y| ≤ absolute + relative × max(|x|, |y|). */
export interface Tolerance {
  absolute: number
  relative: number
}

export type Agreement = { agree: true } | { agree: false; detail: string }

const AGREE: Agreement = { agree: true }

export function compareOutputs(a: readonly RawTensor[], b: readonly RawTensor[], tolerance: Tolerance): Agreement {
  if (a.length !== b.length) return differ(`${a.length} against ${b.length} output tensors`)
  const byName = new Map(b.map((tensor) => [tensor.name, tensor]))
  for (const left of a) {
    const right = byName.get(left.name)
    if (!right) return differ(`output ${JSON.stringify(left.name)} is missing from one answer`)
    const agreement = compareTensor(left, right, tolerance)
    if (!agreement.agree) return agreement
  }
  return AGREE
}

function compareTensor(a: RawTensor, b: RawTensor, tolerance: Tolerance): Agreement {
  const name = JSON.stringify(a.name)
  if (a.datatype !== b.datatype) return differ(`output ${name} is ${a.datatype} against ${b.datatype}`)
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    return differ(`output ${name} has shape [${a.shape}] against [${b.shape}]`)
  }
  if (a.data.byteLength !== b.data.byteLength) return differ(`output ${name} has ${a.data.byteLength} against ${b.data.byteLength} bytes`)
  const float = floatReader(a.datatype)
  if (!float) {
    // Integers and booleans: exact.
    for (let i = 0; i < a.data.length; i++) {
      if (a.data[i] !== b.data[i]) return differ(`output ${name} differs at byte ${i} (${a.datatype}, compared exactly)`)
    }
    return AGREE
  }
  const x = float(a.data)
  const y = float(b.data)
  for (let i = 0; i < x.length; i++) {
    const u = x[i]!
    const v = y[i]!
    if (u === v || (Number.isNaN(u) && Number.isNaN(v))) continue
    // Past here a NaN or an infinity meets a different value: never within tolerance (the
    // relative bound of an infinity would be infinite).
    if (!Number.isFinite(u) || !Number.isFinite(v) || Math.abs(u - v) > tolerance.absolute + tolerance.relative * Math.max(Math.abs(u), Math.abs(v))) {
      return differ(`output ${name} differs at element ${i}: ${u} against ${v}`)
    }
  }
  return AGREE
}

/** The elements of a float tensor as numbers, or undefined for a non-float datatype. */
function floatReader(datatype: RawTensor['datatype']): ((data: Uint8Array) => ArrayLike<number>) | undefined {
  switch (datatype) {
    case 'FP32':
    case 'FP64':
      return (data) => typedElements(datatype, data) as Float32Array | Float64Array
    case 'FP16':
      return (data) => Array.from(typedElements(datatype, data) as Uint16Array, float16BitsToNumber)
    default:
      return undefined
  }
}

function differ(detail: string): Agreement {
  return { agree: false, detail }
}
