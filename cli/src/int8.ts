/**
 * The int8 variant `depinfer models publish` uploads with a model: made here by the agent's own
 * quantizer (`--int8`: @depinfer/device-agent/quantize, the code behind `depinfer-quantize`) and
 * compared with fp32 on seeded sample inputs, or made elsewhere (`--int8-file` with the JSON
 * report of `depinfer-quantize --json`). Either way the report is the publisher's claim: the edge
 * records it and cannot measure it again.
 */
import { readFile } from 'node:fs/promises'
import { variantAccepted, type VariantReport } from '@depinfer/shared'
import { z } from 'zod'

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

/** The variant cannot be published: its agreement with fp32 cannot be measured, or its report is unreadable. */
export class Int8VariantError extends Error {
  override name = 'Int8VariantError'
}

const unmeasurable = (what: string) =>
  new Int8VariantError(
    `${what}: top-1 agreement with fp32 cannot be measured (no output has a class axis), so no threshold can judge the int8 variant; publish without it`,
  )

/**
 * Quantizes `fp32` with the agent's quantizer (dynamic int8, its defaults) and compares it with
 * fp32 on the quantizer's default seeded samples; `minAgreement` defaults to the quantizer's
 * threshold. Latency is not measured: it would describe this machine, not the devices that will
 * run the model.
 */
export async function quantizeForPublishing(fp32: Uint8Array, file: string, minAgreementOption: number | undefined): Promise<Int8Variant> {
  const { EVALUATION_DEFAULTS, evaluateQuantization, formatReport, inputSpecs, quantizeModel, variantReport, OnnxFormatError, QuantizeError } = await quantizer()
  const minAgreement = minAgreementOption ?? EVALUATION_DEFAULTS.threshold
  let bytes: Uint8Array
  let evaluation: Awaited<ReturnType<typeof evaluateQuantization>>
  try {
    const quantized = await quantizeModel(fp32)
    bytes = quantized.bytes
    evaluation = await evaluateQuantization(fp32, bytes, quantized.report, {
      specs: await inputSpecs(fp32),
      samples: EVALUATION_DEFAULTS.samples,
      seed: EVALUATION_DEFAULTS.seed,
      threshold: minAgreement,
      batches: [],
    })
  } catch (error) {
    // A model the quantizer cannot read or rewrite: said plainly, like depinfer-quantize does.
    if (error instanceof OnnxFormatError || error instanceof QuantizeError) throw new Int8VariantError(`${file}: ${error.message}`)
    throw error
  }
  const report = variantReport(evaluation)
  if (!report) throw unmeasurable(file)
  return { bytes, report, minAgreement, text: formatReport(evaluation, { input: file, output: 'int8 variant' }) }
}

/** The part of `depinfer-quantize --json`'s report a variant needs (EvaluationReport.comparison). */
const QuantizeJsonSchema = z.object({
  comparison: z.object({
    samples: z.number().int().positive(),
    top1Agreement: z.number().min(0).max(1).optional(),
    maxAbsError: z.number().nonnegative(),
  }),
})

/** A variant made elsewhere: its file and the JSON report `depinfer-quantize --json` printed for it. */
export async function readInt8Variant(file: string, reportFile: string, minAgreementOption: number | undefined): Promise<Int8Variant> {
  const minAgreement = minAgreementOption ?? (await quantizer()).EVALUATION_DEFAULTS.threshold
  const bytes = await readFile(file).catch((error: unknown) => {
    throw new Int8VariantError(`cannot read the int8 file ${file}: ${(error as Error).message}`)
  })
  let json: unknown
  try {
    json = JSON.parse(await readFile(reportFile, 'utf8'))
  } catch (error) {
    throw new Int8VariantError(`cannot read the int8 report ${reportFile}: ${(error as Error).message}`)
  }
  const parsed = QuantizeJsonSchema.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw new Int8VariantError(`${reportFile} is not a depinfer-quantize --json report: ${issue.path.join('.') || '(root)'}: ${issue.message}`)
  }
  const { samples, top1Agreement, maxAbsError } = parsed.data.comparison
  if (top1Agreement === undefined) throw unmeasurable(reportFile)
  const report = { top1Agreement, maxAbsError, samples }
  return { bytes, report, minAgreement, text: `int8 variant ${file}: ${describeReport(report, minAgreement)} (from ${reportFile})` }
}

const pct = (share: number) => `${(share * 100).toFixed(2)}%`

/** One line on a variant's report and what devices will do with it. */
export function describeReport(report: VariantReport, minAgreement: number): string {
  const verdict = variantAccepted({ report, minAgreement }) ? `≥ ${pct(minAgreement)}: devices run it` : `< ${pct(minAgreement)}: devices run fp32`
  return `top-1 agreement ${pct(report.top1Agreement)} over ${report.samples} samples, max abs error ${report.maxAbsError.toPrecision(3)}, ${verdict}`
}
