/**
 * The live table of devices as the gateway sees them: retained status (capabilities and the
 * last-will `online:false`), heartbeats with load, and the gateway's own measurements (jobs it has
 * in flight there, round-trip EWMA, consecutive failures).
 */
import { DEVICE_STALE_AFTER_MS, type DeviceStatus, type Heartbeat } from '@depinfer/shared'
import { RoundTripWindows } from './hedging.js'

/** A device is treated as gone when neither status nor heartbeat arrived for this long (the protocol's). */
export const STALE_AFTER_MS = DEVICE_STALE_AFTER_MS
/** Consecutive failures (timeouts, bad results) after which a device is suspect. */
export const SUSPECT_AFTER_FAILURES = 3
/** How long a suspect device is left out of scheduling. */
export const SUSPECT_FOR_MS = 60_000
/**
 * A timeout counts against a device only when its budget was at least this, and at least
 * BLAMED_BUDGET_FACTOR times what the device was expected to take: the caller picks the
 * deadline (`timeout_ms`), and a deadline too short to meet says nothing about the device.
 */
const MIN_BLAMED_BUDGET_MS = 1_000
const BLAMED_BUDGET_FACTOR = 4
/** What a job sent now should take on this device: its measured time, for each job it holds and this one (0 before any measurement). */
const expectedMs = (entry: DeviceEntry) => (entry.measuredEwmaMs ?? 0) * (entry.inflight + 1)
/**
 * How long a device a spot check's majority contradicted is left out (spot-checks/): doubled
 * for each further refutation, up to REFUTED_SUSPECT_MAX_MS. Longer than for a bad attestation:
 * two real runs of the same input outvoted it, and a device that cheats on some jobs would
 * otherwise be back within a minute, checked again only after about 1 / SPOT_CHECK_RATE jobs.
 */
export const REFUTED_SUSPECT_MS = 10 * 60_000
export const REFUTED_SUSPECT_MAX_MS = 24 * 60 * 60_000
const DEFAULT_EWMA_MS = 100
const EWMA_WEIGHT = 0.2

export interface DeviceEntry {
  deviceId: string
  status: DeviceStatus
  /** When its status or a heartbeat last arrived, replayed statuses included: what staleness goes by. */
  lastSeenAt: number
  /**
   * When the device itself last said something (a heartbeat, or a status it published, not one
   * the broker replayed to a new subscription): what forgetting goes by (forgetGoneSince). The
   * broker replays retained statuses at every reconnect of the link, an `online: true` one too
   * for a device that vanished without its will being sent.
   */
  lastHeardAt: number
  heartbeat: Heartbeat | undefined
  /** Jobs this gateway sent there that have not been answered. */
  inflight: number
  /** Jobs there that are not this gateway's, from the last heartbeat. */
  foreignLoad: number
  /** Mean round trip measured by this gateway, in ms; undefined until the first answer. */
  measuredEwmaMs: number | undefined
  /** The latest round trips measured by this gateway, per kind of job: when a job there is hedged (hedging.ts). */
  roundTrips: RoundTripWindows
  consecutiveFailures: number
  suspectUntil: number
  /**
   * Why it is suspect: failures (timeouts, errors), or a refused attestation or a spot check's
   * majority against it, which only time clears.
   */
  suspectFor: 'failures' | 'bad-attestation' | 'refuted'
  /** Results whose attestation the gateway refused (forged, wrong device, tampered output). */
  badAttestations: number
  /** Spot checks whose majority contradicted this device. */
  refutations: number
  /** Jobs this gateway has sent there (jobSent), answered or not. */
  jobsSent: number
}

export class DeviceTable {
  readonly #devices = new Map<string, DeviceEntry>()
  #revision = 0
  /** The shortest round trip measured on any device (DEFAULT_EWMA_MS before the first). */
  #fastestRoundTripMs = DEFAULT_EWMA_MS

  constructor(private readonly now: () => number) {}

  /**
   * Counts the changes to what a catalog is built from (statuses, presence, suspicion), so one
   * built at the same revision is still right until `nextTransitionAt`. Load and latency figures
   * do not count: the scheduler reads them live from the entries.
   */
  get revision(): number {
    return this.#revision
  }

  /**
   * When, after `now`, a device changes state with time alone (goes stale, or stops being
   * suspect); Infinity if none will. O(devices): for whoever caches what the table says.
   */
  nextTransitionAt(now: number): number {
    let next = Infinity
    for (const entry of this.#devices.values()) {
      const staleAt = entry.lastSeenAt + STALE_AFTER_MS
      if (entry.status.online && staleAt > now) next = Math.min(next, staleAt)
      if (entry.suspectUntil > now) next = Math.min(next, entry.suspectUntil)
    }
    return next
  }

  /** `replayed`: a retained status the broker resent to a new subscription, not one just published. */
  applyStatus(status: DeviceStatus, replayed = false): DeviceEntry {
    const existing = this.#devices.get(status.deviceId)
    if (existing) {
      // A last will lists no models: keep the ones we knew, so the catalog still shows them
      // (as unavailable) while the device is away.
      const models = !status.online && status.models.length === 0 ? existing.status.models : status.models
      const next = { ...status, models }
      // Agents republish an unchanged status every few minutes: that changes no catalog, unless
      // it brings a stale device back.
      if (!this.isOnline(existing) || JSON.stringify(next) !== JSON.stringify(existing.status)) this.#revision++
      existing.status = next
      existing.lastSeenAt = this.now()
      if (!replayed) existing.lastHeardAt = this.now()
      return existing
    }
    this.#revision++
    const entry: DeviceEntry = {
      deviceId: status.deviceId,
      status,
      lastSeenAt: this.now(),
      // Replayed or not: a gateway that has just started knows no better (forgetting then counts from now).
      lastHeardAt: this.now(),
      heartbeat: undefined,
      inflight: 0,
      foreignLoad: 0,
      measuredEwmaMs: undefined,
      roundTrips: new RoundTripWindows(),
      consecutiveFailures: 0,
      suspectUntil: 0,
      suspectFor: 'failures',
      badAttestations: 0,
      refutations: 0,
      jobsSent: 0,
    }
    this.#devices.set(status.deviceId, entry)
    return entry
  }

  /**
   * Treats every device as offline until its status arrives again (after the broker link
   * reconnects, the broker resends the retained statuses of the devices it knows). What was
   * measured of each device and the models it served are kept.
   */
  unconfirmAll(): void {
    this.#revision++
    for (const entry of this.#devices.values()) entry.status = { ...entry.status, online: false }
  }

  applyHeartbeat(deviceId: string, heartbeat: Heartbeat): void {
    const entry = this.#devices.get(deviceId)
    if (!entry) return // a heartbeat before any status says nothing about capabilities
    // Only a heartbeat that brings a stale device back changes a catalog; the others (every few
    // seconds from every device) would otherwise invalidate it all the time.
    if (!this.isOnline(entry) && entry.status.online) this.#revision++
    entry.heartbeat = heartbeat
    // What the device reports beyond our own jobs is other gateways' work. Kept as that
    // difference, not as the raw total: a heartbeat is up to seconds old, and taking
    // max(ours, reported) made a fast device that had since drained look busy (measured in
    // the scheduler simulation: p99 7x worse).
    entry.foreignLoad = Math.max(0, heartbeat.inflight + heartbeat.queued - entry.inflight)
    entry.lastSeenAt = this.now()
    entry.lastHeardAt = this.now()
  }

  get(deviceId: string): DeviceEntry | undefined {
    return this.#devices.get(deviceId)
  }

  /**
   * Drops the devices not online and not heard from (lastHeardAt) since before `cutoff`, unless
   * still suspect (forgetting would clear that); returns their ids. A device that comes back is
   * added anew from its status. Without this the table would hold every device ever seen.
   */
  forgetGoneSince(cutoff: number): string[] {
    const gone = [...this.#devices.values()].filter((entry) => !this.isOnline(entry) && entry.lastHeardAt < cutoff && !this.isSuspect(entry))
    for (const entry of gone) this.#devices.delete(entry.deviceId)
    if (gone.length > 0) this.#revision++
    return gone.map((entry) => entry.deviceId)
  }

  all(): DeviceEntry[] {
    return [...this.#devices.values()]
  }

  isOnline(entry: DeviceEntry): boolean {
    return entry.status.online && this.now() - entry.lastSeenAt < STALE_AFTER_MS
  }

  isSuspect(entry: DeviceEntry): boolean {
    return entry.suspectUntil > this.now()
  }

  online(): DeviceEntry[] {
    return this.all().filter((entry) => this.isOnline(entry))
  }

  /** Best-known load: our own in-flight jobs, exact, plus others' as of the last heartbeat. */
  load(entry: DeviceEntry): number {
    return entry.inflight + entry.foreignLoad
  }

  /**
   * What a job is expected to take on this device: this gateway's round-trip EWMA once it has
   * one. A device never sent a job is guessed optimistically, so that it gets tried even when
   * the measured devices look fast enough (a pessimistic guess left fast newcomers unused at low
   * load): the fastest round trip seen on any device, or the device's own heartbeat figure when
   * that is slower (a claim of more speed than anyone has shown is not believed). One sent a job
   * but not measured yet gets no second while the first is out (Infinity), and DEFAULT_EWMA_MS
   * once idle again (its job failed or timed out): an unknown device never has more than one.
   */
  ewmaMs(entry: DeviceEntry): number {
    if (entry.measuredEwmaMs !== undefined) return entry.measuredEwmaMs
    if (entry.jobsSent === 0) return Math.max(entry.heartbeat?.ewmaMs ?? 0, this.#fastestRoundTripMs)
    return entry.inflight > 0 ? Number.POSITIVE_INFINITY : DEFAULT_EWMA_MS
  }

  /** A job goes to this device now. */
  jobSent(entry: DeviceEntry): void {
    entry.inflight++
    entry.jobsSent++
  }

  /** The optimistic guess for a device never sent a job (see ewmaMs); changes only when a faster round trip is seen. */
  get unmeasuredEwmaMs(): number {
    return this.#fastestRoundTripMs
  }

  /** A job of `jobClass` (hedging.ts jobClassOf) answered `roundTripMs` after it was sent. */
  recordSuccess(entry: DeviceEntry, roundTripMs: number, jobClass: string): void {
    if (roundTripMs < this.#fastestRoundTripMs) this.#fastestRoundTripMs = roundTripMs
    entry.consecutiveFailures = 0
    entry.roundTrips.add(jobClass, roundTripMs)
    entry.measuredEwmaMs =
      entry.measuredEwmaMs === undefined
        ? roundTripMs
        : entry.measuredEwmaMs * (1 - EWMA_WEIGHT) + roundTripMs * EWMA_WEIGHT
  }

  /**
   * A device answered a job after its deadline had passed: alive but slow. The answer counts as
   * a (slow) latency sample and clears the failures and suspicion its timeouts earned.
   */
  recordLateAnswer(entry: DeviceEntry, roundTripMs: number, jobClass: string): void {
    this.recordSuccess(entry, roundTripMs, jobClass)
    // Only the suspicion failures earned: a late answer says nothing about a forged attestation.
    if (entry.suspectFor === 'failures' && this.isSuspect(entry)) {
      entry.suspectUntil = 0
      this.#revision++
    }
  }

  /**
   * Whether a job about to be sent with `budgetMs` would, if it timed out, count against the
   * device (see MIN_BLAMED_BUDGET_MS). Asked before sending: what it was expected to take then.
   * From this gateway's own measurements only: a device cannot talk its way out of blame by
   * heartbeating a huge latency or queue.
   */
  timeoutWouldBeItsFault(entry: DeviceEntry, budgetMs: number): boolean {
    return budgetMs >= Math.max(MIN_BLAMED_BUDGET_MS, BLAMED_BUDGET_FACTOR * expectedMs(entry))
  }

  /**
   * Whether `budgetMs` is below what this device can be expected to need (its measured time,
   * its queue included): a timeout then says the deadline was too short, and asking again with
   * the same one would most likely time out again.
   */
  budgetTooShort(entry: DeviceEntry, budgetMs: number): boolean {
    return budgetMs < expectedMs(entry)
  }

  recordFailure(entry: DeviceEntry): void {
    entry.consecutiveFailures++
    if (entry.consecutiveFailures >= SUSPECT_AFTER_FAILURES) {
      // A bad attestation's longer-lived reason is not downgraded by failures meanwhile.
      if (!this.isSuspect(entry)) entry.suspectFor = 'failures'
      entry.suspectUntil = Math.max(entry.suspectUntil, this.now() + SUSPECT_FOR_MS)
      entry.consecutiveFailures = 0
      this.#revision++
    }
  }

  /** A result whose attestation was refused: out of scheduling at once, for SUSPECT_FOR_MS. */
  recordBadAttestation(entry: DeviceEntry): void {
    entry.badAttestations++
    entry.consecutiveFailures = 0
    const until = this.now() + SUSPECT_FOR_MS
    // Never shortens a longer suspension (a refuted device must not answer its way out with a bad signature).
    if (until >= entry.suspectUntil) {
      entry.suspectUntil = until
      entry.suspectFor = 'bad-attestation'
    }
    this.#revision++
  }

  /** A spot check's majority contradicted it: out of scheduling for REFUTED_SUSPECT_MS, doubled each time. */
  recordRefuted(entry: DeviceEntry): void {
    entry.refutations++
    entry.consecutiveFailures = 0
    const forMs = Math.min(REFUTED_SUSPECT_MAX_MS, REFUTED_SUSPECT_MS * 2 ** Math.min(entry.refutations - 1, 30))
    entry.suspectUntil = Math.max(entry.suspectUntil, this.now() + forMs)
    entry.suspectFor = 'refuted'
    this.#revision++
  }

  /** Carries a refutation over to another entry with the same signing key (a device back under a new id). */
  refutedUntil(entry: DeviceEntry, until: number): void {
    if (until <= entry.suspectUntil) return
    entry.suspectUntil = until
    entry.suspectFor = 'refuted'
    this.#revision++
  }
}
