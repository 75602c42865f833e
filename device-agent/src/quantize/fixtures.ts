/**
 * Tiny hand-built models for the quantizer's tests, with plain-JS fp32 references to check
 * onnxruntime's results of the quantized models against (an independent computation, not
 * onnxruntime's own fp32 run).
 */
import { floatValueInfo, node } from './graph.js'
import { encodeModel, floatAttribute, floatTensor, intAttribute, intsAttribute, type Model, type Node, type Tensor } from './onnx-proto.js'
import { seededRandom } from '@depinfer/shared'
import { normalSource } from './samples.js'

export function randomValues(count: number, seed: number, scale = 1): Float32Array {
  const normal = normalSource(seededRandom(seed))
  return Float32Array.from({ length: count }, () => normal() * scale)
}

export function modelBytes(nodes: Node[], initializer: Tensor[], inputs: string[], outputs: string[], opset = 13): Uint8Array {
  const model: Model = {
    irVersion: 7,
    opsetImport: [{ domain: '', version: opset, unknown: [] }],
    graph: { node: nodes, name: 'test', initializer, input: inputs.map(floatValueInfo), output: outputs.map(floatValueInfo), valueInfo: [], unknown: [] },
    unknown: [],
  }
  return encodeModel(model)
}

/** Row-major [m, k] × [k, n]. */
export function matmul(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float32Array {
  const out = new Float32Array(m * n)
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let sum = 0
    for (let p = 0; p < k; p++) sum += a[i * k + p]! * b[p * n + j]!
    out[i * n + j] = sum
  }
  return out
}

/**
 * y = Gemm(MatMul(x, W1), B, C; alpha 0.5, beta 2, transB) and z = MatMul(x, W1) again (the
 * weight shared by two nodes). x: [rows, 16], W1: [16, 8], B: [4, 8], C: [4].
 */
export function matmulGemmModel(): { bytes: Uint8Array; reference: (x: Float32Array, rows: number) => { y: Float32Array; z: Float32Array } } {
  const w1 = randomValues(16 * 8, 11, 0.5)
  const b = randomValues(4 * 8, 12, 0.5)
  const c = randomValues(4, 13, 0.2)
  const bytes = modelBytes(
    [
      node('MatMul', ['x', 'w1'], ['h'], 'mm'),
      node('Gemm', ['h', 'b', 'c'], ['y'], 'gemm', [floatAttribute('alpha', 0.5), floatAttribute('beta', 2), intAttribute('transB', 1)]),
      node('MatMul', ['x', 'w1'], ['z'], 'mm_shared'),
    ],
    [floatTensor('w1', [16, 8], w1), floatTensor('b', [4, 8], b), floatTensor('c', [4], c)],
    ['x'],
    ['y', 'z'],
  )
  const reference = (x: Float32Array, rows: number) => {
    const h = matmul(x, w1, rows, 16, 8)
    const bt = new Float32Array(8 * 4)
    for (let i = 0; i < 4; i++) for (let j = 0; j < 8; j++) bt[j * 4 + i] = b[i * 8 + j]!
    const y = matmul(h, bt, rows, 8, 4).map((v, i) => 0.5 * v + 2 * c[i % 4]!)
    return { y, z: h }
  }
  return { bytes, reference }
}

/** NCHW convolution, stride 1, symmetric padding, group 1. */
export function conv2d(x: Float32Array, w: Float32Array, bias: Float32Array, c: number, h: number, width: number, m: number, k: number): Float32Array {
  const pad = (k - 1) / 2
  const out = new Float32Array(m * h * width)
  for (let o = 0; o < m; o++) for (let yy = 0; yy < h; yy++) for (let xx = 0; xx < width; xx++) {
    let sum = bias[o]!
    for (let i = 0; i < c; i++) for (let ky = 0; ky < k; ky++) for (let kx = 0; kx < k; kx++) {
      const sy = yy + ky - pad
      const sx = xx + kx - pad
      if (sy < 0 || sy >= h || sx < 0 || sx >= width) continue
      sum += x[(i * h + sy) * width + sx]! * w[((o * c + i) * k + ky) * k + kx]!
    }
    out[(o * h + yy) * width + xx] = sum
  }
  return out
}

/**
 * y = Conv1x1(Relu(BatchNorm(Conv3x3(x)))): x [1, 4, 8, 8] → 8 channels → 4 channels, BN with
 * non-trivial statistics (so folding it is exercised).
 */
export function convModel(): { bytes: Uint8Array; reference: (x: Float32Array) => Float32Array } {
  const w1 = randomValues(8 * 4 * 9, 21, 0.3)
  const b1 = randomValues(8, 22, 0.1)
  const scale = randomValues(8, 23, 0.3).map((v) => 1 + v)
  const shift = randomValues(8, 24, 0.2)
  const mean = randomValues(8, 25, 0.2)
  const variance = randomValues(8, 26, 0.3).map((v) => 0.5 + Math.abs(v))
  const w2 = randomValues(4 * 8, 27, 0.4)
  const b2 = randomValues(4, 28, 0.1)
  const bytes = modelBytes(
    [
      node('Conv', ['x', 'w1', 'b1'], ['c1'], 'conv1', [intsAttribute('kernel_shape', [3, 3]), intsAttribute('pads', [1, 1, 1, 1])]),
      node('BatchNormalization', ['c1', 'scale', 'shift', 'mean', 'var'], ['bn'], 'bn', [floatAttribute('epsilon', 1e-5)]),
      node('Relu', ['bn'], ['r'], 'relu'),
      node('Conv', ['r', 'w2', 'b2'], ['y'], 'conv2', [intsAttribute('kernel_shape', [1, 1])]),
    ],
    [
      floatTensor('w1', [8, 4, 3, 3], w1),
      floatTensor('b1', [8], b1),
      floatTensor('scale', [8], scale),
      floatTensor('shift', [8], shift),
      floatTensor('mean', [8], mean),
      floatTensor('var', [8], variance),
      floatTensor('w2', [4, 8, 1, 1], w2),
      floatTensor('b2', [4], b2),
    ],
    ['x'],
    ['y'],
  )
  const reference = (x: Float32Array) => {
    const c1 = conv2d(x, w1, b1, 4, 8, 8, 8, 3)
    const r = c1.map((v, i) => {
      const ch = Math.floor(i / 64)
      return Math.max(0, ((v - mean[ch]!) / Math.sqrt(variance[ch]! + 1e-5)) * scale[ch]! + shift[ch]!)
    })
    return conv2d(r, w2, b2, 8, 8, 8, 4, 1)
  }
  return { bytes, reference }
}
