/**
 * The model catalog, derived from what devices advertise: one entry per (name, version, file
 * sha256). For a name nobody published, a (name, version) is defined by the first device seen
 * advertising it (its *defining* entry); devices that advertise the same name and version with
 * another sha256 are running some other file and are not routed to for it. For a published name
 * the registry defines it instead: only published versions, with their published files, are
 * served (see resolveModel), so a device advertising another file first cannot hide the devices
 * running the published one. A device running a variant published with the version (its int8
 * file) advertises the version's own sha256 as well, so it is grouped with the fp32 devices;
 * whether the edge accepts the file it actually runs is decided per job (served-file.ts), with
 * the published variants at hand.
 */
import { compareVersions, cutToLength, DEFAULT_MAX_MODEL_BYTES, type ModelDescriptor } from '@depinfer/shared'
import type { DeviceEntry, DeviceTable } from './device-table.js'

/** How a model's reason starts when devices serve it but none may be routed to (e.g. unstaked). */
export const NOT_ROUTABLE = 'not routable'
/** How a reason starts when devices advertise the model but could not load it (with their errors when they say). */
export const FAILED_TO_LOAD = 'failed to load on'

/** v2 repository states (KServe model repository extension). */
export type ModelState = 'READY' | 'LOADING' | 'UNAVAILABLE'

export interface CatalogModel {
  descriptor: ModelDescriptor
  /** The first entry seen for its name and version: what the version is for an unpublished name. */
  defining: boolean
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
  /**
   * Models devices advertised earlier: listed as UNAVAILABLE while no device lists them (a
   * restarted agent advertises a model only once it has loaded it again), so a caller meanwhile
   * hears "unavailable, retry" rather than "no such model".
   */
  remembered: Iterable<ModelDescriptor> = [],
): Map<string, CatalogModel> {
  const catalog = new Map<string, CatalogModel>()
  const refusals = new Map<CatalogModel, string[]>()
  const failed = new Map<CatalogModel, LoadFailure[]>()
  // Whether an entry is the first of its name and version, without scanning the catalog for each.
  const versions = new Set<string>()
  const firstOfVersion = (model: ModelDescriptor) => {
    const key = `${model.name}\u0000${model.version}`
    if (versions.has(key)) return false
    versions.add(key)
    return true
  }
  for (const device of table.all()) {
    // A device without a signing key cannot attest its results, so it is never routed to.
    const reachable = table.isOnline(device) && device.status.publicKey !== undefined
    const online = reachable && !table.isSuspect(device)
    // A stopping device finishes its jobs but takes no new ones; a suspect one is left out a while.
    const refused = online ? (device.status.draining ? 'shutting down' : refusal(device)) : reachable ? suspicion(device) : undefined
    for (const model of device.status.models) {
      const key = catalogKey(model.name, model.version, model.sha256)
      let entry = catalog.get(key)
      if (!entry) {
        entry = { descriptor: model, defining: firstOfVersion(model), readyDevices: [], state: 'UNAVAILABLE', reason: 'no device online' }
        catalog.set(key, entry)
      }
      if (!online && refused === undefined) continue
      if (refused !== undefined) {
        if (model.state === 'ready' || model.state === 'loading') refusals.set(entry, [...(refusals.get(entry) ?? []), `${device.deviceId}: ${refused}`])
        continue
      }
      if (model.state === 'ready') {
        // The entry describes the model as the first device to list it did, which may be one
        // offline, refused or not ready (a rogue's listing, its inputs or outputs wrong): the
        // first device that could serve it describes it instead.
        if (entry.readyDevices.length === 0) entry.descriptor = model
        entry.readyDevices.push(device)
        entry.state = 'READY'
        entry.reason = ''
      } else if (model.state === 'loading' && entry.state !== 'READY') {
        entry.state = 'LOADING'
        entry.reason = 'devices are loading the model'
      } else if (model.state === 'failed') {
        failed.set(entry, [...(failed.get(entry) ?? []), { deviceId: device.deviceId, error: model.error }])
      }
    }
  }
  for (const descriptor of remembered) {
    const key = catalogKey(descriptor.name, descriptor.version, descriptor.sha256)
    if (!catalog.has(key)) {
      catalog.set(key, { descriptor, defining: firstOfVersion(descriptor), readyDevices: [], state: 'UNAVAILABLE', reason: 'no device serves it now' })
    }
  }
  for (const [entry, failures] of failed) {
    if (entry.state === 'UNAVAILABLE') entry.reason = failureReason(failures)
  }
  for (const [entry, reasons] of refusals) {
    if (entry.state === 'UNAVAILABLE') entry.reason = `${NOT_ROUTABLE}: ${reasons.join('; ')}`
  }
  return catalog
}

/**
 * Why a reachable device is left out of scheduling for now (DeviceTable.isSuspect), and until
 * when: a time, not a count of seconds, as a catalog is kept until its next change.
 */
function suspicion(device: DeviceEntry): string {
  const why = { failures: 'after repeated failures', 'bad-attestation': 'after a refused attestation', refuted: 'after a spot check refuted it' }[device.suspectFor]
  return `left out of scheduling ${why}, until ${new Date(device.suspectUntil).toISOString()}`
}

interface LoadFailure {
  deviceId: string
  /** What the device says went wrong (ModelDescriptor.error), when it says. */
  error: string | undefined
}

/** The longest failure reason: the index and the 503 detail carry it, whatever the fleet's size. */
const MAX_FAILURE_REASON_CHARS = 1_000

/**
 * `failed to load on d1, d2 (<error>); d3 (see the agent's log)`: devices grouped by what they
 * report (a model too new for every device's onnxruntime says the same on all of them), cut to
 * MAX_FAILURE_REASON_CHARS.
 */
function failureReason(failures: readonly LoadFailure[]): string {
  const byError = new Map<string, string[]>()
  for (const { deviceId, error } of failures) byError.set(error ?? '', [...(byError.get(error ?? '') ?? []), deviceId])
  const groups = [...byError].map(([error, deviceIds]) => `${deviceIds.join(', ')} (${error || "see the agent's log"})`)
  return cutToLength(`${FAILED_TO_LOAD} ${groups.join('; ')}`, MAX_FAILURE_REASON_CHARS)
}

/** The catalog's key of a name, version and file. */
export const catalogKey = (name: string, version: string, sha256: string) => `${name}\u0000${version}\u0000${sha256}`

/** Every entry of a name and version (one per file devices advertise under it), first seen first. */
export function entriesOf(catalog: Map<string, CatalogModel>, name: string, version: string): CatalogModel[] {
  return [...catalog.values()].filter((m) => m.descriptor.name === name && m.descriptor.version === version)
}

/** The versions of a model name nobody published, oldest first: their defining entries. */
export function versionsOf(catalog: Map<string, CatalogModel>, name: string): CatalogModel[] {
  return [...catalog.values()]
    .filter((m) => m.descriptor.name === name && m.defining)
    .sort((a, b) => compareVersions(a.descriptor.version, b.descriptor.version))
}

/** A published version of a model name and its file (the registry's word on what the name is). */
export interface PublishedFile {
  version: string
  sha256: string
  /** The file's size in bytes: devices serving every published model take files up to a size. */
  size: number
}

/**
 * Why a published version may stay unserved for long: its file is over the size devices serving
 * every published model (`"*"`) take by default (DEFAULT_MAX_MODEL_BYTES); only devices that name
 * it, or raise their maxModelBytes, serve it. The note to add to a 503 (empty when the size is no
 * reason), and whether a retry in seconds would be in vain.
 */
export function unservedBySize(published: readonly PublishedFile[], version: string): { note: string; retryMuchLater: boolean } {
  const size = published.find((file) => file.version === version)?.size
  if (size === undefined || size <= DEFAULT_MAX_MODEL_BYTES) return { note: '', retryMuchLater: false }
  const mb = (bytes: number) => (bytes / 1e6).toFixed(1)
  return {
    note: `; its file is ${mb(size)} MB, more than the ${mb(DEFAULT_MAX_MODEL_BYTES)} MB devices serving every published model take by default: only devices that name it serve it`,
    retryMuchLater: true,
  }
}

/**
 * The model a request names. For a name nobody published (`published` empty: a device's own,
 * e.g. the bundled demo models), the defining entry of the version; for a published name, the
 * entry of the published version's published file — devices cannot add versions to, or swap the
 * file of, someone's model. Without a version: the newest READY version, else the newest.
 * Returns undefined when the name (or that version) is unknown.
 */
export function resolveModel(
  catalog: Map<string, CatalogModel>,
  name: string,
  version: string | undefined,
  published: readonly PublishedFile[] = [],
): CatalogModel | undefined {
  const versions =
    published.length === 0
      ? versionsOf(catalog, name)
      : [...published]
          .sort((a, b) => compareVersions(a.version, b.version))
          .map((p) => catalog.get(catalogKey(name, p.version, p.sha256)))
          .filter((m) => m !== undefined)
  if (version !== undefined) return versions.find((m) => m.descriptor.version === version)
  return versions.filter((m) => m.state === 'READY').at(-1) ?? versions.at(-1)
}

/** The longest a catalog is reused, whatever the revisions say: a backstop, not the mechanism. */
export const CATALOG_MAX_AGE_MS = 1_000

/**
 * A catalog kept between requests: building one walks every device (~0.9 ms for 1,000 devices
 * with three models each, measured), and the Gateway needs it at least once per job. Rebuilt
 * when the device table or the routing gate (`gateRevision`, e.g. stake answers) has changed,
 * when a device goes stale or stops being suspect with time alone, and at least every
 * CATALOG_MAX_AGE_MS. Consumers must not modify what it returns.
 */
export class CatalogCache {
  #cached: { catalog: Map<string, CatalogModel>; tableRevision: number; gateRevision: number; validUntil: number } | undefined

  constructor(
    private readonly table: DeviceTable,
    private readonly build: () => Map<string, CatalogModel>,
    private readonly gateRevision: () => number,
    private readonly now: () => number,
  ) {}

  get(): Map<string, CatalogModel> {
    const now = this.now()
    const cached = this.#cached
    if (cached && cached.tableRevision === this.table.revision && cached.gateRevision === this.gateRevision() && now < cached.validUntil) {
      return cached.catalog
    }
    const catalog = this.build()
    this.#cached = {
      catalog,
      tableRevision: this.table.revision,
      gateRevision: this.gateRevision(),
      validUntil: Math.min(now + CATALOG_MAX_AGE_MS, this.table.nextTransitionAt(now)),
    }
    return catalog
  }
}
