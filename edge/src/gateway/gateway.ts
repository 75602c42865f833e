/**
 * The Gateway Durable Object: holds the broker link, the live device table and the in-flight
 * jobs, chooses a device for each job, records the verified attestation of each answer (in its
 * own storage first, D1 shortly after: attestations/recorder.ts), and resolves the waiting HTTP
 * call. One instance per gateway id; shard by creating more ids (per region or model group),
 * which would first need a seq range per shard (see recorder.ts).
 */
import { DurableObject } from 'cloudflare:workers'
import {
  attestationToWire,
  checkOutputs,
  copyBytes,
  decodeFrames,
  compareVersions,
  DeviceStatusSchema,
  deviceJobsTopic,
  deviceStatusTopic,
  encodeFrame,
  FrameError,
  gatewayResultsTopic,
  inputCommitment,
  cutToLength,
  parseResultsTopic,
  HeartbeatSchema,
  parseDeviceTopic,
  PROTOCOL_VERSION,
  ResultHeaderSchema,
  TensorError,
  VerifiedBatchRoots,
  type DecodedFrame,
  type Hex,
  type JobHeader,
  type ModelDescriptor,
  type RawTensor,
  type ResultHeader,
  messageOf,
} from '@depinfer/shared'
import { bytesToHex } from 'viem'
import { DepinferError } from '../errors/base.js'
import { ModelFailedError, ModelRejectedInputError, NotFoundError } from '../errors/request.js'
import { AttestationStorageError, DevicesBusyError, DeviceTimeoutError, ModelNotReadyError, NoCapacityError } from '../errors/routing.js'
import { attestationDomain, nonNegativeVar, type Env } from '../env.js'
import { DeviceKeys } from '../attestations/device-keys.js'
import type { FlushReport } from '../attestations/outbox-flush.js'
import { AttestationRecorder } from '../attestations/recorder.js'
import { AttestationRejectedError, CLOCK_SKEW_MS, verifyResultAttestation, type ExpectedAttestation } from '../attestations/verify.js'
import type { StakeGate } from '../providers/device-stakes.js'
import { stakeGateFromEnv } from '../providers/registry-reader.js'
import { BrokerLink } from './broker-link.js'
import { buildCatalog, CatalogCache, catalogKey, entriesOf, FAILED_TO_LOAD, NOT_ROUTABLE, resolveModel, unservedBySize, versionsOf, type CatalogModel, type PublishedFile } from './catalog.js'
import { DeviceTable, serviceMsOf, type DeviceEntry } from './device-table.js'
import { hedgeAfterMs, hedgeBudgetFromEnv, type HedgeBudget } from './hedging.js'
import { inflightBudgetFromEnv, type InflightBudget } from './inflight-budget.js'
import { jobClassOf } from './round-trips.js'
import { JobEvents } from './job-events.js'
import { newJobId } from './job-id.js'
import { pickDevice } from './scheduler.js'
import { acceptedFileOn, routableView } from './served-file.js'
import { validateInputs } from './validate-inputs.js'
import { independentOf, spotCheck, spotCheckConfig, type CheckDevice, type DeviceRun, type SpotCheckConfig } from '../spot-checks/spot-check.js'
import { recordSpotCheck } from '../spot-checks/store.js'
import type {
  AcceptedVariant,
  GatewayHealth,
  InferJob,
  InferResult,
  ModelInfo,
  Outcome,
  RepositoryEntry,
} from './rpc.js'

/** Share of the job's deadline the first device gets before the retry on another. */
const FIRST_ATTEMPT_SHARE = 0.5
/** Devices a job is sent to, at most: the first and one retry, and one more when it was hedged (the hedge does not use up the retry). */
const MAX_ATTEMPTS = 2
/** Models remembered after their devices stop listing them (see buildCatalog), at most this many, oldest dropped first. */
const SEEN_MODELS_REMEMBERED = 1_000
/** Timed-out jobs remembered for a late answer (which clears the device), at most this many, this long. */
const TIMED_OUT_REMEMBERED = 10_000
const TIMED_OUT_REMEMBERED_MS = 10 * 60_000
const BROKER_CONNECT_TIMEOUT_MS = 3_000
/** Retry-After of a 503 for a model that failed to load on every device that has it. */
const FAILED_MODEL_RETRY_AFTER_SEC = 300
/** Retry-After of a 503 for a published model too large for devices serving every published model. */
const TOO_LARGE_RETRY_AFTER_SEC = 300
/** Spot checks running at once, at most, and the bytes of inputs and answers they may hold together. */
const MAX_SPOT_CHECKS_RUNNING = 32
const MAX_SPOT_CHECK_BYTES = 32 * 1024 * 1024
/** Refuted signing keys remembered, at most this many (oldest dropped first). */
const REFUTED_KEYS_REMEMBERED = 10_000
/** A checker's failure as recorded (its words are its own). */
const MAX_CHECK_FAILURE_CHARS = 300
/** Renew the broker connection before Cloudflare's 15-minute cap on one outbound socket. */
const RENEW_LINK_AFTER_MS = 13 * 60_000
const ALARM_EVERY_MS = 60_000
/** How long a device may be gone before the gateway forgets it (DEVICE_FORGET_AFTER_SEC): a day. */
const DEFAULT_FORGET_AFTER_SEC = 86_400
/** The job path's stake refresh runs at most this often; the alarm is the regular one. */
const STAKES_REFRESH_THROTTLE_MS = 1_000
/** The alarm also re-checks device stakes every DEVICE_STAKE_TTL_MS, but not more often than this. */
const MIN_ALARM_EVERY_MS = 500

/** One sending of a job to one device. */
interface Attempt {
  device: DeviceEntry
  /** What its round trip is measured as (round-trips.ts jobClassOf). */
  jobClass: string
  sentAt: number
  budgetMs: number
  /** Whether its timeout would count against the device (DeviceTable.timeoutWouldBeItsFault, asked at sending). */
  blameTimeout: boolean
  /** The broker link's epoch when it was sent, if the link was up: see the timeout's blame. */
  linkEpoch: number | undefined
  /** Until it is answered, times out, its device goes offline, or the job ends; counted in the device's inflight while open. */
  open: boolean
  timer: ReturnType<typeof setTimeout>
}

interface PendingJob {
  /** Each device the job was sent to, by id: an answer from any other is a stranger's. */
  attempts: Map<string, Attempt>
  events: JobEvents
}

export class Gateway extends DurableObject<Env> {
  readonly #table = new DeviceTable(Date.now)
  /** Every model devices have advertised since this object started, by catalogKey (see buildCatalog). */
  readonly #seenModels = new Map<string, ModelDescriptor>()
  /** Each attempt that timed out (its send time and job class), by `jobId/deviceId`, until its late answer or eviction (oldest first). */
  readonly #timedOut = new Map<string, Pick<Attempt, 'sentAt' | 'jobClass'>>()
  /**
   * Attempts still out when their job ended (a hedge's loser), by `jobId/deviceId`: the device
   * still has the job, so it stays in the device's load until it answers, goes offline, or the
   * attempt's budget ends (the scheduler simulation measured what forgetting it at once costs:
   * p99.9 1.6x, as the gateway piled jobs on devices it thought were free).
   */
  readonly #abandoned = new Map<string, Attempt>()
  readonly #jobs = new Map<string, PendingJob>()
  readonly #hedges: HedgeBudget
  readonly #link: BrokerLink
  readonly #keys = new DeviceKeys()
  /** Batch-signature roots already verified: the other jobs of a device's batch cost only their proof. */
  readonly #verifiedRoots = new VerifiedBatchRoots()
  readonly #attestations: AttestationRecorder
  /** Undefined without a ProviderRegistry: then every device with a key is routable. */
  readonly #stakes: StakeGate | undefined
  readonly #alarmEveryMs: number
  readonly #catalogCache: CatalogCache
  /** When the last background stake refresh started (they are throttled, see #refreshStakesInBackground). */
  #stakesRefreshStartedAt = 0
  /** Signing keys a spot check refuted, and until when they stay out (see #rememberRefutedKey). */
  readonly #refutedKeys = new Map<Hex, number>()
  readonly #spotChecks: SpotCheckConfig
  #spotChecksRunning = 0
  #spotCheckBytes = 0
  /** The inputs of the jobs in flight, per caller (MAX_INFLIGHT_BYTES). */
  readonly #inflight: InflightBudget

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env)
    this.#attestations = new AttestationRecorder(ctx.storage, env.DB)
    this.#stakes = stakeGateFromEnv(env)
    this.#spotChecks = spotCheckConfig(env)
    this.#hedges = hedgeBudgetFromEnv(env)
    this.#inflight = inflightBudgetFromEnv(env)
    this.#alarmEveryMs = Math.max(MIN_ALARM_EVERY_MS, Math.min(ALARM_EVERY_MS, this.#stakes?.ttlMs ?? ALARM_EVERY_MS))
    this.#catalogCache = new CatalogCache(
      this.#table,
      () => buildCatalog(this.#table, (device) => this.#refusal(device), this.#seenModels.values()),
      () => this.#stakes?.revision ?? 0,
      Date.now,
    )
    this.#link = new BrokerLink({
      url: env.BROKER_URL,
      username: env.BROKER_USERNAME,
      password: env.BROKER_PASSWORD,
      gatewayId: env.GATEWAY_ID,
      connectTimeoutMs: BROKER_CONNECT_TIMEOUT_MS,
      onConnect: () => this.#table.unconfirmAll(),
      onMessage: (topic, payload, retained) => this.#onMessage(topic, payload, retained),
    })
  }

  async health(): Promise<GatewayHealth> {
    const brokerConnected = await this.#link.ensure().then(() => true, () => false)
    return {
      brokerConnected,
      // Only devices that could get a job: an online but unstaked device serves nothing.
      devicesOnline: this.#table.online().filter((d) => !this.#table.isSuspect(d) && this.#refusal(d) === undefined).length,
    }
  }

  /** `variants`: those accepted for published versions, by model name; see model(). */
  async repository(variants: (AcceptedVariant & { name: string })[] = []): Promise<Outcome<RepositoryEntry[]>> {
    return this.#outcome(async () => {
      await this.#linkUp()
      this.#refreshStakesInBackground()
      return [...this.#catalog().values()].map((entry) => {
        const { state, reason } = routableView(entry, variants.filter((v) => v.name === entry.descriptor.name))
        const { descriptor, defining } = entry
        return { name: descriptor.name, version: descriptor.version, sha256: descriptor.sha256, defining, state, reason }
      })
    })
  }

  /**
   * `published`: the name's published versions (empty when nobody published it), see
   * resolveModel. `variants`: those accepted for them: the model is ready, and its devices
   * counted, only where a job could go (a device running an int8 file nobody accepted for the
   * version gets none, acceptedFileOn).
   */
  async model(name: string, version: string | undefined, published: PublishedFile[] = [], variants: AcceptedVariant[] = []): Promise<Outcome<ModelInfo>> {
    return this.#outcome(async () => {
      await this.#linkUp()
      this.#refreshStakesInBackground()
      const catalog = this.#catalog()
      const model = this.#resolve(catalog, name, version, published)
      const { descriptor } = model
      const routable = routableView(model, variants)
      return {
        name: descriptor.name,
        version: descriptor.version,
        versions: published.length > 0 ? published.map((p) => p.version).sort(compareVersions) : versionsOf(catalog, name).map((m) => m.descriptor.version),
        sha256: descriptor.sha256,
        platform: descriptor.platform,
        inputs: descriptor.inputs,
        outputs: descriptor.outputs,
        maxBatch: descriptor.maxBatch,
        state: routable.state,
        readyDevices: routable.readyDevices.length,
      }
    })
  }

  async infer(job: InferJob): Promise<Outcome<InferResult>> {
    return this.#outcome(async () => {
      await this.#linkUp()
      this.#refreshStakesInBackground()
      const model = this.#resolve(this.#catalog(), job.model, job.version, job.published)
      if (job.sha256 !== undefined && model.descriptor.sha256 !== job.sha256) {
        throw new NoCapacityError(
          `model ${job.model} version ${model.descriptor.version} is published as file sha256 ${job.sha256}, but devices serve ${model.descriptor.sha256} under that name`,
        )
      }
      validateInputs(model.descriptor, job.inputs, job.outputs)
      const release = this.#inflight.admit(job.account, job.inputs.reduce((bytes, t) => bytes + t.data.byteLength, 0))
      try {
        return await this.#dispatch(job, model)
      } finally {
        release()
      }
    })
  }

  /**
   * Moves the attestations recorded so far to D1 and waits: for readers of D1 that must see
   * every answered job (see gateway/flush-attestations.ts).
   */
  flushAttestations(): Promise<FlushReport> {
    return this.#attestations.flush()
  }

  /**
   * Forgets the devices gone for DEVICE_FORGET_AFTER_SEC (from the cron): off the device table and
   * the key cache, and their retained status cleared on the broker (an empty retained message),
   * which would otherwise bring them back at every reconnect of the link. Returns their ids.
   */
  async forgetGoneDevices(): Promise<string[]> {
    await this.#linkUp()
    const forgetAfterMs = nonNegativeVar(this.env.DEVICE_FORGET_AFTER_SEC, DEFAULT_FORGET_AFTER_SEC) * 1000
    const gone = this.#table.forgetGoneSince(Date.now() - forgetAfterMs)
    for (const deviceId of gone) {
      this.#keys.forget(deviceId)
      this.#link.publish(deviceStatusTopic(deviceId), new Uint8Array(0), { retain: true })
    }
    if (gone.length > 0) console.log(`forgot ${gone.length} device(s) gone for over ${forgetAfterMs / 1000} s: ${gone.slice(0, 10).join(', ')}${gone.length > 10 ? ', …' : ''}`)
    return gone
  }

  override async alarm(): Promise<void> {
    if (this.#link.connectionAgeMs(Date.now()) > RENEW_LINK_AFTER_MS) this.#link.renew()
    await this.ctx.storage.setAlarm(Date.now() + this.#alarmEveryMs)
    await Promise.all([
      // Retries a flush that failed (D1 unavailable) even when no new job starts one.
      this.#attestations.flush(),
      // The periodic stake re-check: an unstaked device stops getting jobs within about a TTL.
      this.#refreshStakes(),
    ])
  }

  async #linkUp(): Promise<void> {
    const wasSynced = this.#link.synced
    await this.#link.ensure()
    if (!wasSynced && (await this.ctx.storage.getAlarm()) === null) {
      await this.ctx.storage.setAlarm(Date.now() + this.#alarmEveryMs)
    }
  }

  /** The catalog of what can be routed now: online, not suspect, with a key, and staked (if required). */
  #catalog(): Map<string, CatalogModel> {
    return this.#catalogCache.get()
  }

  /**
   * Why this device may not get jobs: a key it does not prove to hold (with or without a stake
   * gate: it could only read the inputs and fail the jobs), or the stake gate's answer, from
   * cached answers only (no RPC).
   */
  #refusal(device: DeviceEntry): string | undefined {
    // The address of the key attestations are verified against, not the advertised `address`:
    // a device cannot borrow another's stake by naming its address.
    const address = this.#keys.keyOf(device.status)?.address
    if (address === undefined) return 'the device advertises no signing key it proves to hold'
    return this.#stakes?.refusal(address)
  }

  /** Re-checks stale stake answers of online devices; forgets those of devices gone from the table. */
  #refreshStakes(): Promise<void> {
    const stakes = this.#stakes
    if (!stakes) return Promise.resolve()
    const addressOf = (d: DeviceEntry) => this.#keys.keyOf(d.status)?.address
    stakes.retainOnly(this.#table.all().map(addressOf).filter((a) => a !== undefined))
    return stakes.refreshStale(this.#table.online().map(addressOf).filter((a) => a !== undefined))
  }

  /**
   * Starts the re-check of stale answers without waiting for it: this request is routed on the
   * answers already known (never a chain call on the job's path); the next sees the new ones.
   * A safety net for the alarm, which Cloudflare may delay. At most once per
   * STAKES_REFRESH_THROTTLE_MS (or TTL, if shorter): a refresh walks every device.
   */
  #refreshStakesInBackground(): void {
    if (!this.#stakes) return
    const now = Date.now()
    if (now - this.#stakesRefreshStartedAt < Math.min(STAKES_REFRESH_THROTTLE_MS, this.#stakes.ttlMs)) return
    this.#stakesRefreshStartedAt = now
    this.ctx.waitUntil(this.#refreshStakes())
  }

  #resolve(catalog: Map<string, CatalogModel>, name: string, version: string | undefined, published: readonly PublishedFile[] = []): CatalogModel {
    const model = resolveModel(catalog, name, version, published)
    if (model) return model
    if (published.length > 0) {
      // A published name: its published versions exist whether or not a device serves them.
      const versions = published.map((p) => p.version).sort(compareVersions)
      if (version !== undefined && !versions.includes(version)) {
        throw new NotFoundError(`model ${name} has no published version ${JSON.stringify(version)}; versions: ${versions.join(', ')}`, 'version')
      }
      const wanted = version ?? versions.at(-1)!
      const other = entriesOf(catalog, name, wanted)[0]
      const bySize = unservedBySize(published, wanted)
      throw new NoCapacityError(
        `no online device serves model ${name} version ${wanted}` +
          (other ? ` (devices serve sha256 ${other.descriptor.sha256} under that version, not its published file)` : '') +
          servedInstead(catalog, name, wanted, published) +
          bySize.note,
        bySize.retryMuchLater ? TOO_LARGE_RETRY_AFTER_SEC : undefined,
      )
    }
    const known = versionsOf(catalog, name)
    if (version !== undefined && known.length > 0) {
      throw new NotFoundError(
        `model ${name} has no version ${JSON.stringify(version)}; versions: ${known.map((m) => m.descriptor.version).join(', ')}`,
        'version',
      )
    }
    // Names are case-sensitive (and one owner may publish "my-model" beside "MY-MODEL"): point
    // at a served name that differs only in case, the likely typo.
    const lower = name.toLowerCase()
    const near = [...new Set([...catalog.values()].map((m) => m.descriptor.name))].filter((other) => other.toLowerCase() === lower)
    const hint = near.length > 0 ? ` (names are case-sensitive: ${near.map((other) => JSON.stringify(other)).join(' or ')} is served)` : ''
    throw new NotFoundError(`unknown model ${JSON.stringify(name)}${hint}`, 'model')
  }

  async #dispatch(job: InferJob, model: CatalogModel): Promise<InferResult> {
    const { descriptor } = model
    const jobId = newJobId()
    const { salt } = job
    const startedAt = Date.now()
    const expected: ExpectedAttestation = {
      jobId,
      modelHash: `0x${descriptor.sha256}`,
      inputHash: job.inputHash,
      // Reserved by the Worker against the payer's escrow (0 for a free job).
      price: job.priceWei,
      domain: attestationDomain(this.env),
      // The end is set when the answer is checked.
      completedAt: { notBeforeMs: startedAt - CLOCK_SKEW_MS, notAfterMs: startedAt + CLOCK_SKEW_MS },
    }
    const deadline = startedAt + job.deadlineMs
    const pending: PendingJob = { attempts: new Map(), events: new JobEvents() }
    this.#jobs.set(jobId, pending)
    const jobClass = classOfJob(job, descriptor)
    let hedgeTimer: ReturnType<typeof setTimeout> | undefined
    /** The first attempt, once it has been hedged: it is slow, and the job no longer waits on it alone. */
    let hedgedFirst: Attempt | undefined
    const maxAttempts = () => MAX_ATTEMPTS + (hedgedFirst ? 1 : 0)
    let lastFailure = ''
    let timedOut = false
    /** Whether every attempt that timed out had less time than its device could be expected to need. */
    let onlyTooShortBudgets = true
    /** A device's refusal of the input, while another device checks it (see invalid_input below). */
    let refused: { device: DeviceEntry; message: string; field: string } | undefined
    /** The attempts answered model_failed, and the last such answer. */
    let modelFailures = 0
    let modelFailed = ''

    /**
     * Sends the job to the best device it has not been sent to; false when there is none (or,
     * for a hedge, when the hedge budget is spent).
     */
    const sendToNext = (hedge: boolean): boolean => {
      // Only devices running the version's own file or a variant accepted for it (served-file.ts).
      const candidates = (resolveModel(this.#catalog(), descriptor.name, descriptor.version, job.published)
        ?.readyDevices ?? []).filter((d) => !pending.attempts.has(d.deviceId) && acceptedFileOn(d, descriptor, job.variants) !== undefined)
      if (candidates.length === 0 || (hedge && !this.#hedges.take())) return false
      // The first attempt's budget, as below: a queue past it means a timeout, then a retry.
      if (pending.attempts.size === 0) {
        const firstBudgetMs = (deadline - Date.now()) * (candidates.length === 1 ? 1 : FIRST_ATTEMPT_SHARE)
        refuseIfQueuesTooLong(this.#table, candidates, jobClass, firstBudgetMs, descriptor.name)
      }
      const device = pickDevice(candidates, (entry) => this.#table.expectedWaitMs(entry, jobClass), Math.random)!
      const number = pending.attempts.size + 1
      if (number === 1) this.#hedges.jobDispatched()
      const remainingMs = deadline - Date.now()
      // Half the deadline when another device could take the retry; all of it for the only one.
      // A hedge is not the last chance (a retry may follow it): it gets half of what is left.
      const lastChance = (!hedge && number >= maxAttempts()) || candidates.length === 1
      const budgetMs = Math.max(1, Math.floor(lastChance ? remainingMs : remainingMs * FIRST_ATTEMPT_SHARE))
      const attempt = this.#send(jobId, pending, number, device, job, descriptor, expected, salt, budgetMs, jobClass)
      // A first attempt is hedged once it is out twice this device's p95 for such jobs
      // (hedging.ts), if that comes before its budget ends (the retry then) and another device
      // could take it.
      const hedgeInMs = number === 1 && !lastChance ? hedgeAfterMs(device.roundTrips.of(jobClass)) : undefined
      if (hedgeInMs !== undefined && hedgeInMs < budgetMs) {
        hedgeTimer = setTimeout(() => pending.events.push({ kind: 'hedge', deviceId: attempt.device.deviceId }), hedgeInMs)
      }
      return true
    }
    const open = () => [...pending.attempts.values()].filter((a) => a.open)
    /** Whether the job needs another device now: nothing is out, or only the hedged-over first attempt is. */
    const needsAnother = () => {
      const out = open()
      return out.length === 0 || (out.length === 1 && out[0] === hedgedFirst)
    }

    try {
      for (;;) {
        // The first attempt, always (however little of a tiny timeout_ms is left: it then times
        // out as a 504, not a 503 saying no device serves the model); then the retry, while
        // attempts and time are left: after the last attempt failed, or after a hedge failed
        // while the first device is still slow (a dead hedge device must not leave the job
        // waiting on a frozen one).
        const outOfTime = pending.attempts.size > 0 && Date.now() >= deadline
        if (needsAnother() && (pending.attempts.size >= maxAttempts() || outOfTime || !sendToNext(false)) && open().length === 0) break
        const event = await pending.events.next()
        if (event.kind === 'hedge') {
          const first = pending.attempts.get(event.deviceId)!
          // Not while the broker link is down: the hedge would wait in the client's queue and
          // reach a device that has not subscribed again yet (lost); the retry covers that.
          if (first.open && pending.attempts.size === 1 && this.#link.synced && sendToNext(true)) hedgedFirst = first
          continue
        }
        // Events name only devices the job was sent to (#onResult, #onStatus, the timers).
        const attempt = pending.attempts.get(event.deviceId)!
        const { device } = attempt

        if (event.kind === 'result') {
          const { header, tensors } = event
          // A late *error* from a device whose attempt is over (e.g. it finally dropped the job
          // as past its budget) must not end the attempt running elsewhere; a late success may.
          if (header.error && !attempt.open) continue
          this.#closeAttempt(attempt)
          if (!header.error) {
            // The attestation must name the file that device runs (its variant, if accepted).
            const modelHash = `0x${acceptedFileOn(device, descriptor, job.variants) ?? descriptor.sha256}` as const
            const completedAt = { ...expected.completedAt, notAfterMs: Date.now() + CLOCK_SKEW_MS }
            const checked = this.#checkResult(device, header, tensors, { ...expected, modelHash, completedAt }, descriptor, job.outputs)
            if (typeof checked === 'string') {
              lastFailure = checked
              continue
            }
            // Timed from when the job went to the device that answered: a device that missed its
            // budget, or was hedged, and answers while another attempt runs is not credited with
            // the other's shorter time.
            this.#table.recordSuccess(device, Date.now() - attempt.sentAt, jobClass, serviceMsOf(header.timings))
            if (refused) {
              // The input it refused ran here: that device is broken or lying.
              this.#table.recordBadAttestation(refused.device)
              console.warn(`device ${refused.device.deviceId} refused job ${jobId}'s input, which ${device.deviceId} ran: ${refused.message}`)
            }
            // The job is answered: from here on, other devices' answers and losses are late ones
            // (#onLateResult, #onStatus), not events nobody reads while the write below waits.
            this.#endJob(jobId, pending)
            // Written to this object's own storage, not D1: workerd's output gate holds every
            // message the object sends, this RPC's answer included, until the write is
            // durable, so no answer leaves with an attestation that could still be lost.
            const seq = await this.#attestations.record({
              attestation: checked.attestation,
              signature: checked.signature,
              domain: expected.domain,
              deviceId: device.deviceId,
              ...(job.reservationId !== undefined && { reservationId: job.reservationId }),
            }).catch((error: unknown) => {
              throw new AttestationStorageError(`job ${jobId}: ${messageOf(error)}`, error)
            })
            // Copy each output out of the frame: cloning a view would ship the whole frame.
            const outputs = tensors.map((t) => ({ ...t, data: copyBytes(t.data) }))
            const attestation = attestationToWire(checked.attestation, checked.signature)
            this.#maybeSpotCheck(job, descriptor, modelHash.slice(2), {
              deviceId: device.deviceId, address: checked.attestation.device, jobId, salt: bytesToHex(salt), outputs, attestation,
            })
            return {
              jobId,
              deviceId: header.deviceId,
              modelName: descriptor.name,
              modelVersion: descriptor.version,
              outputs,
              attempts: pending.attempts.size,
              timings: { ...header.timings, gatewayMs: Date.now() - startedAt },
              attestation: { ...attestation, seq, salt: bytesToHex(salt) },
            }
          } else if (header.error.code === 'invalid_input') {
            // The model itself refused the input (the edge checked names, datatypes and shapes
            // already): the same on every device. But a device could say so of every job it
            // gets, in words of its own, at no cost; so another device, when there is one,
            // confirms it first (a bad input runs twice; a lie costs the liar its standing).
            // Two refusals, or one with nobody left to ask (after the loop), are the answer.
            const refusal = { device, message: header.error.message, field: header.error.field ?? 'inputs' }
            if (refused) throw new ModelRejectedInputError(refusal.message, refusal.field)
            refused = refusal
            lastFailure = `device ${header.deviceId} refused the input: ${header.error.message}`
          } else if (header.error.code === 'model_failed') {
            // The model's process failed here (this device's memory limit, a crash): another
            // device may run it (more memory), and nothing says this one did wrong. Not blamed:
            // a limit is the provider's choice, and counting it would let any key put devices
            // with less memory out of scheduling with one large input a minute (an audit).
            modelFailures++
            modelFailed = `device ${header.deviceId}: ${header.error.message}`
            lastFailure = `device ${header.deviceId} could not run the model on the input: ${header.error.message}`
          } else if (header.error.code === 'deadline_exceeded') {
            // The job waited in the device's queue past the budget it was sent with: a timeout
            // the device reported itself, blamed as one only where the budget was fair to it (a
            // caller's tiny timeout_ms under load is no fault of the device's, and would let any
            // key put devices out of scheduling), and answered 504 if it is the last word.
            if (attempt.blameTimeout) this.#table.recordFailure(device, jobClass)
            timedOut = true
            lastFailure = `device ${header.deviceId} failed (deadline_exceeded): ${header.error.message}`
          } else {
            this.#table.recordFailure(device, jobClass)
            lastFailure = `device ${header.deviceId} failed (${header.error.code}): ${header.error.message}`
          }
        } else if (event.kind === 'timeout') {
          if (!attempt.open) continue
          this.#closeAttempt(attempt)
          this.#timeoutCounts(attempt)
          if (!this.#table.budgetTooShort(device, attempt.budgetMs, jobClass)) onlyTooShortBudgets = false
          this.#rememberTimeout(jobId, attempt)
          timedOut = true
          lastFailure = `device ${device.deviceId} did not answer within ${attempt.budgetMs} ms`
        } else {
          if (!attempt.open) continue
          this.#closeAttempt(attempt)
          lastFailure = `device ${device.deviceId} went offline during the job`
        }
      }
    } finally {
      // Whatever happened, the job is over for this gateway: later answers are ignored, but a
      // hedged-over device's late success still counts as its (long) round trip (#onLateResult).
      clearTimeout(hedgeTimer)
      this.#endJob(jobId, pending)
    }

    // The device asked to confirm a refusal could not answer: the refusal stands.
    if (refused) throw new ModelRejectedInputError(refused.message, refused.field)
    const triedIds = [...pending.attempts.keys()].join(', ')
    if (modelFailures > 0 && modelFailures === pending.attempts.size) throw new ModelFailedError(`the model failed on this input on every device that tried it (${triedIds}); last: ${modelFailed}`)
    if (pending.attempts.size === 0) {
      throw model.state === 'LOADING'
        ? new ModelNotReadyError(`model ${descriptor.name} version ${descriptor.version} is still loading on every device that has it`)
        : new NoCapacityError(
            `no online device serves model ${descriptor.name} version ${descriptor.version}` +
              // Say why when devices are there but may not be routed to (e.g. not staked) or
              // cannot load it (e.g. an IR version their onnxruntime does not know).
              (model.reason.startsWith(NOT_ROUTABLE) || model.reason.startsWith(FAILED_TO_LOAD) ? `: ${model.reason}` : '') +
              servedInstead(this.#catalog(), descriptor.name, descriptor.version, job.published ?? []),
            // A load failure is for good until a provider changes something: asking again in 2 s
            // only repeats it.
            model.reason.startsWith(FAILED_TO_LOAD) ? FAILED_MODEL_RETRY_AFTER_SEC : undefined,
          )
    }
    if (timedOut) {
      // Every attempt had less time than its device takes: the deadline, not the devices, is
      // why. No Retry-After then: the same request would time out again (and run for nothing).
      if (onlyTooShortBudgets) {
        throw new DeviceTimeoutError(
          `job ${jobId} tried on ${triedIds}; last: ${lastFailure}, less than the model takes there: a longer parameters.timeout_ms (up to the edge's JOB_DEADLINE_MS) may let it finish`,
          null,
        )
      }
      throw new DeviceTimeoutError(`job ${jobId} tried on ${triedIds}; last: ${lastFailure}`)
    }
    throw new NoCapacityError(`job ${jobId} tried on ${triedIds}; last: ${lastFailure}`)
  }

  /**
   * With probability SPOT_CHECK_RATE, re-runs an answered job on other devices in the background
   * (spot-checks/spot-check.ts); a device the majority contradicts leaves scheduling
   * (DeviceTable.recordRefuted), and the verdict goes to D1. Never delays or changes the answer.
   */
  #maybeSpotCheck(job: InferJob, descriptor: ModelDescriptor, fileSha256: string, answer: Extract<DeviceRun, { outputs: RawTensor[] }>): void {
    if (this.#spotChecks.rate === 0 || Math.random() >= this.#spotChecks.rate) return
    // Each check holds its job's inputs and answer until its checkers answer: bounded in count
    // and in bytes (the object has 128 MB); a job beyond either is simply not checked.
    const bytes = [...job.inputs, ...answer.outputs].reduce((sum, t) => sum + t.data.byteLength, 0)
    if (this.#spotChecksRunning >= MAX_SPOT_CHECKS_RUNNING || this.#spotCheckBytes + bytes > MAX_SPOT_CHECK_BYTES) return
    this.#spotChecksRunning++
    this.#spotCheckBytes += bytes
    const check = async () => {
      const outcome = await spotCheck(answer, (excluded) => this.#runCheck(job, descriptor, fileSha256, excluded), this.#spotChecks.tolerance)
      if (!outcome) return
      // Out of scheduling by signing key, not only by device id: the same key could sit behind others.
      const runs = [answer, ...outcome.checks]
      for (const deviceId of outcome.faulty) {
        const address = runs.find((r) => r.deviceId === deviceId)?.address
        for (const entry of this.#table.all()) {
          if (entry.deviceId === deviceId || (address !== undefined && this.#keys.keyOf(entry.status)?.address === address)) {
            this.#table.recordRefuted(entry)
            if (address !== undefined) this.#rememberRefutedKey(address, entry.suspectUntil)
          }
        }
        console.warn(`spot check of job ${answer.jobId}: device ${deviceId} (${address}) contradicted by the majority (${outcome.verdict})`)
      }
      await recordSpotCheck(this.env.DB, {
        ...outcome,
        jobId: answer.jobId,
        model: { name: descriptor.name, version: descriptor.version, sha256: fileSha256 },
        answeredBy: { deviceId: answer.deviceId, address: answer.address, salt: answer.salt },
        checkedAt: Date.now(),
        ...(job.reservationId !== undefined && { reservationId: job.reservationId }),
      })
    }
    this.ctx.waitUntil(
      check()
        .catch((error: unknown) => console.warn(`spot check of job ${answer.jobId} not recorded: ${messageOf(error)}`))
        .finally(() => {
          this.#spotChecksRunning--
          this.#spotCheckBytes -= bytes
        }),
    )
  }

  /**
   * Runs `job` once more as a check, on a device serving the same file and independent of every
   * device in `excluded` (independentOf: id, signing key, provider where the registry says);
   * undefined when there is none. Chosen at random, not by the scheduler: which device checks
   * must not be predictable.
   */
  async #runCheck(job: InferJob, descriptor: ModelDescriptor, fileSha256: string, excluded: readonly CheckDevice[]): Promise<DeviceRun | undefined> {
    const providerOf = (address: Hex) => this.#stakes?.providerOf(address)
    const candidates = independentOf(
      (resolveModel(this.#catalog(), descriptor.name, descriptor.version, job.published)?.readyDevices ?? [])
        .filter((device) => acceptedFileOn(device, descriptor, job.variants) === fileSha256)
        .map((device) => ({ device, deviceId: device.deviceId, address: this.#keys.keyOf(device.status)?.address }))
        // Routable devices all hold a proven key (#refusal); the filter only satisfies the types.
        .filter((c): c is { device: DeviceEntry; deviceId: string; address: Hex } => c.address !== undefined)
        .map((c) => ({ ...c, provider: providerOf(c.address) })),
      excluded.map((e) => ({ ...e, provider: providerOf(e.address) })),
    )
    const chosen = candidates[Math.floor(Math.random() * candidates.length)]
    if (!chosen) return undefined
    const { device, address } = chosen
    // Fresh job id and salt, like any new job: nothing tells the device this one is a check.
    const jobId = newJobId()
    const salt = crypto.getRandomValues(new Uint8Array(32))
    const startedAt = Date.now()
    const expected: ExpectedAttestation = {
      jobId,
      modelHash: `0x${fileSha256}`,
      inputHash: inputCommitment(salt, job.inputs),
      price: job.priceWei,
      domain: attestationDomain(this.env),
      completedAt: { notBeforeMs: startedAt - CLOCK_SKEW_MS, notAfterMs: startedAt + CLOCK_SKEW_MS },
    }
    const who = { deviceId: device.deviceId, address, jobId, salt: bytesToHex(salt) }
    // The budget of a first attempt, as the job itself had.
    const budgetMs = Math.max(1, Math.floor(job.deadlineMs * FIRST_ATTEMPT_SHARE))
    // Device-written text goes to D1: cut to size.
    const failure = (reason: string) => ({ ...who, failure: cutToLength(reason, MAX_CHECK_FAILURE_CHARS) })
    const pending: PendingJob = { attempts: new Map(), events: new JobEvents() }
    this.#jobs.set(jobId, pending)
    try {
      const jobClass = classOfJob(job, descriptor)
      const attempt = this.#send(jobId, pending, 1, device, job, descriptor, expected, salt, budgetMs, jobClass)
      // Sent to one device, never hedged: the first event is its answer, its timeout or its loss.
      const event = await pending.events.next()
      this.#closeAttempt(attempt)
      if (event.kind === 'timeout') return failure(`did not answer within ${budgetMs} ms`)
      if (event.kind !== 'result') return failure('went offline during the check')
      const { header, tensors } = event
      if (header.error) return failure(`failed (${header.error.code}): ${header.error.message}`)
      const completedAt = { ...expected.completedAt, notAfterMs: Date.now() + CLOCK_SKEW_MS }
      const checked = this.#checkResult(device, header, tensors, { ...expected, completedAt }, descriptor, job.outputs)
      if (typeof checked === 'string') return failure(checked)
      this.#table.recordSuccess(device, Date.now() - startedAt, jobClass, serviceMsOf(header.timings))
      return { ...who, outputs: tensors, attestation: attestationToWire(checked.attestation, checked.signature) }
    } finally {
      this.#jobs.delete(jobId)
      for (const attempt of pending.attempts.values()) this.#closeAttempt(attempt)
    }
  }

  /**
   * The verified attestation of a successful result, or why it is refused: outputs that are not
   * the model's (names, datatypes), or an attestation that does not verify. A refusal
   * costs the device its standing at once (suspect, as after repeated failures): it is either
   * broken or dishonest, and neither should get the next job.
   */
  #checkResult(
    device: DeviceEntry,
    header: ResultHeader,
    tensors: RawTensor[],
    expected: ExpectedAttestation,
    model: ModelDescriptor,
    requestedOutputs: readonly string[],
  ): ReturnType<typeof verifyResultAttestation> | string {
    const key = this.#keys.keyOf(device.status)
    // Against the outputs this device itself advertises for the model: the catalog's entry came
    // from whichever device listed it first, and a rogue's listing must not make honest answers
    // look wrong.
    const advertised = device.status.models.find((m) => m.name === model.name && m.version === model.version && m.sha256 === model.sha256) ?? model
    const wrongOutputs = outputsProblem(advertised, requestedOutputs, tensors)
    try {
      if (wrongOutputs) throw new AttestationRejectedError(`its outputs are not the model's: ${wrongOutputs}`)
      if (!key) throw new AttestationRejectedError('the device advertises no signing key it proves to hold')
      return verifyResultAttestation(header.attestation, tensors, expected, key, this.#verifiedRoots)
    } catch (error) {
      if (!(error instanceof AttestationRejectedError)) throw error
      this.#table.recordBadAttestation(device)
      const reason = `device ${device.deviceId}'s result was discarded: ${error.message}`
      console.warn(reason)
      return reason
    }
  }

  /** Publishes the job to `device` as attempt number `number`; its timeout comes as an event after `budgetMs`. */
  #send(
    jobId: Hex,
    pending: PendingJob,
    number: number,
    device: DeviceEntry,
    job: InferJob,
    model: ModelDescriptor,
    expected: ExpectedAttestation,
    salt: Uint8Array,
    budgetMs: number,
    jobClass: string,
  ): Attempt {
    const header: JobHeader = {
      protocol: PROTOCOL_VERSION,
      jobId,
      replyTo: gatewayResultsTopic(this.env.GATEWAY_ID, device.deviceId),
      model: { name: model.name, version: model.version, sha256: model.sha256 },
      outputs: job.outputs,
      batchGroup: job.batchGroup,
      deadlineMs: budgetMs,
      attempt: number,
      attest: {
        chainId: expected.domain.chainId.toString(),
        verifyingContract: expected.domain.verifyingContract,
        salt: bytesToHex(salt),
        priceWei: expected.price.toString(),
      },
    }
    // Asked before the job counts in the device's load: what it was expected to take then.
    const blameTimeout = this.#table.timeoutWouldBeItsFault(device, budgetMs, jobClass)
    const { deviceId } = device
    // First, so that a publish that throws (no broker link) leaves no attempt counted.
    this.#link.publish(deviceJobsTopic(deviceId), encodeFrame(header, job.inputs))
    this.#table.jobSent(device, jobClass)
    const attempt: Attempt = {
      device,
      jobClass,
      sentAt: Date.now(),
      budgetMs,
      blameTimeout,
      linkEpoch: this.#link.synced ? this.#link.epoch : undefined,
      open: true,
      timer: setTimeout(() => pending.events.push({ kind: 'timeout', deviceId }), budgetMs),
    }
    pending.attempts.set(deviceId, attempt)
    return attempt
  }

  /**
   * The job is over for this gateway (idempotent): later answers are late ones. An attempt still
   * out stays counted in its device's load until it answers, goes offline or its budget ends
   * (see #abandoned); a budget that ends is a timeout like any other.
   */
  #endJob(jobId: string, pending: PendingJob): void {
    this.#jobs.delete(jobId)
    for (const attempt of pending.attempts.values()) {
      const key = `${jobId}/${attempt.device.deviceId}`
      if (!attempt.open || this.#abandoned.has(key)) continue
      clearTimeout(attempt.timer)
      attempt.timer = setTimeout(() => {
        if (!this.#closeAbandoned(key)) return
        this.#timeoutCounts(attempt)
        this.#rememberTimeout(jobId, attempt)
      }, Math.max(0, attempt.sentAt + attempt.budgetMs - Date.now()))
      this.#abandoned.set(key, attempt)
    }
    // Answers and losses that came in while the loop was busy with the winner are late ones
    // now: unread, a device that answered would be blamed for a timeout when its budget ends.
    for (const event of pending.events.drain()) {
      if (event.kind === 'result') this.#onLateResult(event.header)
      else if (event.kind === 'lost') this.#closeAbandoned(`${jobId}/${event.deviceId}`)
    }
  }

  /** Ends an abandoned attempt (its device answered or went offline, or its budget ended); false when there is none by that key. */
  #closeAbandoned(key: string): boolean {
    const attempt = this.#abandoned.get(key)
    if (!attempt) return false
    this.#abandoned.delete(key)
    this.#closeAttempt(attempt)
    return true
  }

  /**
   * An attempt's budget ended without an answer: a failure of its device when the budget was
   * fair to it, and only when the broker link stayed up from sending to now and carried
   * something in the second half of the budget (a broker host gone without closing the socket
   * looks up until the keepalive runs out): otherwise the job or its answer may have been lost
   * with the broker, and blaming every device busy at that moment put a whole fleet out for a
   * minute after a broker restart (soak audit).
   */
  #timeoutCounts(attempt: Attempt): void {
    const linkAlive = this.#link.synced && this.#link.epoch === attempt.linkEpoch && this.#link.lastPacketAt >= attempt.sentAt + attempt.budgetMs / 2
    if (attempt.blameTimeout && linkAlive) this.#table.recordFailure(attempt.device, attempt.jobClass)
  }

  /** The attempt no longer counts in its device's load (once, however it ended). */
  #closeAttempt(attempt: Attempt): void {
    if (!attempt.open) return
    attempt.open = false
    clearTimeout(attempt.timer)
    this.#table.jobClosed(attempt.device, attempt.jobClass)
  }

  #onMessage(topic: string, payload: Uint8Array, retained: boolean): void {
    const deviceTopic = parseDeviceTopic(topic)
    if (deviceTopic?.kind === 'status') return this.#onStatus(deviceTopic.deviceId, payload, retained)
    if (deviceTopic?.kind === 'heartbeat') {
      const heartbeat = HeartbeatSchema.safeParse(parseJson(payload))
      if (heartbeat.success) this.#table.applyHeartbeat(deviceTopic.deviceId, heartbeat.data)
      return
    }
    const results = parseResultsTopic(topic)
    // A retained result is a stale one the broker replays on every reconnect: only statuses
    // are meant to be retained.
    if (results?.gatewayId === this.env.GATEWAY_ID && !retained) this.#onResults(results.deviceId, payload)
  }

  #onStatus(deviceId: string, payload: Uint8Array, replayed: boolean): void {
    // An empty message clears a retained status (MQTT §3.3.1.3): a forgotten device's, see forgetGoneDevices.
    if (payload.byteLength === 0) return
    const status = DeviceStatusSchema.safeParse(parseJson(payload))
    // The status must be about the device whose topic it is on (the broker ACL enforces who
    // may publish there); anything else is ignored rather than trusted.
    if (!status.success || status.data.deviceId !== deviceId) {
      console.warn(`ignoring malformed status on ${deviceId}`)
      return
    }
    const entry = this.#table.applyStatus(status.data, replayed)
    for (const model of status.data.models) {
      const key = catalogKey(model.name, model.version, model.sha256)
      if (this.#seenModels.has(key)) continue
      if (this.#seenModels.size >= SEEN_MODELS_REMEMBERED) this.#seenModels.delete(this.#seenModels.keys().next().value!)
      this.#seenModels.set(key, model)
    }
    // Decode the key (and build its tables) now rather than on the first job's path.
    const key = status.data.online ? this.#keys.keyOf(status.data) : undefined
    const refutedUntil = key && this.#refutedKeys.get(key.address)
    if (refutedUntil) this.#table.refutedUntil(entry, refutedUntil)
    // A new (or changed) address is checked on-chain at once; a known one only once it is stale.
    if (key && this.#stakes) void this.#stakes.refreshStale([key.address])
    if (!status.data.online) {
      for (const pending of this.#jobs.values()) {
        if (pending.attempts.get(deviceId)?.open) pending.events.push({ kind: 'lost', deviceId })
      }
      for (const [key, attempt] of this.#abandoned) if (attempt.device.deviceId === deviceId) this.#closeAbandoned(key)
    }
  }

  /**
   * A message on `sender`'s results topic: one or more result frames (a device answers a batch
   * in one). The topic, which the broker lets only that device publish to, says who sent it.
   */
  #onResults(sender: string, payload: Uint8Array): void {
    try {
      // A malformed frame ends the message (one warning for it): its sender is broken or hostile.
      for (const frame of decodeFrames(payload)) if (!this.#onResult(sender, frame)) return
    } catch (error) {
      if (!(error instanceof FrameError)) throw error
      console.warn(`dropping undecodable result: ${messageOf(error)}`)
    }
  }

  /** Handles one result frame; false when it is malformed or not the sender's (then the rest of its message is dropped). */
  #onResult(sender: string, decoded: DecodedFrame): boolean {
    const header = ResultHeaderSchema.safeParse(decoded.header)
    if (!header.success) {
      console.warn(`dropping a malformed result header from ${sender}, and the rest of its message: ${cutToLength(header.error.message, 300)}`)
      return false
    }
    if (header.data.deviceId !== sender) {
      console.warn(`dropping a result from ${sender} in the name of ${header.data.deviceId}, and the rest of its message`)
      return false
    }
    const pending = this.#jobs.get(header.data.jobId)
    if (!pending) {
      this.#onLateResult(header.data)
      return true
    }
    // A device the job never went to is a stranger; which answers count is #dispatch's call.
    if (pending.attempts.has(sender)) pending.events.push({ kind: 'result', deviceId: sender, header: header.data, tensors: decoded.tensors })
    return true
  }

  /** Keys out of scheduling after a refutation, until when: a device coming back under another id with the key stays out. */
  #rememberRefutedKey(address: Hex, until: number): void {
    this.#refutedKeys.delete(address)
    if (this.#refutedKeys.size >= REFUTED_KEYS_REMEMBERED) this.#refutedKeys.delete(this.#refutedKeys.keys().next().value!)
    this.#refutedKeys.set(address, until)
  }

  #rememberTimeout(jobId: string, { device, sentAt, jobClass }: Attempt): void {
    if (this.#timedOut.size >= TIMED_OUT_REMEMBERED) this.#timedOut.delete(this.#timedOut.keys().next().value!)
    this.#timedOut.set(`${jobId}/${device.deviceId}`, { sentAt, jobClass })
  }

  /**
   * An answer to a job that is over here. From a device the job was still out on when another
   * device's answer ended it (a hedge's loser), it ends that attempt, and a success is the
   * device's round trip. When it is the successful answer of a device the job timed out on, the
   * device was slow, not gone: the answer's round trip feeds its latency (so
   * the scheduler avoids it while it is slow) and the failure is forgiven. Otherwise a duplicate.
   */
  #onLateResult(header: ResultHeader): void {
    const key = `${header.jobId}/${header.deviceId}`
    const abandoned = this.#abandoned.get(key)
    if (abandoned && this.#closeAbandoned(key)) {
      if (!header.error) this.#table.recordSuccess(abandoned.device, Date.now() - abandoned.sentAt, abandoned.jobClass, serviceMsOf(header.timings))
      return
    }
    const timedOut = this.#timedOut.get(key)
    if (timedOut === undefined || header.error) return
    this.#timedOut.delete(key)
    const entry = this.#table.get(header.deviceId)
    const roundTripMs = Date.now() - timedOut.sentAt
    if (entry && roundTripMs < TIMED_OUT_REMEMBERED_MS) this.#table.recordLateAnswer(entry, roundTripMs, timedOut.jobClass, serviceMsOf(header.timings))
  }

  /** Runs an RPC body, turning known errors into problems (RPC cannot carry error classes). */
  async #outcome<T>(body: () => Promise<T>): Promise<Outcome<T>> {
    try {
      return { ok: true, value: await body() }
    } catch (error) {
      if (error instanceof DepinferError) return { ok: false, problem: error.toProblem() }
      throw error
    }
  }
}

/** Why a device's outputs are not what the model answers (shared checkOutputs), or undefined. */
function outputsProblem(model: ModelDescriptor, requested: readonly string[], outputs: readonly RawTensor[]): string | undefined {
  try {
    checkOutputs(model.name, model.outputs, requested, outputs)
    return undefined
  } catch (error) {
    if (error instanceof TensorError) return error.message
    throw error
  }
}

/**
 * For a caller pinned to a published version no device serves (any more: providers serving
 * "the newest" moved on), the versions of the name it can have instead, so it does not retry in
 * vain: "; devices serve versions 2, 3 of it", or nothing.
 */
function servedInstead(catalog: Map<string, CatalogModel>, name: string, wanted: string, published: readonly PublishedFile[]): string {
  const served = published
    .map((p) => p.version)
    .sort(compareVersions)
    .filter((v) => v !== wanted && resolveModel(catalog, name, v, published)?.state === 'READY')
  return served.length > 0 ? `; devices serve version${served.length > 1 ? 's' : ''} ${served.join(', ')} of it` : ''
}

/** What the job's round trips are measured as, on any device (round-trips.ts jobClassOf). */
const classOfJob = (job: InferJob, model: ModelDescriptor) =>
  jobClassOf(model.sha256, job.inputs.reduce((bytes, t) => bytes + t.data.byteLength, 0))

function parseJson(payload: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(payload))
  } catch {
    return undefined
  }
}

/**
 * Admission: refuses a new job (DevicesBusyError, 503) when every device that could run it has a
 * queue it would wait in past its first attempt's budget (`budgetMs`: its deadline, or half of
 * it when another device could take a retry), at the device's own time per job of each kind
 * queued there (DeviceTable.queueEstimate). A burst of 200 detector jobs at one device otherwise
 * waited, 74 of them the whole 30 s, for a 504, while the device spent time on jobs nobody would
 * wait for. Admitted whenever a device has no such figures yet, or has room, or would miss the
 * budget even with no queue (a deadline too short for the model: that stays the 504 it was).
 */
function refuseIfQueuesTooLong(table: DeviceTable, candidates: readonly DeviceEntry[], jobClass: string, budgetMs: number, model: string): void {
  let shortestMs = Number.POSITIVE_INFINITY
  for (const device of candidates) {
    const estimate = table.queueEstimate(device, jobClass)
    if (!estimate || estimate.perJobMs > budgetMs || estimate.waitMs + estimate.perJobMs <= budgetMs) return
    shortestMs = Math.min(shortestMs, estimate.waitMs + estimate.perJobMs)
  }
  const retryAfterSec = Math.min(60, Math.max(1, Math.ceil((shortestMs - budgetMs) / 1000)))
  throw new DevicesBusyError(
    `every device serving ${model} has a queue: with this job the shortest would take about ${(shortestMs / 1000).toFixed(1)} s, past the ${(budgetMs / 1000).toFixed(1)} s the job could wait there; try again later, or with a longer parameters.timeout_ms`,
    retryAfterSec,
  )
}
