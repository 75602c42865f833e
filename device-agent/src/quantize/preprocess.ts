/**
 * fp32 graph rewrites done before quantizing, the counterpart of onnxruntime's
 * `quant_pre_process`: folding BatchNormalization into the Conv before it. onnxruntime does this
 * fusion itself when it loads an fp32 model, but not once the Conv has become a ConvInteger or a
 * QDQ group, so without it every int8 Conv would be followed by an unfused BatchNormalization and
 * its weights would be quantized before the BN scale is applied (worse accuracy).
 */
import { GraphIndex, removeUnusedConstants } from './graph.js'
import { DataType, floatAttr, floatAttribute, floatTensor, floatValues, type Graph, type Model, type Node } from './onnx-proto.js'

/**
 * Folds `BatchNormalization(Conv(x, W, B))` into `Conv(x, W', B')` when the Conv's weights, bias
 * and the BN's parameters are constants and nothing else reads the Conv output. Returns how many
 * were folded.
 */
export function foldBatchNorms(graph: Graph): number {
  const index = new GraphIndex(graph)
  const removed = new Set<Node>()
  let folded = 0
  for (const bn of graph.node) {
    if (bn.opType !== 'BatchNormalization' || (bn.domain ?? '') !== '' || bn.output.length !== 1) continue
    // training_mode (opset 14+) outputs running stats; an inference graph has one output.
    const convOut = bn.input[0]!
    const conv = graph.node.find((n) => n.output[0] === convOut)
    if (conv === undefined || conv.opType !== 'Conv' || (conv.domain ?? '') !== '') continue
    if (index.isGraphOutput(convOut) || index.consumers(convOut).length !== 1) continue
    const [scaleT, biasT, meanT, varT] = bn.input.slice(1, 5).map((name) => index.constants.get(name))
    const weightT = index.constants.get(conv.input[1] ?? '')
    const convBiasT = conv.input[2] ? index.constants.get(conv.input[2]) : undefined
    if (!scaleT || !biasT || !meanT || !varT || !weightT || (conv.input[2] && !convBiasT)) continue
    const epsilon = floatAttr(bn, 'epsilon', 1e-5)
    const [scale, bias, mean, variance, weights] = [scaleT, biasT, meanT, varT, weightT].map(floatValues) as [
      Float32Array,
      Float32Array,
      Float32Array,
      Float32Array,
      Float32Array,
    ]
    const channels = weightT.dims[0]!
    if ([scale, bias, mean, variance].some((v) => v.length !== channels)) continue
    const convBias = convBiasT ? floatValues(convBiasT) : new Float32Array(channels)
    const perChannel = weights.length / channels
    const newWeights = new Float32Array(weights.length)
    const newBias = new Float32Array(channels)
    for (let c = 0; c < channels; c++) {
      // Computed in float64 and rounded once, like onnxruntime's fusion.
      const s = scale[c]! / Math.sqrt(variance[c]! + epsilon)
      for (let i = 0; i < perChannel; i++) newWeights[c * perChannel + i] = weights[c * perChannel + i]! * s
      newBias[c] = (convBias[c]! - mean[c]!) * s + bias[c]!
    }
    // New initializers rather than edits in place: the weight may be shared with another Conv.
    const w = index.addInitializer(floatTensor(`${conv.input[1]}_bnfold`, weightT.dims, newWeights))
    const b = index.addInitializer(floatTensor(`${conv.output[0]}_bnfold_bias`, [channels], newBias))
    conv.input = [conv.input[0]!, w, b]
    conv.output = [bn.output[0]!]
    removed.add(bn)
    folded++
  }
  graph.node = graph.node.filter((n) => !removed.has(n))
  removeUnusedConstants(graph)
  return folded
}

/**
 * Ops whose newer definitions change meaning in ways this upgrade does not rewrite (the ONNX
 * version converter's territory): refused rather than silently changed.
 */
const UNSUPPORTED_UPGRADE: Record<string, number> = { TopK: 10, Upsample: 10, Resize: 11, Scan: 11 }

/**
 * Raises the default-domain opset to `target` (at most 11): DynamicQuantizeLinear is an opset-11
 * op, and onnxruntime resolves every default-domain node against the one imported version, so
 * int8 ops cannot be added to an older model as is.
 *
 * The ops found in inference graphs whose definition changed on the way are rewritten: Slice
 * (opset 10: starts/ends/axes move from attributes to inputs), Clip (11: min/max become inputs),
 * Pad (11: pads and value become inputs). The rest of the opset 10/11 changes keep old graphs
 * valid (negative axes allowed, optional inputs added, MaxPool/AveragePool's ceil_mode defaulting
 * to the old behaviour); Dropout's mask changed type, so only a Dropout whose mask is read is
 * refused. Returns an error message for a model it cannot upgrade, undefined when done.
 */
export function upgradeOpset(model: Model, target: 10 | 11): string | undefined {
  const entry = model.opsetImport.find((o) => (o.domain ?? '') === '' || o.domain === 'ai.onnx')
  const from = entry?.version ?? 1
  if (entry === undefined || from >= target) return undefined
  const graph = model.graph!
  const index = new GraphIndex(graph)
  const problems = new Set<string>()
  const subgraphs = (n: Node) => n.attribute.flatMap((a) => [...(a.g ? [a.g] : []), ...a.graphs])
  const check = (g: Graph) => {
    for (const n of g.node) {
      if ((n.domain ?? '') !== '') continue
      const changedIn = UNSUPPORTED_UPGRADE[n.opType ?? '']
      if (changedIn !== undefined && from < changedIn && target >= changedIn) problems.add(n.opType!)
      if (n.opType === 'Dropout' && n.output.length > 1 && n.output[1] !== '') problems.add('Dropout with a mask output')
      subgraphs(n).forEach(check)
    }
  }
  check(graph)
  if (problems.size > 0) return `cannot raise the model from opset ${from} to ${target}: ${[...problems].join(', ')} changed meaning`
  const constant = (base: string, dataType: number, dims: number[], raw: Uint8Array) =>
    index.addInitializer({ dims, dataType, name: base, int64Data: [], floatData: [], int32Data: [], doubleData: [], uint64Data: [], rawData: raw, unknown: [] })
  const ints = (n: Node, name: string) => n.attribute.find((a) => a.name === name)?.ints
  const dropAttributes = (n: Node, names: string[]) => (n.attribute = n.attribute.filter((a) => !names.includes(a.name ?? '')))
  const rewrite = (g: Graph) => {
    for (const n of g.node) {
      const base = n.name ?? n.output[0] ?? 'node'
      if ((n.domain ?? '') === '' && n.opType === 'Slice' && from < 10 && n.input.length === 1) {
        // int64 attribute values stay bigint: ends are often INT64_MAX ("to the end").
        const starts = ints(n, 'starts') ?? []
        const ends = ints(n, 'ends') ?? []
        const axes = ints(n, 'axes')
        n.input = [
          n.input[0]!,
          constant(`${base}_starts`, DataType.INT64, [starts.length], int64Raw(starts)),
          constant(`${base}_ends`, DataType.INT64, [ends.length], int64Raw(ends)),
          ...(axes ? [constant(`${base}_axes`, DataType.INT64, [axes.length], int64Raw(axes))] : []),
        ]
        dropAttributes(n, ['starts', 'ends', 'axes'])
      } else if ((n.domain ?? '') === '' && n.opType === 'Clip' && from < 11 && target >= 11 && n.input.length === 1) {
        const min = n.attribute.find((a) => a.name === 'min')?.f
        const max = n.attribute.find((a) => a.name === 'max')?.f
        n.input = [
          n.input[0]!,
          min === undefined ? '' : constant(`${base}_min`, DataType.FLOAT, [], float32Raw([min])),
          ...(max === undefined ? [] : [constant(`${base}_max`, DataType.FLOAT, [], float32Raw([max]))]),
        ]
        if (max === undefined && min === undefined) n.input = [n.input[0]!]
        dropAttributes(n, ['min', 'max'])
      } else if ((n.domain ?? '') === '' && n.opType === 'Pad' && from < 11 && target >= 11 && n.input.length === 1) {
        const pads = ints(n, 'pads') ?? []
        const value = n.attribute.find((a) => a.name === 'value')?.f ?? 0
        n.input = [n.input[0]!, constant(`${base}_pads`, DataType.INT64, [pads.length], int64Raw(pads)), constant(`${base}_value`, DataType.FLOAT, [], float32Raw([value]))]
        dropAttributes(n, ['pads', 'value'])
      }
      subgraphs(n).forEach(rewrite)
    }
  }
  rewrite(graph)
  entry.version = target
  return undefined
}

function int64Raw(values: readonly bigint[]): Uint8Array {
  const out = new Uint8Array(values.length * 8)
  const view = new DataView(out.buffer)
  values.forEach((v, i) => view.setBigInt64(i * 8, v, true))
  return out
}

function float32Raw(values: readonly number[]): Uint8Array {
  const out = new Uint8Array(values.length * 4)
  const view = new DataView(out.buffer)
  values.forEach((v, i) => view.setFloat32(i * 4, v, true))
  return out
}

/**
 * Rewrites hard-swish written out as `x · Clip(x + 3, 0, 6) / 6` (how paddle2onnx exports it,
 * four elementwise passes) as `x · HardSigmoid(x; α = 1/6, β = ½)` (two; equal up to float
 * rounding). Static quantization then lowers the HardSigmoid to an int8 kernel (see static.ts),
 * so the whole activation stays in int8. Returns how many were rewritten.
 */
export function fuseHardSwish(graph: Graph): number {
  const index = new GraphIndex(graph)
  const producer = new Map<string, Node>()
  for (const n of graph.node) for (const o of n.output) producer.set(o, n)
  const scalar = (name: string | undefined): number | undefined => {
    const t = name === undefined ? undefined : index.constants.get(name)
    if (t === undefined || t.dataType !== DataType.FLOAT || t.dims.reduce((a, b) => a * b, 1) !== 1) return undefined
    return floatValues(t)[0]
  }
  const near = (a: number | undefined, b: number) => a !== undefined && Math.abs(a - b) < 1e-6 * Math.max(1, Math.abs(b))
  const onlyUse = (name: string, user: Node) => !index.isGraphOutput(name) && index.consumers(name).every((c) => c === user)
  const removed = new Set<Node>()
  let count = 0
  for (const last of graph.node) {
    // y = Div(m, 6) or Mul(m, 1/6)
    if ((last.domain ?? '') !== '' || last.input.length !== 2) continue
    const isDiv = last.opType === 'Div' && near(scalar(last.input[1]), 6)
    const isMulSixth = last.opType === 'Mul' && near(scalar(last.input[1]), 1 / 6)
    if (!isDiv && !isMulSixth) continue
    const mul = producer.get(last.input[0]!)
    if (!mul || mul.opType !== 'Mul' || (mul.domain ?? '') !== '' || !onlyUse(mul.output[0]!, last)) continue
    // m = Mul(x, c) or Mul(c, x) with c = Clip(Add(x, 3), 0, 6)
    for (const [xi, ci] of [[0, 1], [1, 0]] as const) {
      const x = mul.input[xi]!
      const clip = producer.get(mul.input[ci]!)
      if (!clip || clip.opType !== 'Clip' || (clip.domain ?? '') !== '' || !onlyUse(clip.output[0]!, mul)) continue
      const min = clip.attribute.find((a) => a.name === 'min')?.f ?? scalar(clip.input[1])
      const max = clip.attribute.find((a) => a.name === 'max')?.f ?? scalar(clip.input[2])
      if (!near(min, 0) || !near(max, 6)) continue
      const add = producer.get(clip.input[0]!)
      if (!add || add.opType !== 'Add' || (add.domain ?? '') !== '' || !onlyUse(add.output[0]!, clip)) continue
      const addX = add.input[0] === x ? 1 : add.input[1] === x ? 0 : -1
      if (addX < 0 || !near(scalar(add.input[addX]), 3)) continue
      const h = index.fresh(`${last.output[0]}_hardsigmoid`)
      add.opType = 'HardSigmoid'
      add.input = [x]
      add.output = [h]
      add.attribute = [floatAttribute('alpha', 1 / 6), floatAttribute('beta', 0.5)]
      mul.input = [x, h]
      mul.output = [last.output[0]!]
      removed.add(clip).add(last)
      count++
      break
    }
  }
  graph.node = graph.node.filter((n) => !removed.has(n))
  removeUnusedConstants(graph)
  return count
}
