/**
 * The rules about model variants (issue 6) that the edge, the agent and the CLI must apply alike:
 * when a published variant may be run, and which file a device says it runs.
 */
import type { ModelDescriptor, ModelVariant, PublishedVariant } from './messages.js'

/**
 * Whether devices may run a published variant instead of the version's own file: only where the
 * publisher's report meets the publisher's threshold. Agents choose by it; the edge accepts results
 * from a variant only by it, so a device cannot run a variant its publisher did not vouch for.
 */
export function variantAccepted(variant: { report: Pick<PublishedVariant['report'], 'top1Agreement'>; minAgreement: number }): boolean {
  return variant.report.top1Agreement >= variant.minAgreement
}

/** The file a device runs for a model it advertises (the version's own file unless it says otherwise). */
export function fileRun(model: Pick<ModelDescriptor, 'sha256' | 'runs'>): { variant: ModelVariant; sha256: string } {
  return model.runs ?? { variant: 'fp32', sha256: model.sha256 }
}
