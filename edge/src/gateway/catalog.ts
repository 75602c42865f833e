/**
 * The model catalog, derived from what devices advertise. A (name, version) is defined by the
 * first device seen advertising it; a device that later advertises the same name and version
 * with a different sha256 is not routed to for it (it is running some other file). A device
 * running a variant published with the version (its int8 file) advertises the version's own
 * sha256 as well, so it is grouped with the fp32 devices; whether the edge accepts the file it
 * actually runs is decided per job (served-file.ts), with the published variants at hand.
 */
import type { ModelDescriptor } from '@depinfer/shared'
import type { DeviceEntry, DeviceTable } from './device-table.js'

/** How a model's reason starts when devices serve it but none may be routed to (e.g. unstaked). */
export const NOT_ROUTABLE = 'not routable'

/** v2 repository states (KServe model repository extension). */
export type ModelState = 'READY' | 'LOADING' | 'UNAVAILABLE'

export interface CatalogModel {
  descriptor: ModelDescriptor
  /** Online, non-suspect devices that have this exact file loaded and ready. */
  readyDevices: DeviceEntry[]
  state: ModelState
  /** Why the model is not READY, for the repository index. */
  reason: string
}

/**
 * `refusal` says why an otherwise usable device may not get jobs (e.g. not staked), or undefined
 * when it may; such a device's models stay UNAVAILABLE with that reason rather than vanishing.
 */
export function buildCatalog(
  table: DeviceTable,
  refusal: (device: DeviceEntry) => string | undefined = () => undefined,
): Map<string, CatalogModel> {
  const catalog = new Map<string, CatalogModel>()
  const refusals = new Map<CatalogModel, string[]>()
  for (const device of table.all()) {
    // A device without a signing key cannot attest its results, so it is never routed to.
    const online = table.isOnline(device) && !table.isSuspect(device) && device.status.publicKey !== undefined
    const refused = online ? refusal(device) : undefined
    for (const model of device.status.models) {
      const key = catalogKey(model.name, model.version)
      let entry = catalog.get(key)
      if (!entry) {
        entry = { descriptor: model, readyDevices: [], state: 'UNAVAILABLE', reason: 'no device online' }
        catalog.set(key, entry)
      }
      if (model.sha256 !== entry.descriptor.sha256 || !online) continue
      if (refused !== undefined) {
        if (model.state === 'ready' || model.state === 'loading') refusals.set(entry, [...(refusals.get(entry) ?? []), `${device.deviceId}: ${refused}`])
        continue
      }
      if (model.state === 'ready') {
        entry.readyDevices.push(device)
        entry.state = 'READY'
        entry.reason = ''
      } else if (model.state === 'loading' && entry.state !== 'READY') {
        entry.state = 'LOADING'
        entry.reason = 'devices are loading the model'
      }
    }
  }
  for (const [entry, reasons] of refusals) {
    if (entry.state === 'UNAVAILABLE') entry.reason = `${NOT_ROUTABLE}: ${reasons.join('; ')}`
  }
  return catalog
}

const catalogKey = (name: string, version: string) => `${name}\u0000${version}`

/** Orders versions numerically where both are numbers, else lexically. */
export function compareVersions(a: string, b: string): number {
  const na = Number(a)
  const nb = Number(b)
  if (Number.isFinite(na) && Number.isFinite(nb)) return na - nb
  return a < b ? -1 : a > b ? 1 : 0
}

/** All versions of a model name, oldest first. */
export function versionsOf(catalog: Map<string, CatalogModel>, name: string): CatalogModel[] {
  return [...catalog.values()]
    .filter((m) => m.descriptor.name === name)
    .sort((a, b) => compareVersions(a.descriptor.version, b.descriptor.version))
}

/**
 * The model a request names. Without a version: the newest READY version, else the newest.
 * Returns undefined when the name (or that version) is unknown.
 */
export function resolveModel(
  catalog: Map<string, CatalogModel>,
  name: string,
  version: string | undefined,
): CatalogModel | undefined {
  if (version !== undefined) return catalog.get(catalogKey(name, version))
  const versions = versionsOf(catalog, name)
  return versions.filter((m) => m.state === 'READY').at(-1) ?? versions.at(-1)
}
