/**
 * The int8 variant `depinfer models publish` uploads with a model: made here by the agent's own
 * quantizer (`--int8`: @depinfer/device-agent/quantize, the code behind `depinfer-quantize`) and
 * compared with fp32 on seeded sample inputs, or made elsewhere (`--int8-file` with the JSON
 * report of `depinfer-quantize --json`). Either way the report is the publisher's claim: the edge
 * records it and cannot measure it again.
 */
import { OnnxFormatError as OnnxInfoError, readOnnxModelInfo, sha256Hex, variantAccepted, type OnnxModelInfo, type VariantReport, messageOf } from '@depinfer/shared'
import { z } from 'zod'
import { CliError, readUserFile } from './errors.js'

/** The agent's quantizer, loaded only when a variant is made: it brings onnxruntime, which nothing else in this CLI needs. */
const quantizer = () => import('@depinfer/device-agent/quantize')

export interface Int8Variant {
  bytes: Uint8Array
  report: VariantReport
  /** The publisher's threshold: devices run the variant only when `report.top1Agreement` reaches it. */
  minAgreement: number
  /** The comparison with fp32 as printed for the publisher. */
  text: string
}

/** The variant cannot be made or published: the model cannot be quantized or compared with fp32, or the report is unreadable. */
export class Int8VariantError extends CliError {
  override name = 'Int8VariantError'
}

const unmeasurable = (what: string) =>
  new Int8VariantError(
    `${what}: top-1 agreement with fp32 cannot be measured (no output has a class axis), so no threshold can judge the int8 variant; publish without it`,
  )

/**
 * Refuses, before quantizing, a model the comparison cannot run on: the quantizer generates its
 * sample inputs as float32 tensors only (quantize/evaluate.ts inputSpecs), so an input of any
 * other datatype (token ids, masks) would fail half-way with onnxruntime's words.
 */
function checkComparable(fp32: Uint8Array, file: string): void {
  let info: OnnxModelInfo
  try {
    info = readOnnxModelInfo(fp32)
  } catch (error) {
    if (error instanceof OnnxInfoError) throw new Int8VariantError(`${file}: ${error.message}`, 1, { cause: error })
    throw error
  }
  const other = info.inputs.find((input) => input.datatype !== 'FP32')
  if (other) {
    throw new Int8VariantError(
      `${file}: input ${JSON.stringify(other.name)} is ${other.datatype}; --int8 compares the int8 variant with fp32 on generated sample inputs, which it can only make for FP32 inputs: publish without --int8`,
    )
  }
}

/**
 * Why nothing was quantized: no candidate nodes, or the candidates and the commonest reasons they
 * were left alone (e.g. fp16 weights), so the developer is not told a model full of Convs has none.
 */
function skippedSummary(nodes: readonly { opType: string; skipped?: string }[]): string {
  const skipped = nodes.filter((node) => node.skipped !== undefined)
  if (skipped.length === 0) return 'no MatMul, Gemm or Conv the quantizer converts'
  const reasons = new Map<string, number>()
  for (const node of skipped) reasons.set(node.skipped!, (reasons.get(node.skipped!) ?? 0) + 1)
  const top = [...reasons].sort((a, b) => b[1] - a[1]).slice(0, 2).map(([reason, count]) => `${count}: ${reason}`)
  return `${skipped.length} MatMul/Gemm/Conv node(s) left in fp32; ${top.join('; ')}${reasons.size > 2 ? '; …' : ''}`
}

/**
 * Quantizes `fp32` with the agent's quantizer (dynamic int8, its defaults) and compares it with
 * fp32 on the quantizer's default seeded samples; `minAgreement` defaults to the quantizer's
 * threshold. Top-1 agreement is judged on `classOutputs` (`--class-output`) when named, else on
 * every output with a class axis. The samples' sizes are the model's, with `shapes` (`--shape
 * name=d1,…`, as depinfer-quantize takes them) for dimensions it leaves open, else guessed. Latency is not measured: it would describe this machine, not
 * the devices that will run the model. Refuses a model with nothing to quantize, like one whose
 * agreement cannot be measured: the publish stops before any upload.
 */
export async function quantizeForPublishing(
  fp32: Uint8Array,
  file: string,
  minAgreementOption: number | undefined,
  { classOutputs = [], shapes = [] }: { classOutputs?: readonly string[]; shapes?: readonly string[] } = {},
): Promise<Int8Variant> {
  checkComparable(fp32, file)
  const {
    ClassOutputError,
    EVALUATION_DEFAULTS,
    ShapeOverrideError,
    checkClassOutputs,
    evaluateQuantization,
    formatReport,
    inputSpecs,
    nothingQuantized,
    parseShapeOptions,
    quantizeModel,
    variantReport,
  } = await quantizer()
  const minAgreement = minAgreementOption ?? EVALUATION_DEFAULTS.threshold
  // A misspelt output or input name, or a shape the model cannot take, is the command line's
  // fault, said as such.
  const usageError = (error: unknown) =>
    error instanceof ClassOutputError || error instanceof ShapeOverrideError ? new Int8VariantError(`${file}: ${error.message}`, 2, { cause: error }) : undefined
  let shapeOverrides: Map<string, number[]>
  try {
    // Before quantizing, said at once.
    shapeOverrides = parseShapeOptions(shapes)
    await checkClassOutputs(fp32, classOutputs)
  } catch (error) {
    throw usageError(error) ?? new Int8VariantError(`${file}: cannot make the int8 variant: ${messageOf(error)}`, 1, { cause: error })
  }
  // Whatever stops the quantizer or onnxruntime here is about this model (a format the quantizer
  // cannot read or rewrite, an operator onnxruntime cannot run): said plainly, with the file,
  // like depinfer-quantize does.
  const cannotMake = (error: unknown, hint = '') =>
    new Int8VariantError(`${file}: cannot make the int8 variant: ${messageOf(error)}${hint}`, 1, { cause: error })
  let quantized: Awaited<ReturnType<typeof quantizeModel>>
  try {
    quantized = await quantizeModel(fp32)
  } catch (error) {
    throw cannotMake(error)
  }
  // Refused before any upload: the "variant" would be the fp32 model with graph rewrites alone,
  // which the edge cannot tell from a real one until it is uploaded, nor agents use for anything.
  if (nothingQuantized(quantized.report)) {
    throw new Int8VariantError(
      `${file}: nothing to quantize (${skippedSummary(quantized.report.nodes)}), so an int8 variant would be the fp32 model: publish without --int8`,
    )
  }
  const { bytes } = quantized
  let specs: Awaited<ReturnType<typeof inputSpecs>>
  try {
    specs = await inputSpecs(fp32, shapeOverrides)
  } catch (error) {
    throw usageError(error) ?? cannotMake(error)
  }
  let evaluation: Awaited<ReturnType<typeof evaluateQuantization>>
  try {
    evaluation = await evaluateQuantization(fp32, bytes, quantized.report, {
      specs,
      samples: EVALUATION_DEFAULTS.samples,
      seed: EVALUATION_DEFAULTS.seed,
      threshold: minAgreement,
      classOutputs,
      batches: [],
    })
  } catch (error) {
    // Most often the sample inputs' shapes, guessed from the file for dimensions it leaves open:
    // the sizes the model needs can be given.
    throw cannotMake(
      error,
      shapes.length === 0 ? `; if it is the sample inputs' sizes, give those the model needs with --shape <input>=<d1,d2,…>` : '',
    )
  }
  const report = variantReport(evaluation)
  if (!report) throw unmeasurable(file)
  return { bytes, report, minAgreement, text: formatReport(evaluation, { input: file, output: 'int8 variant' }) }
}

/** The part of `depinfer-quantize --json`'s report a variant needs (EvaluationReport.comparison). */
const QuantizeJsonSchema = z.object({
  /** The two files it compared, by sha256 and size (EvaluationReport.quantize): they tell a report of other files. */
  quantize: z
    .object({
      fp32Bytes: z.number().int().nonnegative().optional(),
      int8Bytes: z.number().int().nonnegative().optional(),
      fp32Sha256: z.string().optional(),
      int8Sha256: z.string().optional(),
    })
    .optional(),
  comparison: z.object({
    samples: z.number().int().positive(),
    top1Agreement: z.number().min(0).max(1).optional(),
    /** The outputs top1Agreement was judged on (Comparison.judgedOutputs); absent from older reports. */
    judgedOutputs: z.array(z.string().min(1)).optional(),
    /** Whether judgedOutputs were named (`--class-output`) rather than every output with a top-1 agreement. */
    outputsNamed: z.boolean().optional(),
    maxAbsError: z.number().nonnegative(),
  }),
})

/**
 * A variant made elsewhere: its file and the JSON report `depinfer-quantize --json` printed for it.
 * The report must be about these files: the fp32 model (`model`) and the int8 file it measured
 * (by sha256, or size in older reports) must be these, or a report of other files would publish
 * their agreement for these.
 */
export async function readInt8Variant(file: string, reportFile: string, minAgreementOption: number | undefined, model: { file: string; bytes: Uint8Array }): Promise<Int8Variant> {
  const minAgreement = minAgreementOption ?? (await quantizer()).EVALUATION_DEFAULTS.threshold
  const bytes = await readUserFile(file, 'the int8 file')
  const reportText = (await readUserFile(reportFile, 'the int8 report')).toString('utf8')
  let json: unknown
  try {
    json = JSON.parse(reportText)
  } catch (error) {
    throw new Int8VariantError(`cannot read the int8 report ${reportFile}: ${messageOf(error)}`, 1, { cause: error })
  }
  const parsed = QuantizeJsonSchema.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw new Int8VariantError(`${reportFile} is not a depinfer-quantize --json report: ${issue.path.join('.') || '(root)'}: ${issue.message}`)
  }
  // The files the report measured, by sha256 (sizes alone in reports of older versions): a
  // report of another checkpoint of the same network has the same sizes, not the same hashes.
  const measured = parsed.data.quantize
  const notOf = (what: 'model' | 'int8 file', reported: string, actual: string) =>
    new Int8VariantError(`${reportFile} is the report of another ${what}: it measured ${reported}, ${what === 'model' ? model.file : file} has ${actual}`)
  const checks = [
    ['int8 file', bytes, measured?.int8Sha256, measured?.int8Bytes],
    ['model', model.bytes, measured?.fp32Sha256, measured?.fp32Bytes],
  ] as const
  for (const [what, fileBytes, sha256, size] of checks) {
    if (sha256 !== undefined && sha256 !== sha256Hex(fileBytes)) throw notOf(what, `sha256 ${sha256}`, `sha256 ${sha256Hex(fileBytes)}`)
    if (size !== undefined && size !== fileBytes.length) throw notOf(what, `a ${size}-byte file`, `${fileBytes.length} bytes`)
  }
  const { samples, top1Agreement, judgedOutputs, outputsNamed, maxAbsError } = parsed.data.comparison
  if (top1Agreement === undefined) throw unmeasurable(reportFile)
  // Published as the report says: which outputs were judged is the measurement's, not this
  // command's. Outputs judged by default are not sent, as variantReport leaves them out.
  const named = outputsNamed === true && judgedOutputs !== undefined && judgedOutputs.length > 0
  const report: VariantReport = { top1Agreement, ...(named && { classOutputs: judgedOutputs }), maxAbsError, samples }
  return { bytes, report, minAgreement, text: `int8 variant ${file}: ${describeReport(report, minAgreement)} (from ${reportFile})` }
}

const pct = (share: number) => `${(share * 100).toFixed(2)}%`

/** One line on a variant's report and what devices will do with it. */
export function describeReport(report: VariantReport, minAgreement: number): string {
  const verdict = variantAccepted({ report, minAgreement }) ? `≥ ${pct(minAgreement)}: devices run it` : `< ${pct(minAgreement)}: devices run fp32`
  const on = report.classOutputs === undefined ? '' : ` on ${report.classOutputs.join(', ')}`
  return `top-1 agreement ${pct(report.top1Agreement)}${on} over ${report.samples} samples, max abs error ${report.maxAbsError.toPrecision(3)}, ${verdict}`
}
