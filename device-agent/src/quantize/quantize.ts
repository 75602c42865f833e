/**
 * `quantizeModel`: fp32 ONNX model bytes in, int8 model bytes out, plus what was done.
 *
 * Two modes:
 *  - 'dynamic' (default; onnxruntime's quantize_dynamic): int8 weights, activations quantized at
 *    run time. Needs no data. See dynamic.ts.
 *  - 'static' (`calibration` inputs given; onnxruntime's quantize_static in QDQ format): int8
 *    weights and activation scales measured on the calibration inputs, so onnxruntime can run
 *    whole chains of int8 kernels (QLinearConv…) without re-quantizing. See static.ts.
 *
 * Before either, two fp32 rewrites (preprocess.ts): BatchNormalization folded into Conv, and
 * hard-swish written out as x·Clip(x+3,0,6)/6 turned into x·HardSigmoid(x). Opset-9/10 models
 * are raised to opset 11, which the int8 ops need.
 *
 * The graph's inputs and outputs keep their names and types: the int8 model is a drop-in
 * replacement for the fp32 one. Whether it is worth running is for the report to say: on x86
 * with onnxruntime 1.30 the int8 kernels lose to fp32 on small or depthwise convolutions (see
 * `excludeDepthwise`, and bench/quantize.ts).
 */
import { sha256Hex, WireFormatError, messageOf } from '@depinfer/shared'
import { GraphIndex, ensureOpset, opsetVersion, removeDeadNodes, removeUnusedConstants, topologicalSort } from './graph.js'
import { MS_DOMAIN, WeightStore, dynamicConv, dynamicGemm, dynamicMatMul, type Rewrite, type WeightOptions } from './dynamic.js'
import { OnnxFormatError, decodeModel, encodeModel, intAttr, type Model, type Node, type Tensor } from './onnx-proto.js'
import { foldBatchNorms, fuseHardSwish, upgradeOpset } from './preprocess.js'
import { staticQuantize, type ActivationRange, type CalibrationInput, type StaticOptions } from './static.js'
import type { WeightType } from './quant-math.js'

export type QuantizableOp = 'MatMul' | 'Gemm' | 'Conv'
export const QUANTIZABLE_OPS: readonly QuantizableOp[] = ['MatMul', 'Gemm', 'Conv']

export interface QuantizeOptions {
  /** One scale per output channel/column instead of one per tensor (better accuracy, same speed). */
  perChannel?: boolean
  /**
   * MatMul/Gemm weight type in dynamic mode; default int8 (symmetric). Dynamic Conv weights are
   * always uint8 (onnxruntime's ConvInteger kernel), static ones always int8 (QLinearConv's fast
   * symmetric path).
   */
  weightType?: WeightType
  /** 7-bit weights, for x86 CPUs without VNNI (see quant-math.ts). */
  reduceRange?: boolean
  /** Which op types to quantize; default all of QUANTIZABLE_OPS. */
  ops?: readonly QuantizableOp[]
  /** Fold BatchNormalization into Conv first (default true). */
  foldBatchNorm?: boolean
  /** Rewrite x·Clip(x+3,0,6)/6 as x·HardSigmoid(x) first (default true; see preprocess.ts). */
  fuseHardSwish?: boolean
  /** Calibration inputs: switches to static (QDQ) quantization with activation ranges from these. */
  calibration?: readonly CalibrationInput[]
  /**
   * Leave depthwise convolutions (group = channels) in fp32: onnxruntime's x86 int8 depthwise
   * kernels are slower than its fp32 ones (measured 0.2–0.8x with QLinearConv, 0.2–0.5x with
   * ConvInteger), unlike its pointwise/full int8 convolutions.
   */
  excludeDepthwise?: boolean
  /**
   * Leave the layers that read a graph input (a CNN's stem) in fp32: they see raw input values,
   * have few input channels (3 for an image: int8 gains nothing), and their rounding errors
   * travel through the whole network (PaddleOCR cls: with it ≥ 99% top-1 agreement on every
   * seed tried, without it 98.5–99.5%).
   */
  excludeFirst?: boolean
  /**
   * Nodes to leave in fp32, by node name or first output name (e.g. the layers a sensitivity
   * analysis found to cost the most accuracy).
   */
  exclude?: readonly string[]
  /** Static mode: quantize MatMul/Gemm statically too (default: dynamically, see below). */
  staticMatMul?: boolean
  /** Static mode tuning (see static.ts). */
  static?: Partial<StaticOptions>
  /**
   * Static mode: activation ranges by tensor name, kept across calls. Ranges measured in one
   * call are reused by the next, which calibrates only tensors not in it. Share it only between
   * calls with the same fp32 model, calibration inputs and `static` options: the accuracy-aware
   * search quantizes one model dozens of times, and the ranges do not depend on which layers are
   * left in fp32.
   */
  calibrationCache?: Map<string, ActivationRange>
}

export interface NodeReport {
  name: string
  opType: string
  /** Undefined when quantized; why it was left in fp32 otherwise. */
  skipped?: string
}

export interface QuantizeReport {
  mode: 'dynamic' | 'static'
  fp32Bytes: number
  int8Bytes: number
  /** The two files' sha256: a report published with a variant must be about these very files. */
  fp32Sha256: string
  int8Sha256: string
  /** BatchNormalization nodes folded into Convs before quantizing. */
  foldedBatchNorms: number
  /** Hard-swish activations rewritten as x·HardSigmoid(x). */
  fusedHardSwish: number
  /** Quantized nodes by op type. */
  quantized: Record<string, number>
  nodes: NodeReport[]
}

/** The input could not be quantized: not a model, or a model this quantizer cannot handle. */
export class QuantizeError extends Error {
  override readonly name = 'QuantizeError'
}

/**
 * Quantizes an fp32 ONNX model. Throws `OnnxFormatError` when `bytes` is not a (complete) ONNX
 * model and `QuantizeError` when the model cannot be quantized.
 */
export async function quantizeModel(bytes: Uint8Array, options: QuantizeOptions = {}): Promise<{ bytes: Uint8Array; report: QuantizeReport }> {
  const model = decodeModelChecked(bytes)
  const graph = model.graph!
  const defaultOpset = opsetVersion(model, '')
  if (defaultOpset === undefined) throw new QuantizeError('the model does not import the default ONNX opset')
  // DynamicQuantizeLinear is an opset-11 op (ConvInteger, QuantizeLinear… are opset 10).
  const upgradeProblem = upgradeOpset(model, 11)
  if (upgradeProblem !== undefined) throw new QuantizeError(upgradeProblem)
  const ops = new Set(options.ops ?? QUANTIZABLE_OPS)
  const foldedBatchNorms = options.foldBatchNorm === false || !ops.has('Conv') ? 0 : foldBatchNorms(graph)
  const fusedHardSwish = options.fuseHardSwish === false ? 0 : fuseHardSwish(graph)
  const weights: WeightOptions = {
    weightType: options.weightType ?? 'int8',
    perChannel: options.perChannel ?? false,
    reduceRange: options.reduceRange ?? false,
  }
  const excludedNames = new Set(options.exclude ?? [])
  const constants = new GraphIndex(graph).constants
  const graphInputs = new Set(graph.input.map((v) => v.name))
  const excluded = (n: Node): string | undefined => {
    if ((n.name !== undefined && excludedNames.has(n.name)) || excludedNames.has(n.output[0] ?? '')) return 'excluded'
    if (options.excludeFirst && graphInputs.has(n.input[0])) return 'reads a graph input'
    if (options.excludeDepthwise && n.opType === 'Conv' && isDepthwise(n, constants)) return 'depthwise convolution left in fp32'
    return undefined
  }
  let nodes: NodeReport[]
  let mode: QuantizeReport['mode']
  if (options.calibration !== undefined) {
    mode = 'static'
    // MatMul/Gemm stay dynamic unless asked otherwise: their activations (attention, a
    // transformer's residual stream) have outliers that one calibrated int8 range per tensor
    // handles badly (PP-OCRv4 rec: 91% per-step agreement with everything static), while
    // a MatMul's run-time range computation is cheap next to the product.
    const staticOps = new Set([...ops].filter((op) => op === 'Conv' || options.staticMatMul === true))
    nodes = await staticQuantize(model, staticOps, excluded, weights, options.calibration, options.static ?? {}, options.calibrationCache)
    const dynamicOps = new Set([...ops].filter((op) => !staticOps.has(op)))
    const dynamicNodes = dynamicQuantize(model, dynamicOps, excluded, weights)
    const isDynamic = (n: NodeReport) => dynamicOps.has(n.opType as QuantizableOp)
    nodes = [...nodes.filter((n) => !isDynamic(n)), ...dynamicNodes.filter(isDynamic)]
  } else {
    mode = 'dynamic'
    nodes = dynamicQuantize(model, ops, excluded, weights)
  }
  removeDeadNodes(graph)
  removeUnusedConstants(graph)
  topologicalSort(graph)
  const out = encodeModel(model)
  const quantized: Record<string, number> = {}
  for (const n of nodes) if (n.skipped === undefined) quantized[n.opType] = (quantized[n.opType] ?? 0) + 1
  const report = { mode, fp32Bytes: bytes.length, int8Bytes: out.length, fp32Sha256: sha256Hex(bytes), int8Sha256: sha256Hex(out), foldedBatchNorms, fusedHardSwish, quantized, nodes }
  return { bytes: out, report }
}

/**
 * The fp32 rewrites `quantizeModel` does before quantizing (opset upgrade, BatchNormalization
 * folding, hard-swish as HardSigmoid·x), without quantizing: the baseline that tells how much of
 * the int8 model's speed comes from quantization itself.
 */
export function preprocessModel(bytes: Uint8Array, options: Pick<QuantizeOptions, 'foldBatchNorm' | 'fuseHardSwish'> = {}): Uint8Array {
  const model = decodeModelChecked(bytes)
  const upgradeProblem = upgradeOpset(model, 11)
  if (upgradeProblem !== undefined) throw new QuantizeError(upgradeProblem)
  if (options.foldBatchNorm !== false) foldBatchNorms(model.graph!)
  if (options.fuseHardSwish !== false) fuseHardSwish(model.graph!)
  removeDeadNodes(model.graph!)
  removeUnusedConstants(model.graph!)
  return encodeModel(model)
}

function decodeModelChecked(bytes: Uint8Array): Model {
  try {
    return decodeModel(bytes)
  } catch (error) {
    if (error instanceof OnnxFormatError || error instanceof WireFormatError) throw error
    throw new OnnxFormatError(`not an ONNX model: ${messageOf(error)}`, { cause: error })
  }
}

/** group = channels and one input channel per filter. */
function isDepthwise(n: Node, constants: ReadonlyMap<string, Tensor>): boolean {
  const w = constants.get(n.input[1] ?? '')
  return intAttr(n, 'group', 1) > 1 && w !== undefined && w.dims[1] === 1
}

function dynamicQuantize(model: Model, ops: ReadonlySet<QuantizableOp>, excluded: (n: Node) => string | undefined, weights: WeightOptions): NodeReport[] {
  const graph = model.graph!
  const index = new GraphIndex(graph)
  const store = new WeightStore(index)
  const report: NodeReport[] = []
  const rewritten: Node[] = []
  let usesMs = false
  for (const n of graph.node) {
    const op = (n.domain ?? '') === '' ? n.opType : undefined
    if (op !== 'MatMul' && op !== 'Gemm' && op !== 'Conv') {
      rewritten.push(n)
      continue
    }
    const why = ops.has(op) ? excluded(n) : 'op type not selected'
    let rewrite: Rewrite
    if (why !== undefined) rewrite = { skipped: why }
    else if (op === 'MatMul') rewrite = dynamicMatMul(index, store, n, weights)
    else if (op === 'Gemm') rewrite = dynamicGemm(index, store, n, weights)
    else rewrite = dynamicConv(index, store, n, weights)
    report.push({ name: n.name ?? n.output[0] ?? '?', opType: op, ...(rewrite.skipped !== undefined && { skipped: rewrite.skipped }) })
    if (rewrite.nodes) {
      rewritten.push(...rewrite.nodes)
      usesMs ||= rewrite.nodes.some((x) => x.domain === MS_DOMAIN)
    } else rewritten.push(n)
  }
  graph.node = rewritten
  if (usesMs) ensureOpset(model, MS_DOMAIN, 1)
  return report
}
