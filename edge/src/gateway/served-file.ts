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
import { NOT_ROUTABLE, type CatalogModel, type ModelState } from './catalog.js'
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

/**
 * A catalog entry as jobs see it, for readiness and the repository index: only its ready devices
 * whose file a job may run count (acceptedFileOn), so a model served only by devices running a
 * file nobody accepted for the version is not READY, as no job would go to them.
 */
export function routableView(entry: CatalogModel, variants: readonly AcceptedVariant[]): { readyDevices: DeviceEntry[]; state: ModelState; reason: string } {
  const readyDevices = entry.readyDevices.filter((device) => acceptedFileOn(device, entry.descriptor, variants) !== undefined)
  if (entry.state !== 'READY' || readyDevices.length > 0) return { readyDevices, state: entry.state, reason: entry.reason }
  return {
    readyDevices,
    state: 'UNAVAILABLE',
    reason: `${NOT_ROUTABLE}: its devices run a file that is neither the version's own nor a variant accepted for it`,
  }
}
