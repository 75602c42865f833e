/**
 * Dynamic quantization, in the manner of onnxruntime.quantization.quantize_dynamic: weights are
 * quantized to int8 once, here; activations are quantized at run time (DynamicQuantizeLinear
 * computes each input's own uint8 scale and zero point), so no calibration data is needed.
 *
 *   MatMul(A, W)           → com.microsoft DynamicQuantizeMatMul(A, Wq, scale, zp)
 *   Gemm(A, B, C)          → DynamicQuantizeMatMul(A, Wq, scale, zp, bias) with W = alpha·Bᵀ?,
 *                            bias = beta·C (when C is a constant vector)
 *   Conv(X, W, B)          → DynamicQuantizeLinear(X) → ConvInteger → Cast → Mul(x_scale·w_scale) → Add(B)
 *
 * DynamicQuantizeMatMul is the fused kernel onnxruntime's own MatMulInteger-to-float fusion
 * produces; emitting it directly keeps the model small and does not depend on that fusion.
 * ConvInteger has no such fused form, and its int32 output needs the Cast/Mul/Add tail: with
 * the per-input DynamicQuantizeLinear pass that makes dynamic Conv slower than fp32 Conv in
 * onnxruntime 1.30 on x86 (PP-OCR cls 0.55x, rec 0.8x; depthwise ConvInteger 0.2–0.5x).
 */
import { GraphIndex, node } from './graph.js'
import {
  DataType,
  dataTypeName,
  byteTensor,
  floatTensor,
  floatValues,
  intAttr,
  intAttribute,
  type Node,
} from './onnx-proto.js'
import { quantizeWeights, transpose2d, type QuantizedWeights, type WeightType } from './quant-math.js'

export const MS_DOMAIN = 'com.microsoft'

export interface WeightOptions {
  weightType: WeightType
  perChannel: boolean
  reduceRange: boolean
}

/** Names of a quantized weight's initializers (shared when several nodes use one weight). */
export interface QuantizedWeightNames {
  values: string
  scale: string
  zeroPoint: string
  quantized: QuantizedWeights
}

/** Quantizes constant weights into initializers, once per (weight, layout). */
export class WeightStore {
  readonly #cache = new Map<string, QuantizedWeightNames>()
  constructor(readonly index: GraphIndex) {}

  /**
   * `values` in `dims` layout, quantized along `axis` when per-channel. `scaleDims`/`zpDims`
   * shape the scale (e.g. [1,M,1,1] to broadcast over a Conv output); a per-tensor scale is a
   * scalar.
   */
  get(key: string, base: string, values: Float32Array, dims: number[], type: WeightType, axis: number | undefined, reduceRange: boolean, scaleDims?: number[]): QuantizedWeightNames {
    const cacheKey = `${key}|${type}|${axis}|${reduceRange}|${scaleDims?.join('x')}`
    const cached = this.#cache.get(cacheKey)
    if (cached) return cached
    const quantized = quantizeWeights(values, dims, type, axis, reduceRange)
    const tensorType = type === 'int8' ? DataType.INT8 : DataType.UINT8
    const paramDims = axis === undefined ? [] : (scaleDims ?? [dims[axis]!])
    const names: QuantizedWeightNames = {
      values: this.index.addInitializer(byteTensor(`${base}_quantized`, dims, tensorType, quantized.values)),
      scale: this.index.addInitializer(floatTensor(`${base}_scale`, paramDims, quantized.scales)),
      zeroPoint: this.index.addInitializer(byteTensor(`${base}_zero_point`, paramDims, tensorType, quantized.zeroPoints)),
      quantized,
    }
    this.#cache.set(cacheKey, names)
    return names
  }
}

/** What happened to one node: replaced by `nodes`, or left in fp32 with the reason. */
export type Rewrite = { nodes: Node[]; skipped?: undefined } | { nodes?: undefined; skipped: string }

/** MatMul(A, W) with W a constant 2-D matrix [K, N]. */
export function dynamicMatMul(index: GraphIndex, store: WeightStore, n: Node, o: WeightOptions): Rewrite {
  const weightName = n.input[1]!
  const w = index.constants.get(weightName)
  if (!w) return { skipped: 'second input is not a constant' }
  if (w.dataType !== DataType.FLOAT) return { skipped: `weight is ${dataTypeName(w.dataType)}, not FLOAT` }
  if (w.dims.length !== 2) return { skipped: `weight is ${w.dims.length}-D, not a matrix` }
  const q = store.get(weightName, weightName, floatValues(w), w.dims, o.weightType, o.perChannel ? 1 : undefined, o.reduceRange)
  const name = n.name ?? index.fresh('MatMul')
  return {
    nodes: [node('DynamicQuantizeMatMul', [n.input[0]!, q.values, q.scale, q.zeroPoint], [n.output[0]!], `${name}_quant`, [], MS_DOMAIN)],
  }
}

/** Gemm(A, B, C) = alpha·A'·B' + beta·C, with B constant and no transA. */
export function dynamicGemm(index: GraphIndex, store: WeightStore, n: Node, o: WeightOptions): Rewrite {
  const b = index.constants.get(n.input[1]!)
  if (!b) return { skipped: 'B is not a constant' }
  if (b.dataType !== DataType.FLOAT || b.dims.length !== 2) return { skipped: 'B is not a FLOAT matrix' }
  if (intAttr(n, 'transA', 0) !== 0) return { skipped: 'transA is not supported' }
  const alphaAttr = n.attribute.find((a) => a.name === 'alpha')?.f ?? 1
  const beta = n.attribute.find((a) => a.name === 'beta')?.f ?? 1
  const transB = intAttr(n, 'transB', 0) !== 0
  let values = floatValues(b)
  let [k, cols] = b.dims as [number, number]
  if (transB) {
    values = transpose2d(values, k, cols)
    ;[k, cols] = [cols, k]
  }
  if (alphaAttr !== 1) values = values.map((v) => v * alphaAttr)
  const cName = n.input[2] ?? ''
  const c = cName === '' ? undefined : index.constants.get(cName)
  const name = n.name ?? index.fresh('Gemm')
  const out = n.output[0]!
  const key = `${n.input[1]}|gemm|${transB}|${alphaAttr}`
  const q = store.get(key, n.input[1]!, values, [k, cols], o.weightType, o.perChannel ? 1 : undefined, o.reduceRange)
  const weightInputs = [n.input[0]!, q.values, q.scale, q.zeroPoint]
  const isVector = c !== undefined && c.dataType === DataType.FLOAT && (c.dims.length === 1 || (c.dims.length === 2 && c.dims[0] === 1)) && c.dims.at(-1) === cols
  if (c !== undefined && isVector) {
    // A constant [N] or [1,N] C becomes the fused kernel's bias.
    const bias = index.addInitializer(floatTensor(`${cName}_bias`, [cols], floatValues(c).map((v) => v * beta)))
    return { nodes: [node('DynamicQuantizeMatMul', [...weightInputs, bias], [out], `${name}_quant`, [], MS_DOMAIN)] }
  }
  if (cName === '') return { nodes: [node('DynamicQuantizeMatMul', weightInputs, [out], `${name}_quant`, [], MS_DOMAIN)] }
  if (beta !== 1) return { skipped: 'C is not a constant vector and beta is not 1' }
  // Any other C (a matrix, or computed at run time) is added afterwards, with Gemm's broadcasting.
  const product = index.fresh(`${out}_matmul`)
  return {
    nodes: [
      node('DynamicQuantizeMatMul', weightInputs, [product], `${name}_quant`, [], MS_DOMAIN),
      node('Add', [product, cName], [out], `${name}_bias`),
    ],
  }
}

/**
 * Conv(X, W, B) → DynamicQuantizeLinear + ConvInteger. ConvInteger takes a single weight zero
 * point, so per-channel weights are symmetric (zero point 0 for every channel) and the
 * per-channel scales are applied to the int32 result instead.
 */
export function dynamicConv(index: GraphIndex, store: WeightStore, n: Node, o: WeightOptions): Rewrite {
  const weightName = n.input[1]!
  const w = index.constants.get(weightName)
  if (!w) return { skipped: 'weight is not a constant' }
  if (w.dataType !== DataType.FLOAT) return { skipped: `weight is ${dataTypeName(w.dataType)}, not FLOAT` }
  const biasName = n.input[2] ?? ''
  const channels = w.dims[0]!
  const rank = w.dims.length
  // onnxruntime's ConvInteger kernel takes uint8 weights only, so weights are uint8; per-channel
  // ones are symmetric around 128 so every channel shares the zero point ConvInteger accepts.
  const values = floatValues(w)
  const q = o.perChannel
    ? symmetricUint8PerChannel(index, store, weightName, values, w.dims, o.reduceRange, rank)
    : store.get(weightName, weightName, values, w.dims, 'uint8', undefined, o.reduceRange)
  const name = n.name ?? index.fresh('Conv')
  const out = n.output[0]!
  const xq = index.fresh(`${n.input[0]}_quantized`)
  const xs = index.fresh(`${n.input[0]}_scale`)
  const xzp = index.fresh(`${n.input[0]}_zero_point`)
  const y32 = index.fresh(`${out}_int32`)
  const yf = index.fresh(`${out}_float`)
  const scale = index.fresh(`${out}_scale`)
  const scaled = biasName === '' ? out : index.fresh(`${out}_scaled`)
  const convAttributes = n.attribute.filter((a) => ['auto_pad', 'dilations', 'group', 'kernel_shape', 'pads', 'strides'].includes(a.name ?? ''))
  const nodes = [
    node('DynamicQuantizeLinear', [n.input[0]!], [xq, xs, xzp], `${name}_input_quant`),
    node('ConvInteger', [xq, q.values, xzp, q.zeroPoint], [y32], `${name}_quant`, convAttributes),
    node('Cast', [y32], [yf], `${name}_cast`, [intAttribute('to', DataType.FLOAT)]),
    node('Mul', [xs, q.scale], [scale], `${name}_scale_mul`),
    node('Mul', [yf, scale], [scaled], `${name}_output_scale`),
  ]
  if (biasName !== '') {
    const bias = index.constants.get(biasName)
    // Reshaped to [1, M, 1, …] so it broadcasts over the channel axis of the NC… output.
    const biasInput = bias
      ? index.addInitializer(floatTensor(`${biasName}_reshaped`, [1, channels, ...Array<number>(rank - 2).fill(1)], floatValues(bias)))
      : undefined
    if (biasInput === undefined) return { skipped: 'bias is not a constant' }
    nodes.push(node('Add', [scaled, biasInput], [out], `${name}_bias`))
  }
  return { nodes }
}

function symmetricUint8PerChannel(
  index: GraphIndex,
  store: WeightStore,
  weightName: string,
  values: Float32Array,
  dims: number[],
  reduceRange: boolean,
  rank: number,
): QuantizedWeightNames {
  const key = `${weightName}|u8sym`
  const signed = store.get(key, weightName, values, dims, 'int8', 0, reduceRange, [1, dims[0]!, ...Array<number>(rank - 2).fill(1)])
  if (signed.quantized.values instanceof Uint8Array) return signed
  // Shift int8 symmetric values to uint8 around 128; one scalar zero point for all channels.
  const shifted = Uint8Array.from(signed.quantized.values, (v) => v + 128)
  const values8 = index.addInitializer(byteTensor(`${weightName}_quantized_u8`, dims, DataType.UINT8, shifted))
  const zp = index.addInitializer(byteTensor(`${weightName}_zero_point_u8`, [], DataType.UINT8, new Uint8Array([128])))
  return { ...signed, values: values8, zeroPoint: zp }
}
