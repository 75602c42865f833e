/**
 * Which values of a graph are FLOAT tensors, without a full ONNX shape inference: graph inputs and
 * constants carry their type, and for the ops of inference graphs the output type follows from
 * the inputs. Anything not covered counts as "not known to be float" and is never quantized or
 * exposed for calibration (declaring a wrong output type would make onnxruntime refuse the model).
 */
import { DataType, intAttr, tensorTypeOf, type Graph } from './onnx-proto.js'
import type { GraphIndex } from './graph.js'

/** Ops whose outputs have the element type of their first input. */
const SAME_AS_FIRST_INPUT = new Set([
  'Abs', 'Add', 'AveragePool', 'BatchNormalization', 'Clip', 'Concat', 'Conv', 'ConvTranspose', 'Div', 'Dropout', 'Elu', 'Erf',
  'Exp', 'Expand', 'Flatten', 'Gather', 'Gemm', 'GlobalAveragePool', 'GlobalMaxPool', 'HardSigmoid', 'HardSwish', 'Identity',
  'InstanceNormalization', 'LayerNormalization', 'LeakyRelu', 'Log', 'MatMul', 'Max', 'MaxPool', 'Min', 'Mul', 'Neg', 'Pad',
  'Pow', 'PRelu', 'Reciprocal', 'ReduceMax', 'ReduceMean', 'ReduceMin', 'ReduceSum', 'Relu', 'Reshape', 'Resize', 'Selu',
  'Sigmoid', 'Slice', 'Softmax', 'Softplus', 'Split', 'Sqrt', 'Squeeze', 'Sub', 'Tanh', 'Tile', 'Transpose', 'Unsqueeze',
  'Upsample', 'LogSoftmax', 'Sin', 'Cos', 'Floor', 'Ceil', 'Round', 'Sign', 'Mish', 'Gelu',
])

/** Names of the values known to be FLOAT tensors in `graph`. */
export function floatTensors(graph: Graph, index: GraphIndex): Set<string> {
  const type = new Map<string, number>()
  for (const v of graph.input) {
    const t = tensorTypeOf(v)
    if (v.name !== undefined && t !== undefined) type.set(v.name, t.elemType)
  }
  for (const [name, t] of index.constants) if (t.dataType !== undefined) type.set(name, t.dataType)
  for (const n of graph.node) {
    if ((n.domain ?? '') !== '') continue
    const op = n.opType ?? ''
    let out: number | undefined
    if (op === 'Cast') out = intAttr(n, 'to', 0)
    else if (op === 'Where') out = type.get(n.input[1] ?? '')
    else if (SAME_AS_FIRST_INPUT.has(op)) out = type.get(n.input[0] ?? '')
    if (out === undefined) continue
    // Multi-output ops: only the first output has the input's type (MaxPool's indices, Dropout's mask).
    const outputs = op === 'Split' ? n.output : n.output.slice(0, 1)
    for (const o of outputs) if (o !== '' && !type.has(o)) type.set(o, out)
  }
  return new Set([...type].filter(([, t]) => t === DataType.FLOAT).map(([name]) => name))
}
