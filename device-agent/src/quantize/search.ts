/**
 * Accuracy-aware quantization: when the quantized model misses the top-1 agreement threshold,
 * find few layers to leave in fp32 so that it meets it (what Intel Neural Compressor calls
 * accuracy-driven fallback).
 *
 * 1. Sensitivity: each layer the quantization as asked converts (the candidates; layers already
 *    excluded by the options are not) is quantized alone, all other candidates left fp32, and
 *    compared with fp32 on the search inputs. Layers are ranked by the agreement they cost alone,
 *    then by their mean absolute error on the class outputs (the finer measure when agreement
 *    ties, as it does for most layers of a confident classifier).
 * 2. Fallback: the k most sensitive layers are left in fp32 for k = 1, 2, … until the threshold
 *    is met on the search inputs. So the result is the shortest prefix of the ranking that meets
 *    it; layers interact, so a smaller set outside the ranking's order may exist, which this does
 *    not look for. (Agreement does not grow steadily with k: on PaddleOCR cls, k = 3 met a
 *    threshold that k = 4 missed, so a binary search over k would overshoot.)
 *
 * The search inputs must differ from the ones the final report judges by (the CLI uses another
 * seed): a set chosen to pass on some inputs says little about others until measured there.
 * They must also be many enough that one flipped position is small next to 1 − threshold: by
 * default the count that gives SEARCH_POSITIONS class positions (e.g. 1,000 images for a
 * classifier, 42 text lines for a recognizer with 24 time steps).
 *
 * Cost: fp32 runs once on the search inputs; static mode calibrates once (the ranges do not
 * depend on which layers are left out); then one quantize-and-compare run per candidate, plus
 * one per k tried.
 */
import type * as ort from 'onnxruntime-node'
import { DEFAULT_SESSION_OPTIONS, EvaluationError, agreementPositions, compareWithReference, referenceOutputs, type Comparison, type Feeds, type ReferenceOutputs } from './evaluate.js'
import { quantizeModel, QUANTIZABLE_OPS, type QuantizeOptions } from './quantize.js'

/** Class positions (images, time steps…) the search's inputs should hold by default. */
export const SEARCH_POSITIONS = 1_000
const MIN_SEARCH_SAMPLES = 20
const MAX_SEARCH_SAMPLES = 500

export interface SearchOptions {
  /** Top-1 agreement to reach on the search inputs. */
  threshold: number
  /** Makes `count` search inputs (e.g. seeded samples of a seed of the search's own). */
  sampleFeeds: (count: number) => Feeds[]
  /** How many; default: enough for SEARCH_POSITIONS class positions (20 to 500). */
  samples?: number
  /** The outputs agreement is judged on (`--class-output`); default: every output that has one. */
  classOutputs?: readonly string[]
  sessionOptions?: ort.InferenceSession.SessionOptions
  /** Progress lines (the search takes minutes on a large model). */
  onProgress?: (message: string) => void
}

export interface LayerSensitivity {
  name: string
  opType: string
  /** Top-1 agreement with only this layer quantized. */
  agreement: number
  /** The largest mean absolute error over the judged class outputs, with only this layer quantized. */
  meanAbsError: number
}

export interface SearchResult {
  /** The layers to leave in fp32 (pass as `exclude`), most sensitive first; empty when none needs to be. */
  fp32Layers: string[]
  /** Top-1 agreement on the search inputs with `fp32Layers` left in fp32. */
  agreement: number
  /** Whether `agreement` meets the threshold (it may not even with every candidate left fp32). */
  met: boolean
  /** Top-1 agreement on the search inputs with every candidate quantized. */
  quantizedAgreement: number
  /** The layers the quantization as asked converts. */
  candidates: number
  /** Every candidate, most sensitive first (empty when no fallback was needed). */
  ranking: LayerSensitivity[]
  threshold: number
  samples: number
  /** Class positions the agreement is counted over. */
  positions: number
  /** Quantize-and-compare runs the search took. */
  evaluations: number
}

export async function searchFp32Layers(fp32: Uint8Array, options: QuantizeOptions, search: SearchOptions): Promise<SearchResult> {
  const sessionOptions = search.sessionOptions ?? DEFAULT_SESSION_OPTIONS
  const progress = search.onProgress ?? (() => {})
  const quantizeOptions: QuantizeOptions = { ...options, ...(options.calibration && { calibrationCache: options.calibrationCache ?? new Map() }) }
  const full = await quantizeModel(fp32, quantizeOptions)
  const samples = search.samples ?? (await defaultSampleCount(fp32, search, sessionOptions))
  const reference = await referenceOutputs(fp32, search.sampleFeeds(samples), sessionOptions, search.classOutputs)
  const positions = classPositions(reference)
  let evaluations = 0
  const compare = async (bytes: Uint8Array): Promise<{ comparison: Comparison; agreement: number }> => {
    const comparison = await compareWithReference(reference, bytes, sessionOptions)
    evaluations++
    return { comparison, agreement: comparison.top1Agreement! }
  }
  const measure = async (exclude: readonly string[]) => {
    const { bytes } = await quantizeModel(fp32, { ...quantizeOptions, exclude: [...(options.exclude ?? []), ...exclude] })
    return compare(bytes)
  }

  const mainOps = new Set<string>(QUANTIZABLE_OPS)
  // Static mode also quantizes the Add/Mul/pooling next to quantized layers; those follow their
  // layers and are not candidates of their own.
  const candidates = full.report.nodes.filter((n) => n.skipped === undefined && mainOps.has(n.opType))
  const quantizedAgreement = (await compare(full.bytes)).agreement
  const result = { threshold: search.threshold, samples, positions, quantizedAgreement, candidates: candidates.length }
  if (quantizedAgreement >= search.threshold || candidates.length === 0) {
    return { ...result, fp32Layers: [], agreement: quantizedAgreement, met: quantizedAgreement >= search.threshold, ranking: [], evaluations }
  }
  progress(`search: quantized as asked, top-1 agreement is ${pct(quantizedAgreement)} (< ${pct(search.threshold)}) on ${positions} positions; measuring ${candidates.length} layers alone`)

  const ranking: LayerSensitivity[] = []
  for (const [i, candidate] of candidates.entries()) {
    const others = candidates.filter((c) => c !== candidate).map((c) => c.name)
    const { comparison, agreement } = await measure(others)
    const classErrors = comparison.outputs.filter((o) => comparison.judgedOutputs.includes(o.name)).map((o) => o.meanAbsError)
    ranking.push({ name: candidate.name, opType: candidate.opType, agreement, meanAbsError: Math.max(...classErrors) })
    if ((i + 1) % 10 === 0 || i + 1 === candidates.length) progress(`search: sensitivity ${i + 1}/${candidates.length}`)
  }
  ranking.sort((a, b) => a.agreement - b.agreement || b.meanAbsError - a.meanAbsError)

  let agreement = quantizedAgreement
  let k = 0
  while (k < ranking.length && agreement < search.threshold) {
    k++
    agreement = (await measure(ranking.slice(0, k).map((l) => l.name))).agreement
    progress(`search: ${k} layers left fp32 → ${pct(agreement)}`)
  }
  return { ...result, fp32Layers: ranking.slice(0, k).map((l) => l.name), agreement, met: agreement >= search.threshold, ranking, evaluations }
}

/**
 * Top-1 agreement positions over the reference's runs (the least of its judged outputs' that have
 * any: class positions, or the elements of an output that is not floating point); throws when none has.
 */
function classPositions(reference: ReferenceOutputs): number {
  const judged = [...reference.classes].filter(([name]) => reference.judged === undefined || reference.judged.has(name))
  const counts = judged.flatMap(([name, classes]) => {
    let sum: number | undefined
    for (const outputs of reference.outputs) {
      const values = outputs[name]
      const positions = values === undefined ? undefined : agreementPositions(values, classes)
      if (positions !== undefined) sum = (sum ?? 0) + positions
    }
    return sum === undefined ? [] : [sum]
  })
  if (counts.length === 0) {
    throw new EvaluationError('the accuracy-aware search needs top-1 agreement, and no output of this model has a class axis (a fixed last dimension of 2 or more) or is not floating point (e.g. an ArgMax label)')
  }
  return Math.min(...counts)
}

/** Enough search inputs for SEARCH_POSITIONS class positions, from one input's count. */
async function defaultSampleCount(fp32: Uint8Array, search: SearchOptions, sessionOptions: ort.InferenceSession.SessionOptions): Promise<number> {
  const perSample = classPositions(await referenceOutputs(fp32, search.sampleFeeds(1), sessionOptions, search.classOutputs))
  return Math.min(MAX_SEARCH_SAMPLES, Math.max(MIN_SEARCH_SAMPLES, Math.ceil(SEARCH_POSITIONS / Math.max(1, perSample))))
}

const pct = (x: number) => `${(x * 100).toFixed(2)}%`
