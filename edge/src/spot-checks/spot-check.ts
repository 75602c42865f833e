/**
 * Spot checks (re-execution): a device's attestation proves what it *says* it computed, not that
 * it ran the model. A device that answers zeros, or a cheaper model's guess, signs as well as an
 * honest one. So after a share of answered jobs (SPOT_CHECK_RATE) the Gateway runs the same
 * input on another device, chosen at random among the independent ones serving the same file
 * (independentOf); when the two disagree, a third decides. The device the majority contradicts
 * is taken out of scheduling (DeviceTable.recordRefuted, by its signing key) and the verdict,
 * with every device's signed attestation, is kept in D1 (store.ts) as evidence for the
 * operator, who may slash its provider's stake.
 *
 * A check job looks like any other job to the device running it (fresh job id and salt, the same
 * price, batch group and outputs), so a device cannot answer checks honestly and the rest not. It
 * is unpaid: its attestation is verified but not recorded or batched, and no one is charged.
 * Devices cannot copy each other's answers: each answers on a results topic only the Gateway
 * reads (the broker ACL), so no commit–reveal round is needed.
 */
import type { AttestationWire, Hex, RawTensor } from '@depinfer/shared'
import { nonNegativeVar } from '../env.js'
import { compareOutputs, type Tolerance } from './compare-outputs.js'

export type SpotCheckVerdict =
  /** A second device (or the tie-breaker) agrees with the answer. */
  | 'confirmed'
  /** Two devices agree with each other and not with the answer: the answering device is faulty. */
  | 'refuted'
  /** No majority: a checker failed, or no third device could break a tie, or all three differ. */
  | 'inconclusive'

/** A device as a check sees it: its id and the address of its signing key. */
export interface CheckDevice {
  deviceId: string
  address: Hex
}

/** A device that could run a check, with its provider when the ProviderRegistry says. */
export interface CheckCandidate extends CheckDevice {
  provider?: Hex | undefined
}

/**
 * The candidates independent of every device in `excluded`: none of them by id, by signing key
 * (one key can sit behind several device ids) or, where known, by provider (a provider's devices
 * would vouch for each other's answers, and two of them could outvote an honest device).
 */
export function independentOf<T extends CheckCandidate>(candidates: readonly T[], excluded: readonly CheckCandidate[]): T[] {
  const providers = new Set(excluded.map((e) => e.provider).filter((p) => p !== undefined))
  return candidates.filter(
    (c) => !excluded.some((e) => e.deviceId === c.deviceId || e.address === c.address) && (c.provider === undefined || !providers.has(c.provider)),
  )
}

/**
 * What a device gave for the job (under its own job id and input salt, which with the inputs
 * open its attestation's input commitment): its outputs and signed attestation, or why it gave none.
 */
export type DeviceRun = CheckDevice & { jobId: Hex; salt: Hex } & ({ outputs: RawTensor[]; attestation: AttestationWire } | { failure: string })

/** One checker's run as recorded: agreement with the answer, or its failure. */
export interface CheckRecord {
  deviceId: string
  address: Hex
  jobId: Hex
  salt: Hex
  /** Undefined when the device gave no answer (`failure`). */
  agreesWithAnswer?: boolean
  /** How it differs from the answer, or why it failed. */
  detail?: string
  attestation?: AttestationWire
}

export interface SpotCheckOutcome {
  verdict: SpotCheckVerdict
  /** Device ids the majority contradicts (the answering device or the first checker). */
  faulty: string[]
  checks: CheckRecord[]
}

/**
 * Checks `answer` by running its job on other devices: `runElsewhere(excluded)` runs it on a
 * device independent of all of `excluded` (independentOf) and resolves undefined when there is
 * none. Undefined: no other device could run it at all (nothing to record).
 */
export async function spotCheck(
  answer: Extract<DeviceRun, { outputs: RawTensor[] }>,
  runElsewhere: (excluded: readonly CheckDevice[]) => Promise<DeviceRun | undefined>,
  tolerance: Tolerance,
): Promise<SpotCheckOutcome | undefined> {
  const second = await runElsewhere([answer])
  if (!second) return undefined
  if (!('outputs' in second)) return { verdict: 'inconclusive', faulty: [], checks: [failed(second)] }
  const secondAgreement = compareOutputs(answer.outputs, second.outputs, tolerance)
  const secondCheck = checkRecord(second, secondAgreement.agree, secondAgreement.agree ? undefined : secondAgreement.detail)
  if (secondAgreement.agree) return { verdict: 'confirmed', faulty: [], checks: [secondCheck] }

  const third = await runElsewhere([answer, second])
  if (!third) return { verdict: 'inconclusive', faulty: [], checks: [secondCheck] }
  if (!('outputs' in third)) return { verdict: 'inconclusive', faulty: [], checks: [secondCheck, failed(third)] }
  const withAnswer = compareOutputs(answer.outputs, third.outputs, tolerance)
  const withSecond = compareOutputs(second.outputs, third.outputs, tolerance)
  const thirdCheck = checkRecord(third, withAnswer.agree, withAnswer.agree ? undefined : withAnswer.detail)
  const checks = [secondCheck, thirdCheck]
  if (withAnswer.agree && !withSecond.agree) return { verdict: 'confirmed', faulty: [second.deviceId], checks }
  if (withSecond.agree && !withAnswer.agree) return { verdict: 'refuted', faulty: [answer.deviceId], checks }
  // All three differ (a model that is not deterministic, or two faulty devices), or the third
  // lies within tolerance of both: no majority to act on.
  return { verdict: 'inconclusive', faulty: [], checks }
}

function checkRecord(run: Extract<DeviceRun, { outputs: RawTensor[] }>, agrees: boolean, detail: string | undefined): CheckRecord {
  return {
    deviceId: run.deviceId,
    address: run.address,
    jobId: run.jobId,
    salt: run.salt,
    agreesWithAnswer: agrees,
    ...(detail !== undefined && { detail }),
    attestation: run.attestation,
  }
}

function failed(run: Extract<DeviceRun, { failure: string }>): CheckRecord {
  return { deviceId: run.deviceId, address: run.address, jobId: run.jobId, salt: run.salt, detail: run.failure }
}

/** The spot-check settings from the Worker's variables (wrangler.toml [vars]). */
export interface SpotCheckConfig {
  /** Share of answered jobs checked, 0 to 1. */
  rate: number
  tolerance: Tolerance
}

const DEFAULT_SPOT_CHECK_RATE = 0.01
const DEFAULT_TOLERANCE: Tolerance = { absolute: 1e-3, relative: 1e-2 }

/** Reads SPOT_CHECK_RATE / SPOT_CHECK_ABS_TOLERANCE / SPOT_CHECK_REL_TOLERANCE; a value out of range keeps the default, with a warning. */
export function spotCheckConfig(env: { SPOT_CHECK_RATE?: string; SPOT_CHECK_ABS_TOLERANCE?: string; SPOT_CHECK_REL_TOLERANCE?: string }): SpotCheckConfig {
  const read = (name: keyof typeof env, fallback: number, max?: number) =>
    nonNegativeVar(env[name], fallback, max, () => console.warn(`${name}=${JSON.stringify(env[name])} is not a number from 0 to ${max ?? 'any'}; using ${fallback}`))
  return {
    rate: read('SPOT_CHECK_RATE', DEFAULT_SPOT_CHECK_RATE, 1),
    tolerance: {
      absolute: read('SPOT_CHECK_ABS_TOLERANCE', DEFAULT_TOLERANCE.absolute),
      relative: read('SPOT_CHECK_REL_TOLERANCE', DEFAULT_TOLERANCE.relative),
    },
  }
}
