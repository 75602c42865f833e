/**
 * Which file a device runs for a model, and whether the edge accepts it (issue 6). A device
 * advertises a model by the sha256 of the version's own file (the model's identity, which groups
 * it with every other device serving that version) and says which file it actually runs: that
 * one, or a variant published with the version. The edge sends it jobs, and expects its
 * attestations to name the file it runs, only when that is the version's own file or a variant
 * published *for that version* whose publisher's report meets its threshold: a device cannot
 * claim an arbitrary file.
 */
import { fileRun, type ModelDescriptor, type ModelVariant } from '@depinfer/shared'
import type { DeviceEntry } from './device-table.js'
import type { AcceptedVariant } from './rpc.js'

/**
 * The sha256 of the file `device` runs for `model` when the edge accepts it; undefined when it
 * does not (an unpublished or unaccepted variant, or another file altogether): no job for it.
 */
export function acceptedFileOn(device: DeviceEntry, model: ModelDescriptor, variants: readonly AcceptedVariant[] = []): string | undefined {
  const served = device.status.models.find((m) => m.name === model.name && m.version === model.version)
  if (!served || served.sha256 !== model.sha256) return undefined
  const { variant, sha256 } = fileRun(served)
  if (variant === 'fp32') return sha256 === model.sha256 ? sha256 : undefined
  return variants.some((v) => v.version === model.version && v.kind === variant && v.sha256 === sha256) ? sha256 : undefined
}

/** Which variant of `version` an accepted attestation's model hash names; the version's own file is 'fp32'. */
export function variantRan(variants: readonly AcceptedVariant[] | undefined, version: string, modelHash: string): ModelVariant {
  return variants?.find((v) => v.version === version && `0x${v.sha256}` === modelHash.toLowerCase())?.kind ?? 'fp32'
}
