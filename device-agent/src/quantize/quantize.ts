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
 * The graph's inputs and outputs keep their names and types: the int8 model is a drop-in
 * replacement for the fp32 one.
 */
import { WireFormatError } from './wire.js'
import { GraphIndex, ensureOpset, opsetVersion, removeDeadNodes, removeUnusedConstants, topologicalSort } from './graph.js'
import { MS_DOMAIN, WeightStore, dynamicConv, dynamicGemm, dynamicMatMul, type Rewrite, type WeightOptions } from './dynamic.js'
import { OnnxFormatError, decodeModel, encodeModel, type Model, type Node } from './onnx-proto.js'
import { foldBatchNorms, fuseHardSwish, upgradeOpset } from './preprocess.js'
import { staticQuantize, type CalibrationInput, type StaticOptions } from './static.js'
import type { WeightType } from './quant-math.js'

export type QuantizableOp = 'MatMul' | 'Gemm' | 'Conv'
export const QUANTIZABLE_OPS: readonly QuantizableOp[] = ['MatMul', 'Gemm', 'Conv']

export interface QuantizeOptions {
  /** One scale per output channel/column instead of one per tensor (better accuracy, same speed). */
  perChannel?: boolean
  /** Weight element type; default int8 (symmetric). Dynamic Conv always uses uint8 (ConvInteger). */
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
   * Nodes to leave in fp32, by node name or first output name (e.g. the layers a sensitivity
   * analysis found to cost the most accuracy).
   */
  exclude?: readonly string[]
  /** Static mode: quantize MatMul/Gemm statically too (default: dynamically, see below). */
  staticMatMul?: boolean
  /** Static mode tuning (see static.ts). */
  static?: Partial<StaticOptions>
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
  const excluded = (n: Node) => (n.name !== undefined && excludedNames.has(n.name)) || excludedNames.has(n.output[0] ?? '')
  let nodes: NodeReport[]
  let mode: QuantizeReport['mode']
  if (options.calibration !== undefined) {
    mode = 'static'
    // MatMul/Gemm stay dynamic unless asked otherwise: their activations (attention, a
    // transformer's residual stream) have outliers that one calibrated int8 range per tensor
    // handles badly (PP-OCRv4 rec: 91% per-step agreement static, 99.7% dynamic), and
    // DynamicQuantizeMatMul is as fast.
    const staticOps = new Set([...ops].filter((op) => op === 'Conv' || options.staticMatMul === true))
    nodes = await staticQuantize(model, staticOps, excluded, weights, options.calibration, options.static ?? {})
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
  return { bytes: out, report: { mode, fp32Bytes: bytes.length, int8Bytes: out.length, foldedBatchNorms, fusedHardSwish, quantized, nodes } }
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
    throw new OnnxFormatError(`not an ONNX model: ${error instanceof Error ? error.message : String(error)}`, { cause: error })
  }
}

function dynamicQuantize(model: Model, ops: ReadonlySet<QuantizableOp>, excluded: (n: Node) => boolean, weights: WeightOptions): NodeReport[] {
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
    let rewrite: Rewrite
    if (!ops.has(op)) rewrite = { skipped: 'op type not selected' }
    else if (excluded(n)) rewrite = { skipped: 'excluded' }
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
