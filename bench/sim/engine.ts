/**
 * One simulated run: the fleet, the gateway(s) and one placement policy, driven by a
 * discrete-event loop. No sockets, no timers: time is a number that jumps from event to event.
 *
 * The gateway side mirrors edge/src/gateway/gateway.ts (#dispatch, #send, #onResult, #onStatus)
 * and reuses its DeviceTable (with the simulated clock) and HedgeBudget, so in-flight counts, the
 * load (own in-flight + others' from heartbeats), round-trip EWMAs and p95s, hedges, staleness
 * and suspects are the gateway's own code. The device side mirrors device-agent/src/agent.ts (heartbeats of
 * `inflight - queued` and `queued`) and runtime/batcher.ts (with maxBatch 1: one job at a time,
 * FIFO, queued jobs past their deadline rejected when the next job is taken).
 */
import { PROTOCOL_VERSION, type DeviceStatus, type Heartbeat } from '@depinfer/shared'
import { DeviceTable, STALE_AFTER_MS, type DeviceEntry } from '../../edge/src/gateway/device-table.js'
import { HedgeBudget, hedgeAfterMs } from '../../edge/src/gateway/hedging.js'
import { EventHeap } from './heap.js'
import { Candidate, type Policy, type PolicyFactory, type World } from './policies.js'
import { STREAM, type Arrivals, type Fleet, type SimConfig } from './model.js'
import { deriveSeed, Rng } from './rng.js'

/** gateway.ts FIRST_ATTEMPT_SHARE and MAX_ATTEMPTS (module-private there, mirrored here). */
const FIRST_ATTEMPT_SHARE = 0.5
const MAX_ATTEMPTS = 2
/** gateway.ts maxAttempts: a hedge does not use up the retry. */
const maxAttempts = (job: { hedgedFirst: unknown }) => MAX_ATTEMPTS + (job.hedgedFirst ? 1 : 0)
/** gateway.ts TIMED_OUT_REMEMBERED_MS: how long a late answer still counts as the device's round trip. */
const TIMED_OUT_REMEMBERED_MS = 10 * 60_000
/** device-agent/src/agent.ts EWMA_WEIGHT: the agent's per-job service-time mean it heartbeats. */
const AGENT_EWMA_WEIGHT = 0.2
/** A simulated model's job class (round-trips.ts jobClassOf): each model's inputs have one size. */
const jobClassOf = (model: number) => `m${model}`
/** MQTT: the broker gives up on a client 1.5 keepalives after its last packet (§3.1.2.10). */
const KEEPALIVE_GRACE = 1.5

export interface RunResult {
  policy: string
  /** Latency of each measured job in ms; Infinity for a job that failed. */
  latencies: Float64Array
  /** The model of each of those jobs (index into SimConfig.models). */
  latencyModels: Uint8Array
  measured: number
  failed: number
  /** Measured jobs sent to a second device: retried after a failure, or hedged. */
  retried: number
  /** Measured jobs hedged (sent to a second device while the first still had them). */
  hedged: number
  /** Busy device time / up device time over the measured window (wasted work included). */
  utilization: number
  /** Attempts that timed out, were lost with their device, or came back as errors. */
  timeouts: number
  lost: number
  errors: number
  /** Errors from a device the job had already moved away from, ignored as gateway.ts does. */
  lateErrorsIgnored: number
  simulatedMs: number
  events: number
  wallMs: number
  /** CPU time of this process during the run (user + system), ms: wall time on a shared machine varies. */
  cpuMs: number
}

/** gateway.ts Attempt: one sending of a job to one device. */
interface SimAttempt {
  readonly device: number
  readonly sentAt: number
  readonly budgetMs: number
  /** Whether its timeout counts against the device (DeviceTable.timeoutWouldBeItsFault, asked at sending). */
  readonly blameTimeout: boolean
  /** Until answered, timed out, lost, or the job ends; counted in the device's inflight while open. */
  open: boolean
}

interface SimJob {
  readonly startedAt: number
  readonly gateway: number
  /** Index into SimConfig.models. */
  readonly model: number
  readonly measured: boolean
  /** Devices this job was sent to, in order (what policies are told as `tried`). */
  readonly tried: number[]
  readonly attempts: SimAttempt[]
  /** The first attempt, once hedged (gateway.ts hedgedFirst): the job no longer waits on it alone. */
  hedgedFirst: SimAttempt | undefined
  done: boolean
  /** Devices this job timed out on or ended without, with when it was sent there: their late answers are measured (gateway.ts #onLateResult). */
  timedOutOn: { device: number; sentAt: number }[]
}

interface JobMessage {
  readonly job: SimJob
  readonly device: number
  /** The device's incarnation when sent: a job published to a connection that died is lost. */
  readonly incarnation: number
  readonly budgetMs: number
  deadlineAt: number
}

type SimEvent =
  | { kind: 'jobAtDevice'; msg: JobMessage }
  | { kind: 'serviceDone'; device: number; incarnation: number }
  | { kind: 'result'; job: SimJob; device: number; ok: boolean; inferMs: number }
  | { kind: 'heartbeatSend'; device: number; incarnation: number }
  | { kind: 'heartbeat'; gateway: number; device: number; heartbeat: Heartbeat }
  | { kind: 'status'; gateway: number; device: number; online: boolean }
  | { kind: 'down'; device: number }
  | { kind: 'up'; device: number }
  | { kind: 'throttle'; device: number; factor: number }
  | { kind: 'will'; device: number; incarnation: number }
  | { kind: 'timeout'; job: SimJob; attempt: SimAttempt }
  | { kind: 'hedge'; job: SimJob }

/** A device's FIFO of jobs waiting for the model (the Batcher's queue). */
class DeviceQueue {
  #items: JobMessage[] = []
  #head = 0
  /** Lower bound of the queued jobs' deadlines: skip the expiry scan while nothing can be late. */
  #minDeadline = Infinity

  get length(): number {
    return this.#items.length - this.#head
  }

  push(msg: JobMessage): void {
    this.#items.push(msg)
    if (msg.deadlineAt < this.#minDeadline) this.#minDeadline = msg.deadlineAt
  }

  shift(): JobMessage | undefined {
    if (this.#head >= this.#items.length) return undefined
    const msg = this.#items[this.#head++]!
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
    return msg
  }

  /** Batcher.#takeBatch: jobs whose deadline passed while queued are rejected. */
  expire(now: number, reject: (msg: JobMessage) => void): void {
    if (!(this.#minDeadline < now)) return
    const kept: JobMessage[] = []
    let min = Infinity
    for (let i = this.#head; i < this.#items.length; i++) {
      const msg = this.#items[i]!
      if (msg.deadlineAt < now) {
        reject(msg)
      } else {
        kept.push(msg)
        if (msg.deadlineAt < min) min = msg.deadlineAt
      }
    }
    this.#items = kept
    this.#head = 0
    this.#minDeadline = min
  }
}

/** What one gateway (one Gateway Durable Object) knows and does. */
class GatewayState {
  readonly table: DeviceTable
  readonly entries: Array<DeviceEntry | undefined>
  readonly candidates: Array<Candidate | undefined>
  /** Whether each device is in `list`, to notice when an event changes its eligibility. */
  readonly listed: Uint8Array
  /** Jobs with an open attempt on each device (gateway.ts scans its pending jobs for this). */
  readonly pendingOn: Array<Set<SimJob>>
  list: Candidate[] = []
  dirty = true
  /** Earliest time at which staleness or a suspect's release changes the list by itself. */
  nextCheck = Infinity
  /** The table's estimatesVersion the candidates were last synced at. */
  #estimatesVersion = Number.NaN
  /** Earliest Candidate.changesAt: when a stale figure's next halving changes a candidate by itself. */
  #nextChangeAt = Infinity

  constructor(
    devices: number,
    now: () => number,
    readonly policy: Policy,
    readonly hedges: HedgeBudget,
    readonly jobClasses: readonly string[],
  ) {
    this.table = new DeviceTable(now)
    this.entries = new Array<DeviceEntry | undefined>(devices).fill(undefined)
    this.candidates = new Array<Candidate | undefined>(devices).fill(undefined)
    this.listed = new Uint8Array(devices)
    this.pendingOn = Array.from({ length: devices }, () => new Set<SimJob>())
  }

  /**
   * The ready devices buildCatalog would list for any model (every device serves every one):
   * online and not suspect.
   * Kept incrementally rather than rebuilt per job; `refresh` and `nextCheck` keep it exact.
   */
  eligible(now: number): Candidate[] {
    if (this.dirty || now >= this.nextCheck) {
      const list: Candidate[] = []
      let nextCheck = Infinity
      for (let i = 0; i < this.entries.length; i++) {
        const entry = this.entries[i]
        this.listed[i] = 0
        if (!entry) continue
        const online = this.table.isOnline(entry)
        const suspect = this.table.isSuspect(entry)
        if (online && !suspect) {
          list.push(this.candidates[i]!)
          this.listed[i] = 1
        }
        if (online) nextCheck = Math.min(nextCheck, entry.lastSeenAt + STALE_AFTER_MS)
        if (suspect) nextCheck = Math.min(nextCheck, entry.suspectUntil)
      }
      this.list = list
      this.nextCheck = nextCheck
      this.dirty = false
    }
    return this.list
  }

  /** A new device's candidate. */
  add(i: number, entry: DeviceEntry): void {
    this.entries[i] = entry
    this.candidates[i] = new Candidate(i, entry, this.table, this.jobClasses)
  }

  /** Re-reads device `i`'s figures from the table into its candidate. */
  sync(i: number): void {
    const candidate = this.candidates[i]
    if (!candidate) return
    candidate.sync()
    if (candidate.changesAt < this.#nextChangeAt) this.#nextChangeAt = candidate.changesAt
  }

  /**
   * Before a pick: what changes every device's figures at once, the fleet's figures
   * (estimatesVersion) or time (a stale figure's halving), is read into the candidates it touches.
   */
  freshen(now: number): void {
    const all = this.table.estimatesVersion !== this.#estimatesVersion
    if (!all && now < this.#nextChangeAt) return
    this.#estimatesVersion = this.table.estimatesVersion
    let next = Infinity
    for (const candidate of this.candidates) {
      if (!candidate) continue
      if (all || candidate.changesAt <= now) candidate.sync()
      if (candidate.changesAt < next) next = candidate.changesAt
    }
    this.#nextChangeAt = next
  }

  /**
   * After an event about device `i`: re-read its figures from the table into its candidate
   * and, if its eligibility changed, rebuild the list before the next pick.
   */
  refresh(i: number): void {
    const entry = this.entries[i]
    this.sync(i)
    const eligible = entry !== undefined && this.table.isOnline(entry) && !this.table.isSuspect(entry)
    if (eligible !== (this.listed[i] === 1)) this.dirty = true
  }
}

export function runSimulation(
  config: SimConfig,
  fleet: Fleet,
  arrivals: Arrivals,
  policyName: string,
  factory: PolicyFactory,
): RunResult {
  const wallStart = performance.now()
  const cpuStart = process.cpuUsage()
  const n = fleet.devices.length
  const noise = new Rng(deriveSeed(config.seed, STREAM.noise))
  const policyRng = new Rng(deriveSeed(config.seed, STREAM.policy))
  const heap = new EventHeap<SimEvent>()
  let now = 0
  const clock = () => now

  // --- the true world -------------------------------------------------------------------
  const up = new Uint8Array(n)
  const serviceMs = new Float64Array(n)
  const netMs = new Float64Array(n)
  const runningEnd = new Float64Array(n).fill(-Infinity)
  const backlogUnits = new Float64Array(n)
  const models = config.models.length
  /** Whether the agent has run each model since it (re)started, per device × model: its first run is slower. */
  const warm = new Uint8Array(n * models)
  const incarnation = new Int32Array(n)
  const agentEwma = new Float64Array(n)
  const lastPacketAt = new Float64Array(n)
  const willSent = new Uint8Array(n)
  const busySince = new Float64Array(n)
  const running: Array<JobMessage | undefined> = new Array<JobMessage | undefined>(n).fill(undefined)
  const queues = Array.from({ length: n }, () => new DeviceQueue())
  let serviceVersion = 0
  const world: World = {
    get now() {
      return now
    },
    up,
    serviceMs,
    get serviceVersion() {
      return serviceVersion
    },
    netMs,
    runningEnd,
    backlogUnits,
  }

  const windowStart = config.warmupMs
  const windowEnd = arrivals.times[arrivals.times.length - 1] ?? 0
  let busyMs = 0
  const addBusy = (from: number, to: number) => {
    const overlap = Math.min(to, windowEnd) - Math.max(from, windowStart)
    if (overlap > 0) busyMs += overlap
  }

  const jobClasses = config.models.map((_, m) => jobClassOf(m))
  const gateways = Array.from(
    { length: config.gateways },
    () => new GatewayState(n, clock, factory(policyRng.float), new HedgeBudget(config.hedgeRate), jobClasses),
  )

  // --- statistics -----------------------------------------------------------------------
  const latencies: number[] = []
  const latencyModels: number[] = []
  let done = 0
  let failed = 0
  let retried = 0
  let hedged = 0
  let timeouts = 0
  let lost = 0
  let errors = 0
  let lateErrorsIgnored = 0
  let events = 0

  const delay = (device: number) => netMs[device]! * noise.noise(config.netJitterSigma)
  const deviceId = (device: number) => `d${device}`

  // --- device side (device-agent/src/agent.ts + runtime/batcher.ts) ---------------------

  /** The agent answers: the reply reaches the job's gateway after one network delay. */
  const reply = (msg: JobMessage, ok: boolean, inferMs = 0) => {
    lastPacketAt[msg.device] = now
    heap.push(now + delay(msg.device), { kind: 'result', job: msg.job, device: msg.device, ok, inferMs })
  }

  const unitsOf = (msg: JobMessage) => config.models[msg.job.model]!.serviceFactor

  const startNext = (device: number) => {
    const queue = queues[device]!
    queue.expire(now, (msg) => {
      backlogUnits[device]! -= unitsOf(msg)
      reply(msg, false) // deadline_exceeded
    })
    const msg = queue.shift()
    if (!msg) return
    backlogUnits[device]! -= unitsOf(msg)
    running[device] = msg
    const model = device * models + msg.job.model
    const cold = warm[model] === 0 ? config.coldStartFactor : 1
    warm[model] = 1
    const serviceTime = serviceMs[device]! * unitsOf(msg) * cold * noise.noise(config.serviceNoiseSigma)
    runningEnd[device] = now + serviceTime
    busySince[device] = now
    heap.push(now + serviceTime, { kind: 'serviceDone', device, incarnation: incarnation[device]! })
  }

  const sendStatus = (device: number, online: boolean, at: number) => {
    for (let g = 0; g < gateways.length; g++) heap.push(at, { kind: 'status', gateway: g, device, online })
  }

  const deviceUp = (device: number, initial: boolean) => {
    up[device] = 1
    incarnation[device]!++
    agentEwma[device] = 0 // a fresh agent process, whose models have not run yet
    warm.fill(0, device * models, (device + 1) * models)
    lastPacketAt[device] = now
    if (initial) {
      // The gateway starts with the retained statuses of the devices online at time 0.
      sendStatus(device, true, 0)
    } else {
      const at = now + delay(device)
      // Reconnecting before the broker noticed the old connection was gone: the takeover
      // closes it and its will goes out first, then the new status (same path, same order).
      if (willSent[device] === 0) sendStatus(device, false, at)
      sendStatus(device, true, at)
    }
    willSent[device] = 0
    const firstBeat = initial ? now + noise.next() * config.heartbeatMs : now + config.heartbeatMs
    heap.push(firstBeat, { kind: 'heartbeatSend', device, incarnation: incarnation[device]! })
  }

  const deviceDown = (device: number) => {
    up[device] = 0
    incarnation[device]!++
    if (running[device]) {
      addBusy(busySince[device]!, now)
      running[device] = undefined
      runningEnd[device] = -Infinity
    }
    // Jobs still on the way there are taken off when they arrive to find it gone (jobAtDevice).
    const queue = queues[device]!
    for (let msg = queue.shift(); msg; msg = queue.shift()) backlogUnits[device]! -= unitsOf(msg)
    heap.push(Math.max(now, lastPacketAt[device]! + KEEPALIVE_GRACE * config.keepaliveMs), {
      kind: 'will',
      device,
      incarnation: incarnation[device]!,
    })
  }

  // --- gateway side (edge/src/gateway/gateway.ts #dispatch / #send / #onResult) ----------

  /** #closeAttempt: no longer counted in its device's load. */
  const close = (job: SimJob, attempt: SimAttempt) => {
    if (!attempt.open) return
    attempt.open = false
    const gateway = gateways[job.gateway]!
    const entry = gateway.entries[attempt.device]
    if (entry) gateway.table.jobClosed(entry, jobClasses[job.model]!)
    gateway.pendingOn[attempt.device]!.delete(job)
    gateway.refresh(attempt.device)
  }

  const finish = (job: SimJob, ok: boolean) => {
    job.done = true
    done++
    // An attempt still out (a hedge's loser) stays counted in its device's load until it answers
    // goes offline or its budget ends (a timeout then): the device still has the job (gateway.ts #endJob).
    if (!job.measured) return
    latencies.push(ok ? now - job.startedAt : Infinity)
    latencyModels.push(job.model)
    if (!ok) failed++
    if (job.attempts.length > 1) retried++
    if (job.hedgedFirst) hedged++
  }

  /** #dispatch's sendToNext: false when no device is left (or, for a hedge, the budget is spent). */
  const send = (job: SimJob, hedge: boolean): boolean => {
    const gateway = gateways[job.gateway]!
    const all = gateway.eligible(now)
    gateway.freshen(now)
    const candidates = job.tried.length === 0 ? all : all.filter((c) => !job.tried.includes(c.index))
    if (candidates.length === 0 || (hedge && !gateway.hedges.take())) return false
    const serviceFactor = config.models[job.model]!.serviceFactor
    const device = gateway.policy.pick({ candidates, tried: job.tried, model: job.model, serviceFactor, world })
    if (device < 0) return false
    job.tried.push(device)
    const number = job.attempts.length + 1
    if (number === 1) gateway.hedges.jobDispatched()
    const remainingMs = config.deadlineMs - (now - job.startedAt)
    const lastChance = (!hedge && number >= maxAttempts(job)) || candidates.length === 1
    const budgetMs = Math.max(1, Math.floor(lastChance ? remainingMs : remainingMs * FIRST_ATTEMPT_SHARE))
    const entry = gateway.entries[device]
    const attempt: SimAttempt = {
      device,
      sentAt: now,
      budgetMs,
      blameTimeout: entry !== undefined && gateway.table.timeoutWouldBeItsFault(entry, budgetMs, jobClasses[job.model]!),
      open: true,
    }
    job.attempts.push(attempt)
    if (entry) gateway.table.jobSent(entry, jobClasses[job.model]!)
    gateway.sync(device)
    gateway.pendingOn[device]!.add(job)
    heap.push(now + budgetMs, { kind: 'timeout', job, attempt })
    const hedgeInMs = number === 1 && !lastChance ? hedgeAfterMs(entry?.roundTrips.of(jobClasses[job.model]!)) : undefined
    if (hedgeInMs !== undefined && hedgeInMs < budgetMs) heap.push(now + hedgeInMs, { kind: 'hedge', job })
    const msg: JobMessage = { job, device, incarnation: incarnation[device]!, budgetMs, deadlineAt: 0 }
    backlogUnits[device]! += serviceFactor
    heap.push(now + delay(device), { kind: 'jobAtDevice', msg })
    return true
  }

  /** #dispatch's loop after an attempt ended without an answer: retry (needsAnother), wait for another still out, or fail. */
  const carryOn = (job: SimJob) => {
    const out = job.attempts.filter((a) => a.open)
    if (!(out.length === 0 || (out.length === 1 && out[0] === job.hedgedFirst))) return
    const sent = job.attempts.length < maxAttempts(job) && now - job.startedAt < config.deadlineMs && send(job, false)
    if (!sent && out.length === 0) finish(job, false)
  }

  type Outcome = 'result' | 'error' | 'timeout' | 'lost'
  /** One attempt is over (#dispatch's handling of a result, timeout or loss event). */
  const settle = (job: SimJob, attempt: SimAttempt, outcome: Outcome, inferMs = 0) => {
    const gateway = gateways[job.gateway]!
    const { device } = attempt
    close(job, attempt)
    const { table } = gateway
    const entry = gateway.entries[device]
    if (outcome === 'result') {
      if (entry) table.recordSuccess(entry, config.ewmaInput === 'service' ? inferMs : now - attempt.sentAt, jobClasses[job.model]!)
    } else if (outcome === 'error') {
      // Every simulated error is a device's deadline_exceeded: blamed as a timeout would be.
      errors++
      if (entry && attempt.blameTimeout) table.recordFailure(entry, jobClasses[job.model]!)
    } else if (outcome === 'timeout') {
      timeouts++
      job.timedOutOn.push({ device, sentAt: attempt.sentAt })
      if (entry && attempt.blameTimeout) table.recordFailure(entry, jobClasses[job.model]!)
    } else {
      lost++
    }
    gateway.refresh(device)
    if (job.done) return
    if (outcome === 'result') return finish(job, true)
    carryOn(job)
  }

  // --- the schedule of the world --------------------------------------------------------
  for (let i = 0; i < n; i++) {
    const spec = fleet.devices[i]!
    serviceMs[i] = spec.baseMs
    netMs[i] = spec.netMs
    for (const spell of spec.outages) {
      if (spell.start > 0) heap.push(spell.start, { kind: 'down', device: i })
      heap.push(spell.end, { kind: 'up', device: i })
    }
    for (const spell of spec.throttles) {
      heap.push(spell.start, { kind: 'throttle', device: i, factor: spell.factor })
      heap.push(spell.end, { kind: 'throttle', device: i, factor: 1 })
    }
    if (spec.outages[0]?.start === 0) willSent[i] = 1 // down before the run: nothing to announce
    else deviceUp(i, true)
  }

  // --- the event loop -------------------------------------------------------------------
  const { times } = arrivals
  const total = times.length
  let nextArrival = 0
  while (done < total) {
    const arrivalAt = nextArrival < total ? times[nextArrival]! : Infinity
    if (arrivalAt < heap.peekTime()) {
      now = arrivalAt
      const job: SimJob = {
        startedAt: now,
        gateway: arrivals.gateway[nextArrival]!,
        model: arrivals.model[nextArrival]!,
        measured: now >= config.warmupMs,
        tried: [],
        attempts: [],
        hedgedFirst: undefined,
        done: false,
        timedOutOn: [],
      }
      nextArrival++
      events++
      if (!send(job, false)) finish(job, false)
      continue
    }
    const at = heap.peekTime()
    const event = heap.pop()
    if (!event) break
    now = at
    events++
    switch (event.kind) {
      case 'jobAtDevice': {
        const { msg } = event
        const device = msg.device
        if (up[device] === 0 || incarnation[device] !== msg.incarnation) {
          backlogUnits[device]! -= unitsOf(msg) // published to a connection that is gone: never delivered
          break
        }
        msg.deadlineAt = now + msg.budgetMs
        queues[device]!.push(msg)
        if (!running[device]) startNext(device)
        break
      }
      case 'serviceDone': {
        const { device } = event
        if (incarnation[device] !== event.incarnation) break
        const msg = running[device]!
        const inferMs = now - busySince[device]!
        addBusy(busySince[device]!, now)
        running[device] = undefined
        runningEnd[device] = -Infinity
        const ewma = agentEwma[device]!
        agentEwma[device] = ewma === 0 ? inferMs : ewma * (1 - AGENT_EWMA_WEIGHT) + inferMs * AGENT_EWMA_WEIGHT
        reply(msg, true, inferMs)
        startNext(device)
        break
      }
      case 'result': {
        // #onResult / #dispatch: accepted from any device this job was sent to while the job is
        // pending, a late success too; but an error from a device whose attempt is over (it
        // dropped the job as past that attempt's budget) is ignored.
        const { job } = event
        if (job.done) {
          // #onLateResult: an attempt the job ended without (a hedge's loser) is over, and its
          // success is the device's round trip.
          const abandoned = job.attempts.find((a) => a.device === event.device && a.open)
          if (abandoned) {
            close(job, abandoned)
            const gateway = gateways[job.gateway]!
            const entry = gateway.entries[event.device]
            if (event.ok && entry) {
              gateway.table.recordSuccess(entry, now - abandoned.sentAt, jobClasses[job.model]!)
              gateway.refresh(event.device)
            }
            break
          }
          // The success of a device the job timed out on, after the job ended,
          // is that device's (long) round trip, and forgives its timeout.
          const timedOut = job.timedOutOn.find((t) => t.device === event.device)
          const gateway = gateways[job.gateway]!
          const entry = gateway.entries[event.device]
          if (event.ok && timedOut && entry && now - timedOut.sentAt < TIMED_OUT_REMEMBERED_MS) {
            job.timedOutOn.splice(job.timedOutOn.indexOf(timedOut), 1)
            gateway.table.recordLateAnswer(entry, now - timedOut.sentAt, jobClasses[job.model]!)
            gateway.refresh(event.device)
          }
          break
        }
        const attempt = job.attempts.find((a) => a.device === event.device)
        if (!attempt) break
        if (!event.ok && !attempt.open) {
          lateErrorsIgnored++
          break
        }
        settle(job, attempt, event.ok ? 'result' : 'error', event.inferMs)
        break
      }
      case 'timeout': {
        const { job, attempt } = event
        // Also an abandoned attempt's (its job is done): a timeout like any other (gateway.ts #endJob).
        if (attempt.open) settle(job, attempt, 'timeout')
        break
      }
      case 'hedge': {
        const { job } = event
        const first = job.attempts[0]!
        if (!job.done && job.attempts.length === 1 && first.open && send(job, true)) job.hedgedFirst = first
        break
      }
      case 'heartbeatSend': {
        const { device } = event
        if (incarnation[device] !== event.incarnation) break
        // agent.ts: its `inflight` counts every job received and not yet answered, queued ones
        // included; the heartbeat sends `inflight - queued` (the running job) and `queued` (the
        // batcher's queue), so the sum counts each job once.
        const queued = queues[device]!.length
        const inflight = (running[device] ? 1 : 0) + queued
        const heartbeat: Heartbeat = {
          inflight: inflight - queued,
          queued,
          ewmaMs: agentEwma[device]!,
          ts: now,
        }
        lastPacketAt[device] = now
        for (let g = 0; g < gateways.length; g++) heap.push(now + delay(device), { kind: 'heartbeat', gateway: g, device, heartbeat })
        heap.push(now + config.heartbeatMs, { kind: 'heartbeatSend', device, incarnation: event.incarnation })
        break
      }
      case 'heartbeat': {
        const gateway = gateways[event.gateway]!
        gateway.table.applyHeartbeat(deviceId(event.device), event.heartbeat)
        gateway.refresh(event.device)
        break
      }
      case 'status': {
        const gateway = gateways[event.gateway]!
        const { device } = event
        const status: DeviceStatus = { protocol: PROTOCOL_VERSION, deviceId: deviceId(device), online: event.online, models: [] }
        const entry = gateway.table.applyStatus(status)
        if (!gateway.entries[device]) gateway.add(device, entry)
        if (!event.online) {
          for (const job of [...gateway.pendingOn[device]!]) {
            const attempt = job.attempts.find((a) => a.device === device && a.open)!
            if (job.done) close(job, attempt)
            else settle(job, attempt, 'lost')
          }
        }
        gateway.refresh(device)
        break
      }
      case 'down':
        deviceDown(event.device)
        break
      case 'up':
        deviceUp(event.device, false)
        break
      case 'will':
        if (incarnation[event.device] !== event.incarnation) break // it reconnected first
        willSent[event.device] = 1
        sendStatus(event.device, false, now + delay(event.device))
        break
      case 'throttle':
        serviceMs[event.device] = fleet.devices[event.device]!.baseMs * event.factor
        serviceVersion++
        break
    }
  }

  // Device time up within the measured window, from the (policy-independent) outage schedule.
  let upMs = 0
  for (const spec of fleet.devices) {
    let down = 0
    for (const spell of spec.outages) down += Math.max(0, Math.min(spell.end, windowEnd) - Math.max(spell.start, windowStart))
    upMs += windowEnd - windowStart - down
  }
  // Jobs still running at windowEnd are busy until then (their completion is past the window).
  for (let i = 0; i < n; i++) if (running[i]) addBusy(busySince[i]!, now)

  return {
    policy: policyName,
    latencies: Float64Array.from(latencies),
    latencyModels: Uint8Array.from(latencyModels),
    measured: latencies.length,
    failed,
    retried,
    hedged,
    utilization: upMs > 0 ? busyMs / upMs : 0,
    timeouts,
    lost,
    errors,
    lateErrorsIgnored,
    simulatedMs: now,
    events,
    wallMs: performance.now() - wallStart,
    cpuMs: cpuMs(process.cpuUsage(cpuStart)),
  }
}

const cpuMs = ({ user, system }: NodeJS.CpuUsage) => (user + system) / 1000
