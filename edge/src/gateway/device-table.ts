/**
 * The live table of devices as the gateway sees them: retained status (capabilities and the
 * last-will `online:false`), heartbeats with load, and the gateway's own measurements (jobs it has
 * in flight there, round trips per kind of job, consecutive failures), from which it says how
 * long a job sent to a device now would take (expectedWaitMs, what the scheduler compares).
 */
import { DEVICE_STALE_AFTER_MS, type DeviceStatus, type Heartbeat, type JobTimings } from '@depinfer/shared'
import { useRecent } from './recent-map.js'
import { EWMA_WEIGHT, FleetRoundTrips, RoundTrips, type ClassRoundTrips } from './round-trips.js'

/** A device is treated as gone when neither status nor heartbeat arrived for this long (the protocol's). */
export const STALE_AFTER_MS = DEVICE_STALE_AFTER_MS
/** Consecutive failures (timeouts, bad results) after which a device is suspect. */
export const SUSPECT_AFTER_FAILURES = 3
/** How long a suspect device is left out of scheduling. */
export const SUSPECT_FOR_MS = 60_000
/** Kinds of job whose failures are counted per device, at most (the least recently failed dropped first). */
const MAX_FAILING_KINDS = 64
/**
 * A timeout counts against a device only when its budget was at least this, and at least
 * BLAMED_BUDGET_FACTOR times what the device was expected to take: the caller picks the
 * deadline (`timeout_ms`), and a deadline too short to meet says nothing about the device.
 */
const MIN_BLAMED_BUDGET_MS = 1_000
const BLAMED_BUDGET_FACTOR = 4
/**
 * How long a device a spot check's majority contradicted is left out (spot-checks/): doubled
 * for each further refutation, up to REFUTED_SUSPECT_MAX_MS. Longer than for a bad attestation:
 * two real runs of the same input outvoted it, and a device that cheats on some jobs would
 * otherwise be back within a minute, checked again only after about 1 / SPOT_CHECK_RATE jobs.
 */
export const REFUTED_SUSPECT_MS = 10 * 60_000
export const REFUTED_SUSPECT_MAX_MS = 24 * 60 * 60_000
/** The guess for a job on a device not measured yet, before any round trip was measured anywhere. */
const DEFAULT_EWMA_MS = 100
/**
 * A device's round-trip EWMA for a kind of job, while no job of that kind is out there, has its
 * excess over what the device is likely to take (relaxedFloorMs) halved for each
 * ESTIMATE_HALF_LIFE_MS since it was last measured, MAX_HALVINGS times at most. Without it, a
 * device that was slow once (a cold first run, late answers after a freeze) is expected to stay
 * that slow, gets no job of that kind, and so is never measured again: the operator audit saw
 * one get 1 of 867 jobs after a cold 1.5 s detector run. In steps rather than continuously, so
 * that whoever caches estimates (the scheduler simulation) knows when they change
 * (estimatesChangeAt).
 */
const ESTIMATE_HALF_LIFE_MS = 30_000
const MAX_HALVINGS = 8

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
  /** The same per job class (round-trips.ts jobClassOf); a class is dropped at 0. */
  inflightByClass: Map<string, number>
  /** Kinds of job whose last jobs there failed, with no answer of that kind since (recordFailure). */
  failingKinds: Map<string, { failures: number; suspectUntil: number }>
  /** Jobs there that are not this gateway's, from the last heartbeat. */
  foreignLoad: number
  /** Mean round trip measured by this gateway over every kind of job, in ms; undefined until the first answer. */
  measuredEwmaMs: number | undefined
  /** The round trips measured by this gateway per kind of job: what a job is expected to take there, and when it is hedged (hedging.ts). */
  roundTrips: RoundTrips
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
}

export class DeviceTable {
  readonly #devices = new Map<string, DeviceEntry>()
  #revision = 0
  /** Every device's round trips, per kind of job. */
  readonly #fleet = new FleetRoundTrips(DEFAULT_EWMA_MS)

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
      inflightByClass: new Map(),
      failingKinds: new Map(),
      foreignLoad: 0,
      measuredEwmaMs: undefined,
      roundTrips: new RoundTrips(),
      consecutiveFailures: 0,
      suspectUntil: 0,
      suspectFor: 'failures',
      badAttestations: 0,
      refutations: 0,
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
   * How long a job of `jobClass` (round-trips.ts jobClassOf) sent to this device now is
   * expected to take, from sending to answer: the jobs of this gateway's already out there, each
   * at what its kind takes there (jobMs), others' jobs (foreignLoad) at the device's overall
   * round trip, then this one. What the scheduler compares. Summed per kind of job because the
   * agent runs one job at a time: a classifier job queued behind a detector's waits for it.
   */
  expectedWaitMs(entry: DeviceEntry, jobClass: string): number {
    let queuedMs = entry.foreignLoad > 0 ? entry.foreignLoad * this.#foreignJobMs(entry) : 0
    for (const [queuedClass, count] of entry.inflightByClass) queuedMs += count * this.#jobMs(entry, queuedClass, false)
    return queuedMs + this.#jobMs(entry, jobClass, true)
  }

  /**
   * What one job of `jobClass` takes on this device, queue aside:
   * - measured there: its round-trip EWMA for that kind of job; while none of that kind is out
   *   there, its excess over what the device likely takes (#relaxedFloorMs) halves every
   *   ESTIMATE_HALF_LIFE_MS since its last answer of that kind (a device slow once is tried
   *   again once the others are busier than a typical device);
   * - not measured there: optimistic, so that it gets tried even when the measured devices look
   *   fast enough (a pessimistic guess left fast newcomers unused at low load): the fastest
   *   round trip of that kind on any device, or the device's own heartbeat figure when that is
   *   slower and the gateway has measured nothing there yet (a claim of more speed than anyone
   *   has shown is not believed). But a second job of a kind it has not answered yet
   *   (`another`) while the first is out: Infinity, so an unknown device never has more than one
   *   job of a kind out (it may have one of each kind). And a kind that failed there three
   *   times in a row (recordFailure): Infinity, for SUSPECT_FOR_MS.
   */
  #jobMs(entry: DeviceEntry, jobClass: string, another: boolean): number {
    if (another && (entry.failingKinds.get(jobClass)?.suspectUntil ?? 0) > this.now()) return Number.POSITIVE_INFINITY
    const measured = entry.roundTrips.of(jobClass)
    const out = entry.inflightByClass.get(jobClass) ?? 0
    if (measured) {
      const floorMs = out > 0 ? undefined : this.#relaxedFloorMs(jobClass, measured)
      if (floorMs === undefined || measured.ewmaMs <= floorMs) return measured.ewmaMs
      return floorMs + (measured.ewmaMs - floorMs) / 2 ** this.#halvings(measured)
    }
    if (another && out > 0) return Number.POSITIVE_INFINITY
    const guessMs = this.#fleet.fastestMs(jobClass)
    return entry.measuredEwmaMs === undefined ? Math.max(entry.heartbeat?.ewmaMs ?? 0, guessMs) : guessMs
  }

  /**
   * What a device's stale figure for a kind of job relaxes towards: the fleet's typical round
   * trip for it, or the device's own median once it has answered two, if that is slower. A
   * device whose only run was a cold one is tried again as if typical; one slow every time is
   * not (relaxing a 2 s device towards a 200 ms fleet's typical sent it a 2 s job every two
   * minutes, in a review's model of a two-device deployment). Undefined before the fleet has a
   * typical.
   */
  #relaxedFloorMs(jobClass: string, measured: ClassRoundTrips): number | undefined {
    const typicalMs = this.#fleet.typicalMs(jobClass)
    // A figure at or under the typical is not relaxed whatever the median: not worth asking it.
    if (typicalMs === undefined || measured.ewmaMs <= typicalMs) return typicalMs
    return Math.max(typicalMs, measured.medianMs ?? 0)
  }

  /** Halvings of a stale figure so far (none if the clock went back). */
  #halvings(measured: ClassRoundTrips): number {
    return Math.max(0, Math.min(MAX_HALVINGS, Math.floor((this.now() - measured.lastAt) / ESTIMATE_HALF_LIFE_MS)))
  }

  /** What one of others' jobs there takes: the device's overall round trip, as for a job of a kind it was never measured on otherwise. */
  #foreignJobMs(entry: DeviceEntry): number {
    return entry.measuredEwmaMs ?? Math.max(entry.heartbeat?.ewmaMs ?? 0, this.#fleet.fastestMs())
  }

  /**
   * When, after now, this device's expectedWaitMs changes with time alone (a stale figure's next
   * halving, the end of a kind's suspicion); Infinity if it will not. Changes that measurements
   * cause are counted by `estimatesVersion` and the entry's own jobs and answers.
   */
  estimatesChangeAt(entry: DeviceEntry): number {
    let next = Number.POSITIVE_INFINITY
    for (const { suspectUntil } of entry.failingKinds.values()) if (suspectUntil > this.now()) next = Math.min(next, suspectUntil)
    for (const [jobClass, measured] of entry.roundTrips.classes()) {
      if (entry.inflightByClass.has(jobClass)) continue
      const floorMs = this.#relaxedFloorMs(jobClass, measured)
      if (floorMs === undefined || measured.ewmaMs <= floorMs) continue
      const halvings = this.#halvings(measured)
      if (halvings < MAX_HALVINGS) next = Math.min(next, measured.lastAt + (halvings + 1) * ESTIMATE_HALF_LIFE_MS)
    }
    return next
  }

  /** Bumped whenever the fleet's figures every device's estimates may build on change (the fastest or typical round trip of a kind of job). */
  get estimatesVersion(): number {
    return this.#fleet.version
  }

  /**
   * How long a job of `jobClass` sent to this device now would wait behind the jobs already
   * there, and then take, at the device's own time per job of each kind (ClassRoundTrips
   * serviceMs: its model run's share, so a queue that batches drains at the batched pace).
   * Others' jobs (foreignLoad) count at this job's kind's. What admission compares with a job's
   * deadline (gateway.ts refuseIfQueuesTooLong); undefined while any of those kinds has no
   * such figure there.
   */
  queueEstimate(entry: DeviceEntry, jobClass: string): { waitMs: number; perJobMs: number } | undefined {
    const perJobMs = entry.roundTrips.of(jobClass)?.serviceMs
    if (perJobMs === undefined) return undefined
    let waitMs = entry.foreignLoad * perJobMs
    for (const [queuedClass, count] of entry.inflightByClass) {
      const queuedMs = entry.roundTrips.of(queuedClass)?.serviceMs
      if (queuedMs === undefined) return undefined
      waitMs += count * queuedMs
    }
    return { waitMs, perJobMs }
  }

  /** A job of `jobClass` goes to this device now. */
  jobSent(entry: DeviceEntry, jobClass: string): void {
    entry.inflight++
    entry.inflightByClass.set(jobClass, (entry.inflightByClass.get(jobClass) ?? 0) + 1)
  }

  /** A job of `jobClass` sent there is no longer out: answered, timed out, or lost with the device. */
  jobClosed(entry: DeviceEntry, jobClass: string): void {
    entry.inflight--
    const out = (entry.inflightByClass.get(jobClass) ?? 0) - 1
    if (out > 0) entry.inflightByClass.set(jobClass, out)
    else entry.inflightByClass.delete(jobClass)
  }

  /**
   * A job of `jobClass` answered `roundTripMs` after it was sent; `serviceMs`, the device's own
   * time for it (serviceMsOf its timings), when known.
   */
  recordSuccess(entry: DeviceEntry, roundTripMs: number, jobClass: string, serviceMs?: number): void {
    this.#fleet.add(jobClass, roundTripMs)
    entry.consecutiveFailures = 0
    entry.failingKinds.delete(jobClass)
    entry.roundTrips.add(jobClass, roundTripMs, this.now(), serviceMs)
    entry.measuredEwmaMs =
      entry.measuredEwmaMs === undefined
        ? roundTripMs
        : entry.measuredEwmaMs * (1 - EWMA_WEIGHT) + roundTripMs * EWMA_WEIGHT
  }

  /**
   * A device answered a job after its deadline had passed: alive but slow. The answer counts as
   * a (slow) latency sample and clears the failures and suspicion its timeouts earned.
   */
  recordLateAnswer(entry: DeviceEntry, roundTripMs: number, jobClass: string, serviceMs?: number): void {
    this.recordSuccess(entry, roundTripMs, jobClass, serviceMs)
    // Only the suspicion failures earned: a late answer says nothing about a forged attestation.
    if (entry.suspectFor === 'failures' && this.isSuspect(entry)) {
      entry.suspectUntil = 0
      this.#revision++
    }
  }

  /**
   * Whether a job of `jobClass` about to be sent with `budgetMs` would, if it timed out, count
   * against the device (see MIN_BLAMED_BUDGET_MS). Asked before sending: what it was expected
   * to take then. From this gateway's own measurements only: a device cannot talk its way out
   * of blame by heartbeating a huge latency or queue.
   */
  timeoutWouldBeItsFault(entry: DeviceEntry, budgetMs: number, jobClass: string): boolean {
    return budgetMs >= Math.max(MIN_BLAMED_BUDGET_MS, BLAMED_BUDGET_FACTOR * this.#measuredWaitMs(entry, jobClass))
  }

  /**
   * Whether `budgetMs` is below what this device can be expected to need for a job of
   * `jobClass` (its measured times, its queue included): a timeout then says the deadline was
   * too short, and asking again with the same one would most likely time out again.
   */
  budgetTooShort(entry: DeviceEntry, budgetMs: number, jobClass: string): boolean {
    return budgetMs < this.#measuredWaitMs(entry, jobClass)
  }

  /**
   * What a job of `jobClass` sent now should take there, by what was measured only: each of this
   * gateway's jobs out there and this one at what its kind took there (at the fleet's typical
   * for a kind the device has not answered; 0 before anything was measured). Not aged: blame
   * goes by what the device last showed.
   */
  #measuredWaitMs(entry: DeviceEntry, jobClass: string): number {
    const measuredMs = (of: string) => entry.roundTrips.of(of)?.ewmaMs ?? this.#fleet.typicalMs(of) ?? 0
    let waitMs = measuredMs(jobClass)
    for (const [queuedClass, count] of entry.inflightByClass) waitMs += count * measuredMs(queuedClass)
    return waitMs
  }

  /**
   * A job of `jobClass` failed there (an error, or a timeout its budget was fair for). Three in
   * a row make the device suspect; three in a row of one kind, with no answer of that kind
   * between, leave that kind out there for SUSPECT_FOR_MS (Infinity in expectedWaitMs): the
   * device's answers of other kinds reset the first count, so a device whose detector always
   * fails (out of memory on large inputs, a hang) while its classifier answers would otherwise
   * cost every detector job sent there a failure and a retry.
   */
  recordFailure(entry: DeviceEntry, jobClass: string): void {
    const kind = useRecent(entry.failingKinds, jobClass, () => ({ failures: 0, suspectUntil: 0 }), MAX_FAILING_KINDS)
    if (++kind.failures >= SUSPECT_AFTER_FAILURES) {
      kind.suspectUntil = this.now() + SUSPECT_FOR_MS
      kind.failures = 0
    }
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

/**
 * A job's share of its device's time, from the timings the device reported: its model run,
 * divided among the jobs batched into it. What the agent spends decoding and signing a job is
 * left out (about a millisecond): admission may then wait for a queue a little longer than it
 * takes, never refuse a job for time the device does not need.
 */
export const serviceMsOf = (timings: JobTimings): number => timings.inferMs / timings.batchJobs
