/**
 * Accuracy-aware quantization: when the fully quantized model misses the top-1 agreement
 * threshold, find few layers to leave in fp32 so that it meets it (what Intel Neural
 * Compressor calls accuracy-driven fallback).
 *
 * 1. Sensitivity: each layer the full run quantized is quantized alone (all the others left
 *    fp32) and compared with fp32 on the search inputs. Layers are ranked by the agreement they
 *    cost alone, then by their mean absolute output error (the finer measure when the
 *    agreement ties, as it does for most layers of a confident classifier).
 * 2. Fallback: a binary search for the smallest k such that leaving the k most sensitive layers
 *    in fp32 meets the threshold on the search inputs. With the k − 1 most sensitive left fp32
 *    the threshold was measured as missed (or k = 1 and the full model missed it), so no shorter
 *    prefix of the ranking is known to pass; layers interact, so a shorter set outside the
 *    ranking's order may exist, which this does not look for.
 *
 * The search inputs must differ from the ones the final report judges by (the CLI uses another
 * seed): a set chosen to pass on some inputs says little about others until measured there.
 *
 * Cost: one quantization and comparison per quantized layer plus ~log2(layers), e.g. ~2 minutes
 * for PP-OCRv4 rec (47 layers) on 2 cores with 40 search inputs.
 */
import type * as ort from 'onnxruntime-node'
import { DEFAULT_SESSION_OPTIONS, EvaluationError, compareModels, type Comparison, type Feeds } from './evaluate.js'
import { quantizeModel, QUANTIZABLE_OPS, type QuantizeOptions } from './quantize.js'

export interface SearchOptions {
  /** Top-1 agreement to reach on `feeds`. */
  threshold: number
  /** The search inputs. */
  feeds: readonly Feeds[]
  sessionOptions?: ort.InferenceSession.SessionOptions
  /** Progress lines (the search takes minutes on a large model). */
  onProgress?: (message: string) => void
}

export interface LayerSensitivity {
  name: string
  opType: string
  /** Top-1 agreement with only this layer quantized. */
  agreement: number
  meanAbsError: number
}

export interface SearchResult {
  /** The layers to leave in fp32 (pass as `exclude`), most sensitive first; empty when the full model meets the threshold. */
  fp32Layers: string[]
  /** Top-1 agreement on the search inputs with `fp32Layers` left in fp32. */
  agreement: number
  /** Top-1 agreement on the search inputs with every layer quantized. */
  fullAgreement: number
  /** Every candidate layer, most sensitive first (empty when no fallback was needed). */
  ranking: LayerSensitivity[]
  threshold: number
  samples: number
  /** Quantize-and-compare runs the search took. */
  evaluations: number
}

export async function searchFp32Layers(fp32: Uint8Array, options: QuantizeOptions, search: SearchOptions): Promise<SearchResult> {
  const sessionOptions = search.sessionOptions ?? DEFAULT_SESSION_OPTIONS
  const progress = search.onProgress ?? (() => {})
  let evaluations = 0
  const measure = async (exclude: readonly string[]): Promise<{ comparison: Comparison; agreement: number }> => {
    const { bytes } = await quantizeModel(fp32, { ...options, exclude: [...(options.exclude ?? []), ...exclude] })
    const comparison = await compareModels(fp32, bytes, search.feeds, sessionOptions)
    evaluations++
    if (comparison.top1Agreement === undefined) {
      throw new EvaluationError('the accuracy-aware search needs top-1 agreement, and no output of this model has a class axis (a fixed last dimension of 2 or more)')
    }
    return { comparison, agreement: comparison.top1Agreement }
  }

  const full = await quantizeModel(fp32, options)
  const mainOps = new Set<string>(QUANTIZABLE_OPS)
  // Static mode also quantizes the Add/Mul/pooling next to quantized layers; those follow their
  // layers and are not candidates of their own.
  const candidates = full.report.nodes.filter((n) => n.skipped === undefined && mainOps.has(n.opType))
  const fullAgreement = (await measure([])).agreement
  const result = { threshold: search.threshold, samples: search.feeds.length, fullAgreement }
  if (fullAgreement >= search.threshold || candidates.length === 0) {
    return { ...result, fp32Layers: [], agreement: fullAgreement, ranking: [], evaluations }
  }
  progress(`search: every layer quantized gives ${pct(fullAgreement)} top-1 agreement (< ${pct(search.threshold)}); measuring ${candidates.length} layers alone`)

  const ranking: LayerSensitivity[] = []
  for (const [i, candidate] of candidates.entries()) {
    const others = candidates.filter((c) => c !== candidate).map((c) => c.name)
    const { comparison, agreement } = await measure(others)
    ranking.push({ name: candidate.name, opType: candidate.opType, agreement, meanAbsError: Math.max(...comparison.outputs.map((o) => o.meanAbsError)) })
    if ((i + 1) % 10 === 0 || i + 1 === candidates.length) progress(`search: sensitivity ${i + 1}/${candidates.length}`)
  }
  ranking.sort((a, b) => a.agreement - b.agreement || b.meanAbsError - a.meanAbsError)

  // Invariant: the `failing` most sensitive left fp32 miss the threshold (0: the full model);
  // the `passing` most sensitive left fp32 meet it (all of them: nothing quantized, fp32 itself).
  let failing = 0
  let passing = ranking.length
  let passingAgreement = 1
  while (passing - failing > 1) {
    const k = Math.floor((failing + passing) / 2)
    const { agreement } = await measure(ranking.slice(0, k).map((l) => l.name))
    progress(`search: ${k} layers left fp32 → ${pct(agreement)}`)
    if (agreement >= search.threshold) [passing, passingAgreement] = [k, agreement]
    else failing = k
  }
  if (passing === ranking.length) passingAgreement = (await measure(ranking.map((l) => l.name))).agreement
  return { ...result, fp32Layers: ranking.slice(0, passing).map((l) => l.name), agreement: passingAgreement, ranking, evaluations }
}

const pct = (x: number) => `${(x * 100).toFixed(2)}%`
