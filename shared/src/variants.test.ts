/** The variant rules edge, agent and CLI share: the report's form, when a variant may run, which file a device runs. */
import { describe, expect, it } from 'vitest'
import { ModelDescriptorSchema, PublishedVariantSchema, VariantReportSchema } from './messages.js'
import { fileRun, variantAccepted } from './variants.js'

describe('model variants', () => {
  it('accept a variant only when its reported agreement reaches the publisher\'s threshold', () => {
    const variant = (top1Agreement: number, minAgreement: number) => ({ report: { top1Agreement }, minAgreement })
    expect(variantAccepted(variant(0.99, 0.99))).toBe(true)
    expect(variantAccepted(variant(1, 0.5))).toBe(true)
    expect(variantAccepted(variant(0.989, 0.99))).toBe(false)
  })

  it('take reports with shares in [0, 1], a finite error and a positive sample count', () => {
    expect(VariantReportSchema.safeParse({ top1Agreement: 0.995, maxAbsError: 0.3, samples: 200 }).success).toBe(true)
    expect(VariantReportSchema.safeParse({ top1Agreement: 1.01, maxAbsError: 0.3, samples: 200 }).success).toBe(false)
    expect(VariantReportSchema.safeParse({ top1Agreement: 0.9, maxAbsError: Number.POSITIVE_INFINITY, samples: 200 }).success).toBe(false)
    expect(VariantReportSchema.safeParse({ top1Agreement: 0.9, maxAbsError: 0, samples: 0 }).success).toBe(false)
    const listed = { kind: 'int8', sha256: 'b'.repeat(64), size: 10, report: { top1Agreement: 1, maxAbsError: 0, samples: 1 }, minAgreement: 0.99, accepted: true }
    expect(PublishedVariantSchema.safeParse(listed).success).toBe(true)
    expect(PublishedVariantSchema.safeParse({ ...listed, kind: 'fp16' }).success).toBe(false)
  })

  it('say which file a device runs: what it advertises, else the version\'s own', () => {
    const descriptor = {
      name: 'cls',
      version: '1',
      sha256: 'a'.repeat(64),
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }],
      maxBatch: 1,
      state: 'ready',
    }
    const older = ModelDescriptorSchema.parse(descriptor)
    expect(fileRun(older)).toEqual({ variant: 'fp32', sha256: 'a'.repeat(64) })
    const int8 = ModelDescriptorSchema.parse({ ...descriptor, runs: { variant: 'int8', sha256: 'b'.repeat(64) } })
    expect(fileRun(int8)).toEqual({ variant: 'int8', sha256: 'b'.repeat(64) })
    expect(ModelDescriptorSchema.safeParse({ ...descriptor, runs: { variant: 'int4', sha256: 'b'.repeat(64) } }).success).toBe(false)
  })
})
