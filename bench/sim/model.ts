/**
 * The simulated world that does not depend on the scheduling policy: the fleet (speeds, network
 * distances, when each device fails and when it is throttled) and the request arrivals. Built
 * once per seed and shared by every policy, so policies are compared on exactly the same
 * devices, outages, throttling spells and requests (common random numbers).
 */
import { DEFAULT_HEDGE_RATE } from '../../edge/src/gateway/hedging.js'
import { deriveSeed, Rng } from './rng.js'

export interface SimConfig {
  seed: number
  devices: number
  jobs: number
  /** Offered load as a share of the fleet's expected available capacity (after outages and throttling). */
  load: number
  /** Gateways sharing the fleet, each with its own device table (1 = one Durable Object). */
  gateways: number
  /** Mean service time per job, log-uniform over [min, max] across devices (a 10x spread). */
  serviceMinMs: number
  serviceMaxMs: number
  /** Per-job service-time noise (lognormal sigma, mean 1). */
  serviceNoiseSigma: number
  /** One-way gateway↔device delay: each device has a base (lognormal, median, sigma, clamped)… */
  netMedianMs: number
  netSigma: number
  netMinMs: number
  netMaxMs: number
  /** …and each message varies around it (lognormal sigma, mean 1). */
  netJitterSigma: number
  /** Failures: mean up time of a device between outages, and mean outage length (both exponential). */
  mtbfMs: number
  outageMeanMs: number
  /** Thermal throttling: mean time between spells, mean spell length, slowdown factor range. */
  throttleEveryMs: number
  throttleMeanMs: number
  throttleMin: number
  throttleMax: number
  /** Device agent heartbeat interval (device-agent config `heartbeatSec`, default 2 s). */
  heartbeatMs: number
  /** MQTT keepalive (device-agent default 10 s): the broker publishes the will 1.5x after the last packet. */
  keepaliveMs: number
  /** Job deadline (edge/src/routes/v2.ts DEFAULT_DEADLINE_MS). */
  deadlineMs: number
  /** Jobs arriving before this are run but not measured (the gateway starts knowing nothing). */
  warmupMs: number
  /** Bursts (a two-state Markov-modulated Poisson process): mean dwell times and the burst's rate ratio. */
  calmMeanMs: number
  burstMeanMs: number
  burstRatio: number
  /** A slow wave over the whole run (a compressed day): rate × (1 + amplitude·sin). */
  waveAmplitude: number
  /**
   * What the gateway feeds DeviceTable.recordSuccess: the round trip gateway.ts measures (send to
   * answer, so queueing and the network count), or, as an experiment, the job's service time
   * from the result's `timings.inferMs`.
   */
  ewmaInput: 'round-trip' | 'service'
  /** The gateway's HEDGE_RATE (edge/src/gateway/hedging.ts): hedges per job at most; 0 never hedges. */
  hedgeRate: number
  /**
   * The models jobs ask for: each job runs one, drawn by share; its service time is the device's
   * times the model's factor. One model by default; several give the gateway several job classes.
   */
  models: SimModel[]
  /**
   * How much longer a device's first job of a model takes after the agent (re)starts, as
   * onnxruntime's first run of a session does (allocations, kernel selection). 1 = none.
   */
  coldStartFactor: number
}

export interface SimModel {
  /** Share of the jobs (normalised over all models). */
  share: number
  /** Service time relative to the device's base time. */
  serviceFactor: number
}

export const DEFAULT_CONFIG: SimConfig = {
  seed: 42,
  devices: 1000,
  jobs: 500_000,
  load: 0.75,
  gateways: 1,
  serviceMinMs: 20,
  serviceMaxMs: 200,
  serviceNoiseSigma: 0.3,
  netMedianMs: 5,
  netSigma: 0.7,
  netMinMs: 1,
  netMaxMs: 20,
  netJitterSigma: 0.3,
  mtbfMs: 20 * 60_000,
  outageMeanMs: 20_000,
  throttleEveryMs: 5 * 60_000,
  throttleMeanMs: 15_000,
  throttleMin: 3,
  throttleMax: 5,
  heartbeatMs: 2_000,
  keepaliveMs: 10_000,
  deadlineMs: 30_000,
  warmupMs: 5_000,
  calmMeanMs: 4_000,
  burstMeanMs: 500,
  burstRatio: 1.25,
  waveAmplitude: 0.1,
  ewmaInput: 'round-trip',
  hedgeRate: DEFAULT_HEDGE_RATE,
  models: [{ share: 1, serviceFactor: 1 }],
  coldStartFactor: 1,
}

/** The mean service factor of a job (the models' factors weighted by share). */
export const meanServiceFactor = (models: readonly SimModel[]): number =>
  models.reduce((sum, m) => sum + m.share * m.serviceFactor, 0) / models.reduce((sum, m) => sum + m.share, 0)

/** A span of time on one device, [start, end). */
export interface Spell {
  start: number
  end: number
  /** Service-time multiplier while throttled (1 for outages). */
  factor: number
}

export interface DeviceSpec {
  /** Mean service time per job when not throttled, ms. */
  baseMs: number
  /** Mean one-way network delay to the gateway, ms. */
  netMs: number
  /** Outages, in time order. A device down at time 0 has an outage starting at 0. */
  outages: Spell[]
  /** Throttling spells, in time order. */
  throttles: Spell[]
}

export interface Fleet {
  devices: DeviceSpec[]
  /** Expected available capacity of the whole fleet, jobs per ms (jobs of the models' mean service factor). */
  capacityPerMs: number
}

/** Random streams of one seed; each concern has its own, so changing one does not shift the others. */
export const STREAM = { fleet: 1, schedule: 2, arrivals: 3, noise: 4, policy: 5, models: 6 } as const

/** Expected value of 1/f for f uniform on [a, b]: how much of a throttled device's capacity is left. */
const meanInverse = (a: number, b: number) => (a === b ? 1 / a : Math.log(b / a) / (b - a))

export function buildFleet(config: SimConfig): Fleet {
  const rng = new Rng(deriveSeed(config.seed, STREAM.fleet))
  const schedule = new Rng(deriveSeed(config.seed, STREAM.schedule))
  const availability = config.mtbfMs / (config.mtbfMs + config.outageMeanMs)
  const throttledShare = config.throttleMeanMs / (config.throttleEveryMs + config.throttleMeanMs)
  const throttledCapacity = meanInverse(config.throttleMin, config.throttleMax)
  const capacityShare = availability * (1 - throttledShare + throttledShare * throttledCapacity)

  const speeds: Array<{ baseMs: number; netMs: number }> = []
  let capacityPerMs = 0
  for (let i = 0; i < config.devices; i++) {
    const baseMs = rng.logUniform(config.serviceMinMs, config.serviceMaxMs)
    const netMs = Math.min(config.netMaxMs, Math.max(config.netMinMs, config.netMedianMs * Math.exp(config.netSigma * rng.normal())))
    speeds.push({ baseMs, netMs })
    capacityPerMs += capacityShare / baseMs
  }
  capacityPerMs /= meanServiceFactor(config.models)
  // Spells are drawn far enough ahead to cover the arrivals (with room for the bursts and the
  // wave) and the last jobs' deadlines; past the horizon devices simply stay up and cool.
  const horizonMs = (1.5 * config.jobs) / (config.load * capacityPerMs) + 2 * config.deadlineMs + 60_000
  const devices = speeds.map(({ baseMs, netMs }): DeviceSpec => {
    // Both processes start in their stationary state (exponential spells are memoryless), so
    // there is no failure-free honeymoon at the start of the run.
    const outages = alternatingSpells(schedule, horizonMs, config.mtbfMs, config.outageMeanMs, () => 1)
    const throttles = alternatingSpells(schedule, horizonMs, config.throttleEveryMs, config.throttleMeanMs, () =>
      schedule.uniform(config.throttleMin, config.throttleMax),
    )
    return { baseMs, netMs, outages, throttles }
  })
  return { devices, capacityPerMs }
}

/** On/off spells up to the horizon: off for exp(offMean), then on for exp(onMean), and so on. */
function alternatingSpells(rng: Rng, horizonMs: number, offMean: number, onMean: number, factor: () => number): Spell[] {
  const spells: Spell[] = []
  let t = 0
  if (rng.next() < onMean / (offMean + onMean)) {
    // In a spell at time 0: it lasts a fresh exponential (memorylessness).
    const end = rng.exp(onMean)
    spells.push({ start: 0, end, factor: factor() })
    t = end
  }
  while (t < horizonMs) {
    const start = t + rng.exp(offMean)
    if (start >= horizonMs) break
    const end = start + rng.exp(onMean)
    spells.push({ start, end, factor: factor() })
    t = end
  }
  return spells
}

export interface Arrivals {
  /** Arrival times in ms, ascending. */
  times: Float64Array
  /** Which gateway receives each job. */
  gateway: Uint16Array
  /** Which model (index into SimConfig.models) each job runs. */
  model: Uint8Array
  meanRatePerMs: number
}

/**
 * Poisson arrivals whose rate follows a two-state Markov modulation (calm / burst) times a slow
 * sine wave over the run, normalised so the long-run mean is `load × capacity`. Generated by
 * thinning a Poisson process at the peak rate, which is exact for a time-varying rate.
 */
export function buildArrivals(config: SimConfig, capacityPerMs: number): Arrivals {
  const rng = new Rng(deriveSeed(config.seed, STREAM.arrivals))
  // Its own stream: adding models leaves the arrival times of a seed as they were.
  const models = new Rng(deriveSeed(config.seed, STREAM.models))
  const totalShare = config.models.reduce((sum, m) => sum + m.share, 0)
  const drawModel = () => {
    let x = models.next() * totalShare
    for (let m = 0; m < config.models.length - 1; m++) {
      x -= config.models[m]!.share
      if (x < 0) return m
    }
    return config.models.length - 1
  }
  const meanRate = config.load * capacityPerMs
  const burstShare = config.burstMeanMs / (config.burstMeanMs + config.calmMeanMs)
  const calmRate = meanRate / (1 - burstShare + burstShare * config.burstRatio)
  const burstRate = calmRate * config.burstRatio
  const periodMs = config.jobs / meanRate // one wave over the expected length of the run
  const peak = burstRate * (1 + config.waveAmplitude)

  const times = new Float64Array(config.jobs)
  const gateway = new Uint16Array(config.jobs)
  const model = new Uint8Array(config.jobs)
  let bursting = rng.next() < burstShare
  let switchAt = rng.exp(bursting ? config.burstMeanMs : config.calmMeanMs)
  let t = 0
  for (let n = 0; n < config.jobs; ) {
    t += rng.exp(1 / peak)
    while (t >= switchAt) {
      bursting = !bursting
      switchAt += rng.exp(bursting ? config.burstMeanMs : config.calmMeanMs)
    }
    const rate = (bursting ? burstRate : calmRate) * (1 + config.waveAmplitude * Math.sin((2 * Math.PI * t) / periodMs))
    if (rng.next() * peak < rate) {
      times[n] = t
      gateway[n] = config.gateways > 1 ? rng.int(config.gateways) : 0
      if (config.models.length > 1) model[n] = drawModel()
      n++
    }
  }
  return { times, gateway, model, meanRatePerMs: meanRate }
}
