/**
 * Static quantization in QDQ format (onnxruntime.quantization.quantize_static with
 * QuantFormat.QDQ): activation ranges are measured once on calibration inputs, and every tensor
 * entering or leaving a quantized op gets a QuantizeLinear → DequantizeLinear pair with those
 * fixed parameters; weights are stored int8 behind a DequantizeLinear, biases int32.
 *
 * The graph stays a float graph with explicit rounding points, and onnxruntime's graph optimizer
 * turns each "DQ → op → Q" group into its int8 kernel (QLinearConv, QLinearMatMul, QGemm,
 * QLinearAdd, QLinearMul, QLinearGlobalAveragePool…), runs consecutive int8 kernels without
 * going back to float, and on x86/ARM lays int8 convolutions out NHWC. That chaining is what
 * makes it faster than dynamic quantization, which re-quantizes every input at run time and
 * (for Conv) has no fused int8 kernel at all.
 *
 * Extra ops (Add, Mul, pooling) join only next to quantized convolutions, and HardSigmoid
 * between int8 tensors is lowered to an int8 Add (see lowerHardSigmoid), so hard-swish
 * networks (MobileNetV3, PP-LCNet) stay int8 from one convolution to the next.
 *
 * Relu, and Clip with a lower bound of 0, right after a quantized op are dropped: a uint8
 * QuantizeLinear whose zero point is 0 already clamps at 0, and one whose range ends at or
 * below the Clip's upper bound clamps there (onnxruntime's ReluQuantFusion/ClipQuantFusion do
 * the same).
 */
import * as ort from 'onnxruntime-node'
import { GraphIndex, ensureOpset, floatValueInfo, node, opsetVersion } from './graph.js'
import { MS_DOMAIN, type WeightOptions } from './dynamic.js'
import { DataType, byteTensor, dataTypeName, encodeModel, floatTensor, floatValues, intAttr, intAttribute, type Model, type Node, type Tensor } from './onnx-proto.js'
import { activationParams, quantizeWeights, roundHalfEven, transpose2d } from './quant-math.js'
import type { NodeReport, QuantizableOp } from './quantize.js'
import { floatTensors } from './types.js'
import { keepOrtTelemetryOff } from '../runtime/ort-telemetry.js'

// Before any session of this process (ort-telemetry.ts).
keepOrtTelemetryOff()

/** One set of model inputs, by input name. */
export type CalibrationInput = Record<string, ort.Tensor>

/** An activation's calibrated range. */
export interface ActivationRange {
  min: number
  max: number
}

export interface StaticOptions {
  /**
   * Ops kept in int8 between quantized convolutions/matmuls when all their inputs are
   * activations: onnxruntime has int8 kernels for these, so they do not break an int8 chain.
   */
  extraOps: readonly string[]
  /** Drop Relu / Clip(0, x) after quantized ops (see above). */
  fuseActivations: boolean
  /** Run HardSigmoid between int8 tensors as an int8 Add (see lowerHardSigmoid). */
  lowerHardSigmoid: boolean
  /**
   * Range of each activation: 'minmax' over all calibration values, or 'percentile': the
   * `percentile`-th and (100 − `percentile`)-th percentiles of them (outliers are clipped, the
   * rest gets finer steps), estimated on an evenly strided subsample of each tensor's values.
   * (Measured on PP-OCRv4 rec: no better than minmax, whose error there comes from channels of
   * very different ranges sharing one per-tensor scale, not from outliers.)
   */
  calibrationMethod: 'minmax' | 'percentile'
  percentile: number
}

export const DEFAULT_STATIC_OPTIONS: StaticOptions = {
  extraOps: ['Add', 'Mul', 'GlobalAveragePool', 'AveragePool'],
  fuseActivations: true,
  lowerHardSigmoid: true,
  calibrationMethod: 'minmax',
  percentile: 99.99,
}

interface Plan {
  node: Node
  op: string
  /** Indices of the inputs that are activations to quantize. */
  activations: number[]
  /** Conv/MatMul/Gemm: the weight input, prepared (Gemm's B transposed/scaled to [K, N]). */
  weight?: { values: Float32Array; dims: number[]; axis: number; name: string }
  /** Conv/Gemm bias input (constant), quantized to int32. */
  bias?: { values: Float32Array; input: number }
}

export async function staticQuantize(
  model: Model,
  ops: ReadonlySet<QuantizableOp>,
  /** Why a node is to stay fp32 (excluded by name, depthwise…), or undefined. */
  excluded: (n: Node) => string | undefined,
  weights: WeightOptions,
  calibration: readonly CalibrationInput[],
  overrides: Partial<StaticOptions>,
  /** Ranges of earlier calls on the same model and inputs (QuantizeOptions.calibrationCache): only the others are measured. */
  cache?: Map<string, ActivationRange>,
): Promise<NodeReport[]> {
  const options = { ...DEFAULT_STATIC_OPTIONS, ...overrides }
  if (calibration.length === 0) throw new Error('static quantization needs at least one calibration input')
  const graph = model.graph!
  const index = new GraphIndex(graph)
  const floats = floatTensors(graph, index)
  const isActivation = (name: string) => name !== '' && floats.has(name) && !index.constants.has(name)
  const extra = new Set(options.extraOps)
  const report: NodeReport[] = []
  const plans: Plan[] = []

  for (const n of graph.node) {
    const op = (n.domain ?? '') === '' ? (n.opType ?? '') : ''
    if (op !== 'Conv' && op !== 'MatMul' && op !== 'Gemm') continue
    const skipped = !ops.has(op) ? 'op type not selected' : excluded(n)
    const plan = skipped ?? planWeighted(n, op, index, isActivation)
    if (typeof plan === 'string') report.push({ name: n.name ?? n.output[0] ?? '?', opType: op, skipped: plan })
    else {
      plans.push(plan)
      report.push({ name: n.name ?? n.output[0] ?? '?', opType: op })
    }
  }
  // Extra ops (Add, Mul, pooling) join the int8 region only next to it: reading a tensor a
  // quantized op (or a joined extra op) writes, possibly through a Relu/Clip or a lowered
  // HardSigmoid, or writing one a quantized op reads. Elsewhere (e.g. a transformer's residual
  // stream) int8 would buy nothing but rounding error and Q/DQ passes.
  const int8Written = new Set<string>()
  const int8Read = new Set<string>()
  for (const plan of plans) {
    int8Written.add(plan.node.output[0]!)
    for (const i of plan.activations) int8Read.add(plan.node.input[i]!)
  }
  const passThrough = new Set(['Relu', 'Clip', 'HardSigmoid'])
  for (const n of graph.node) {
    const op = (n.domain ?? '') === '' ? (n.opType ?? '') : ''
    if (passThrough.has(op) && int8Written.has(n.input[0] ?? '')) int8Written.add(n.output[0]!)
    if (!extra.has(op) || n.input.length === 0 || !n.input.every(isActivation) || n.output.length !== 1) continue
    if (!n.input.some((x) => int8Written.has(x)) && !int8Read.has(n.output[0]!)) continue
    plans.push({ node: n, op, activations: n.input.map((_, i) => i) })
    int8Written.add(n.output[0]!)
    report.push({ name: n.name ?? n.output[0] ?? '?', opType: op })
  }

  // Relu/Clip(0, ·) after a quantized op: the op will write the activation's output directly.
  // Decided now, applied after calibration, which must see the graph as it computes.
  const fused = new Map<Plan, Node>()
  if (options.fuseActivations) {
    for (const plan of plans) {
      const out = plan.node.output[0]!
      const consumers = index.consumers(out)
      const act = consumers[0]
      if (consumers.length !== 1 || act === undefined || index.isGraphOutput(out) || !isClampAtZero(act, index)) continue
      fused.set(plan, act)
    }
  }
  const outputOf = (plan: Plan) => fused.get(plan)?.output[0] ?? plan.node.output[0]!

  // Tensors to quantize: activation inputs and outputs of every planned node.
  const tensors = new Set<string>()
  for (const plan of plans) {
    for (const i of plan.activations) tensors.add(plan.node.input[i]!)
    if (floats.has(outputOf(plan))) tensors.add(outputOf(plan))
  }
  const unknown = [...tensors].filter((t) => !cache?.has(t))
  const ranges = await calibrate(model, unknown, calibration, options.calibrationMethod === 'percentile' ? options.percentile : undefined)
  for (const name of tensors) {
    const known = cache?.get(name)
    if (known !== undefined) ranges.set(name, known)
    else if (ranges.has(name)) cache?.set(name, ranges.get(name)!)
  }
  for (const [plan, act] of fused) plan.node.output = [act.output[0]!]
  const removed = new Set(fused.values())
  graph.node = graph.node.filter((n) => !removed.has(n))

  const perChannelDomain = (opsetVersion(model, '') ?? 0) >= 13 ? '' : MS_DOMAIN
  const params = new Map<string, { scale: string; zeroPoint: string; scaleValue: number; zeroPointValue: number; quantized: string }>()
  const dequantized = new Map<string, string>()
  const added: Node[] = []
  const removedLater = new Set<Node>()
  for (const name of tensors) {
    const range = ranges.get(name)
    if (range === undefined) continue
    const { scale, zeroPoint } = activationParams(range.min, range.max)
    const s = index.addInitializer(floatTensor(`${name}_scale`, [], Float32Array.of(scale)))
    const zp = index.addInitializer(byteTensor(`${name}_zero_point`, [], DataType.UINT8, Uint8Array.of(zeroPoint)))
    const q = index.fresh(`${name}_QuantizeLinear_Output`)
    const dq = index.fresh(`${name}_DequantizeLinear_Output`)
    added.push(node('QuantizeLinear', [name, s, zp], [q], index.fresh(`${name}_QuantizeLinear`)))
    added.push(node('DequantizeLinear', [q, s, zp], [dq], index.fresh(`${name}_DequantizeLinear`)))
    params.set(name, { scale: s, zeroPoint: zp, scaleValue: scale, zeroPointValue: zeroPoint, quantized: q })
    dequantized.set(name, dq)
  }
  // Every reader of a quantized tensor reads its dequantized copy (as onnxruntime's quantizer
  // does), so a quantized op's output feeds nothing but its QuantizeLinear and can be fused.
  for (const n of graph.node) n.input = n.input.map((x) => dequantized.get(x) ?? x)
  for (const n of graph.node) replaceInSubgraphs(n, dequantized)

  if (options.lowerHardSigmoid) {
    const source = new Map([...dequantized].map(([t, dq]) => [dq, t]))
    for (const n of graph.node) {
      if (n.opType !== 'HardSigmoid' || (n.domain ?? '') !== '') continue
      const input = params.get(source.get(n.input[0]!) ?? '')
      const alpha = n.attribute.find((a) => a.name === 'alpha')?.f ?? 0.2
      // A negative α would need a negative scale; never seen in practice, so left in fp32.
      if (input === undefined || !params.has(n.output[0]!) || !(alpha > 0)) continue
      added.push(...lowerHardSigmoid(n, input, index))
      removedLater.add(n)
    }
  }
  graph.node = graph.node.filter((n) => !removedLater.has(n))

  let usesMs = false
  for (const plan of plans) {
    if (plan.weight === undefined) continue
    const inputName = plan.node.input[0]!
    const source = [...dequantized].find(([, dq]) => dq === inputName)?.[0]
    const inputParams = source === undefined ? undefined : params.get(source)
    if (inputParams === undefined) continue
    const w = plan.weight
    const axis = weights.perChannel ? w.axis : undefined
    const qw = quantizeWeights(w.values, w.dims, 'int8', axis, weights.reduceRange)
    const paramDims = axis === undefined ? [] : [w.dims[axis]!]
    const wq = index.addInitializer(byteTensor(`${w.name}_quantized`, w.dims, DataType.INT8, qw.values))
    const ws = index.addInitializer(floatTensor(`${w.name}_scale`, paramDims, qw.scales))
    const wzp = index.addInitializer(byteTensor(`${w.name}_zero_point`, paramDims, DataType.INT8, qw.zeroPoints))
    const wdq = index.fresh(`${w.name}_DequantizeLinear_Output`)
    const axisAttr = axis === undefined ? [] : [intAttribute('axis', axis)]
    const domain = axis === undefined ? undefined : perChannelDomain || undefined
    usesMs ||= domain === MS_DOMAIN
    added.push(node('DequantizeLinear', [wq, ws, wzp], [wdq], index.fresh(`${w.name}_DequantizeLinear`), axisAttr, domain))
    plan.node.input[1] = wdq
    if (plan.op === 'Gemm') {
      // The weight is now [K, N] with alpha applied: Gemm reads it untransposed, unscaled.
      plan.node.attribute = plan.node.attribute.filter((a) => a.name !== 'transB' && a.name !== 'alpha')
    }
    if (plan.bias) {
      // int32 bias with scale x_scale·w_scale and zero point 0: what QLinearConv/QGemm expect.
      const biasScales = Float32Array.from(qw.scales, (s) => s * inputParams.scaleValue)
      const values = plan.bias.values
      const bq = new Int32Array(values.length)
      for (let i = 0; i < values.length; i++) {
        const s = biasScales.length === 1 ? biasScales[0]! : biasScales[i]!
        bq[i] = Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, roundHalfEven(values[i]! / s)))
      }
      const biasName = plan.node.input[plan.bias.input]!
      const bqName = index.addInitializer(int32Tensor(`${biasName}_quantized`, [values.length], bq))
      const bsName = index.addInitializer(floatTensor(`${biasName}_scale`, paramDims, biasScales))
      const bzpName = index.addInitializer(int32Tensor(`${biasName}_zero_point`, paramDims, new Int32Array(biasScales.length)))
      const bdq = index.fresh(`${biasName}_DequantizeLinear_Output`)
      const biasAxis = axis === undefined ? [] : [intAttribute('axis', 0)]
      added.push(node('DequantizeLinear', [bqName, bsName, bzpName], [bdq], index.fresh(`${biasName}_DequantizeLinear`), biasAxis, domain))
      plan.node.input[plan.bias.input] = bdq
      if (plan.op === 'Gemm') plan.node.attribute = plan.node.attribute.filter((a) => a.name !== 'beta')
    }
  }
  graph.node.push(...added)
  if (usesMs) ensureOpset(model, MS_DOMAIN, 1)
  return report
}

/**
 * HardSigmoid(x) = clip(α·x + β, 0, 1) between quantized tensors, as int8 ops: the α·x is a
 * DequantizeLinear of x's uint8 values with the scale α·s (exact: only the scale changes), + β
 * is an Add of a constant, and the clip is the output QuantizeLinear itself: its range, measured
 * on the HardSigmoid's output, lies within [0, 1], and QuantizeLinear saturates at the range's
 * ends. onnxruntime fuses DQ, DQ → Add → Q into one QLinearAdd, so the activation no longer
 * leaves int8 (onnxruntime has no int8 HardSigmoid kernel).
 */
function lowerHardSigmoid(n: Node, x: { scaleValue: number; zeroPoint: string; quantized: string }, index: GraphIndex): Node[] {
  const alpha = n.attribute.find((a) => a.name === 'alpha')?.f ?? 0.2
  const beta = n.attribute.find((a) => a.name === 'beta')?.f ?? 0.5
  const base = n.name ?? n.output[0]!
  const scaled = index.fresh(`${base}_scaled_input`)
  const scale = index.addInitializer(floatTensor(`${base}_input_scale`, [], Float32Array.of(x.scaleValue * alpha)))
  // β as a uint8 constant: 255 steps of |β|/255 above (β > 0) or below (β < 0) zero point.
  const betaS = index.addInitializer(floatTensor(`${base}_beta_scale`, [], Float32Array.of(beta === 0 ? 1 : Math.abs(beta) / 255)))
  const betaQ = index.addInitializer(byteTensor(`${base}_beta_quantized`, [], DataType.UINT8, Uint8Array.of(beta >= 0 ? 255 : 0)))
  const betaZp = index.addInitializer(byteTensor(`${base}_beta_zero_point`, [], DataType.UINT8, Uint8Array.of(beta > 0 ? 0 : 255)))
  const betaDq = index.fresh(`${base}_beta`)
  return [
    node('DequantizeLinear', [x.quantized, scale, x.zeroPoint], [scaled], index.fresh(`${base}_DequantizeLinear`)),
    node('DequantizeLinear', [betaQ, betaS, betaZp], [betaDq], index.fresh(`${base}_beta_DequantizeLinear`)),
    node('Add', [scaled, betaDq], [n.output[0]!], index.fresh(`${base}_add`)),
  ]
}

function planWeighted(n: Node, op: 'Conv' | 'MatMul' | 'Gemm', index: GraphIndex, isActivation: (name: string) => boolean): Plan | string {
  const input = n.input[0] ?? ''
  if (!isActivation(input)) return 'first input is not a float activation'
  const w = index.constants.get(n.input[1] ?? '')
  if (w === undefined) return 'weight is not a constant'
  if (w.dataType !== DataType.FLOAT) return `weight is ${dataTypeName(w.dataType)}, not FLOAT`
  const name = n.input[1]!
  if (op === 'Conv') {
    const bias = optionalConstant(n, 2, index)
    if (bias === 'not constant') return 'bias is not a constant'
    return { node: n, op, activations: [0], weight: { values: floatValues(w), dims: w.dims, axis: 0, name }, ...(bias && { bias: { values: floatValues(bias), input: 2 } }) }
  }
  if (w.dims.length !== 2) return `weight is ${w.dims.length}-D, not a matrix`
  if (op === 'MatMul') return { node: n, op, activations: [0], weight: { values: floatValues(w), dims: w.dims, axis: 1, name } }
  if (intAttr(n, 'transA', 0) !== 0) return 'transA is not supported'
  let values = floatValues(w)
  let [k, cols] = w.dims as [number, number]
  if (intAttr(n, 'transB', 0) !== 0) {
    values = transpose2d(values, k, cols)
    ;[k, cols] = [cols, k]
  }
  const alpha = n.attribute.find((a) => a.name === 'alpha')?.f ?? 1
  if (alpha !== 1) values = values.map((v) => v * alpha)
  const bias = optionalConstant(n, 2, index)
  if (bias === 'not constant') return 'C is not a constant'
  if (bias && bias.dims.reduce((a, b) => a * b, 1) !== cols) return 'C is not a vector of N values'
  const beta = n.attribute.find((a) => a.name === 'beta')?.f ?? 1
  return {
    node: n,
    op,
    activations: [0],
    weight: { values, dims: [k, cols], axis: 1, name },
    ...(bias && { bias: { values: floatValues(bias).map((v) => v * beta), input: 2 } }),
  }
}

function optionalConstant(n: Node, i: number, index: GraphIndex): Tensor | undefined | 'not constant' {
  const name = n.input[i] ?? ''
  if (name === '') return undefined
  return index.constants.get(name) ?? 'not constant'
}

/** Relu, or Clip whose lower bound is 0 (attribute before opset 11, constant input after). */
function isClampAtZero(n: Node, index: GraphIndex): boolean {
  if ((n.domain ?? '') !== '') return false
  if (n.opType === 'Relu') return true
  if (n.opType !== 'Clip') return false
  const minAttr = n.attribute.find((a) => a.name === 'min')?.f
  if (minAttr !== undefined) return minAttr === 0
  const min = index.constants.get(n.input[1] ?? '')
  return min !== undefined && min.dataType === DataType.FLOAT && floatValues(min)[0] === 0
}

function int32Tensor(name: string, dims: number[], values: Int32Array): Tensor {
  const raw = new Uint8Array(values.length * 4)
  const view = new DataView(raw.buffer)
  values.forEach((v, i) => view.setInt32(i * 4, v, true))
  return { dims, dataType: DataType.INT32, name, rawData: raw, floatData: [], int32Data: [], int64Data: [], doubleData: [], uint64Data: [], unknown: [] }
}

function replaceInSubgraphs(n: Node, names: ReadonlyMap<string, string>): void {
  for (const a of n.attribute) {
    for (const g of [...(a.g ? [a.g] : []), ...a.graphs]) {
      for (const sub of g.node) {
        sub.input = sub.input.map((x) => names.get(x) ?? x)
        replaceInSubgraphs(sub, names)
      }
    }
  }
}

/**
 * Min and max of each tensor over the calibration inputs (or, with `percentile`, percentiles of
 * its values): the model is run with the tensors exposed as extra graph outputs (as
 * onnxruntime's calibrator does).
 */
export async function calibrate(
  model: Model,
  tensors: string[],
  inputs: readonly CalibrationInput[],
  percentile?: number,
): Promise<Map<string, ActivationRange>> {
  const graph = model.graph!
  if (tensors.length === 0) return new Map()
  const existing = new Set(graph.output.map((o) => o.name))
  const extra = tensors.filter((t) => !existing.has(t)).map(floatValueInfo)
  graph.output.push(...extra)
  let bytes: Uint8Array
  try {
    bytes = encodeModel(model)
  } finally {
    graph.output.splice(graph.output.length - extra.length, extra.length)
  }
  const session = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'basic' })
  const ranges = new Map<string, ActivationRange>()
  // Percentiles from a fixed-size, evenly strided subsample of each tensor's values per input.
  const kept = new Map<string, number[]>()
  const perInput = Math.ceil(SUBSAMPLE / inputs.length)
  try {
    for (const feeds of inputs) {
      const outputs = await session.run(feeds, tensors)
      for (const name of tensors) {
        const data = outputs[name]?.data
        if (!(data instanceof Float32Array)) continue
        let { min, max } = ranges.get(name) ?? { min: Number.POSITIVE_INFINITY, max: Number.NEGATIVE_INFINITY }
        for (let i = 0; i < data.length; i++) {
          const v = data[i]!
          if (v < min) min = v
          if (v > max) max = v
        }
        ranges.set(name, { min, max })
        if (percentile !== undefined) {
          const values = kept.get(name) ?? []
          const step = Math.max(1, data.length / perInput)
          for (let i = 0; i < data.length; i += step) values.push(data[Math.floor(i)]!)
          kept.set(name, values)
        }
      }
      for (const t of Object.values(outputs)) t.dispose()
    }
  } finally {
    await session.release()
  }
  if (percentile !== undefined) {
    for (const [name, values] of kept) {
      values.sort((a, b) => a - b)
      const at = (q: number) => values[Math.min(values.length - 1, Math.max(0, Math.round((q / 100) * (values.length - 1))))]!
      ranges.set(name, { min: at(100 - percentile), max: at(percentile) })
    }
  }
  return ranges
}

const SUBSAMPLE = 200_000
