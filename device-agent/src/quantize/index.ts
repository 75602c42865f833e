/**
 * int8 quantization of ONNX models (issue 6): `quantizeModel` rewrites an fp32 model,
 * `compareModels` measures how closely the result follows the original, `evaluateQuantization`
 * adds latency and the threshold verdict (what `depinfer-quantize` prints), `variantReport` is
 * what a published int8 variant carries. The package exports this module as
 * `@depinfer/device-agent/quantize` (the `depinfer` CLI publishes int8 variants with it).
 */
export { quantizeModel, preprocessModel, type QuantizeOptions, type QuantizeReport, type QuantizableOp, type NodeReport } from './quantize.js'
export { ClassOutputError, ShapeOverrideError, checkClassOutputs, parseShapeOptions, compareModels, measureLatency, inputSpecs, sampleFeeds, DEFAULT_SESSION_OPTIONS, type Comparison, type Feeds, type InputSpec, type LatencyResult } from './evaluate.js'
export { EVALUATION_DEFAULTS, evaluateQuantization, formatReport, nothingQuantized, variantReport, type EvaluationReport, type SearchSummary } from './report.js'
export { searchFp32Layers, type LayerSensitivity, type SearchOptions, type SearchResult } from './search.js'
export type { SampleKind } from './samples.js'
export type { CalibrationInput, StaticOptions } from './static.js'
