/**
 * The Worker's side of paying for one inference: price the job, and for a priced job hold its
 * price against the key's payer before anything is sent to a device. The caller sends the job
 * with `priceWei` / `reservationId` and calls `release()` when it fails; a job that succeeds is
 * charged in the D1 transaction that stores its attestation (see attestations/outbox-flush.ts).
 */
import { messageOf, type Hex } from '@depinfer/shared'
import type { Env } from '../env.js'
import { PaymentRequiredError, PriceAboveLimitError } from '../errors/payment.js'
import { availableBalance, escrowAccount } from './balances.js'
import { paymentsSetting, type PaymentsConfig } from './config.js'
import { quoteJob, type JobQuote } from './pricing.js'
import { payerHolds, release, reserve } from './reservations.js'

/**
 * A reservation still `reserved` this long after its job's deadline was abandoned (the Worker
 * died mid-job): the cron tick releases it. The Gateway accepts an answer at most a moment after
 * the job's deadline, which it counts from when it got the job; the margin also covers the time
 * between reserving and sending (the balance read's and D1's round trips), so a minute is ample.
 * The answered job is charged later, when its attestation leaves the Gateway's outbox for D1;
 * the cron tick flushes that outbox before it releases anything (index.ts `scheduled`).
 */
const RESERVATION_MARGIN_MS = 60_000

export interface PaidJob {
  priceWei: bigint
  reservationId: string | undefined
  /** The version to send the job for (pinned when the price depended on it). */
  version: string | undefined
  sha256: string | undefined
  /** Releases the reservation of a job that failed (no-op for a free or a charged job). */
  release(): Promise<void>
}

export interface HoldRequest {
  payer: Hex | null
  apiKeyLabel: string
  model: string
  version: string | undefined
  deadlineMs: number
  /** Which version the gateway would serve for `model` (asked only when the price depends on it). */
  resolveVersion: () => Promise<string>
  /** The most the caller will pay (`parameters.max_price_wei`); a dearer job is refused, nothing held. */
  maxPriceWei: bigint | undefined
}

const free = (version: string | undefined, sha256?: string): PaidJob => ({
  priceWei: 0n,
  reservationId: undefined,
  version,
  sha256,
  release: async () => {},
})

export async function holdPayment(env: Env, request: HoldRequest, now = Date.now): Promise<PaidJob> {
  const setting = paymentsSetting(env)
  if (!setting.enabled) return free(request.version)
  const { config } = setting
  const quote = await quoteJob(env.DB, config, request.model, request.version, request.resolveVersion, now())
  const label = `model ${request.model}${quote.version === undefined ? '' : ` version ${quote.version}`}`
  if (request.maxPriceWei !== undefined && quote.totalWei > request.maxPriceWei) {
    throw new PriceAboveLimitError(`${label} costs ${quote.totalWei} wei per inference, more than parameters.max_price_wei (${request.maxPriceWei}): nothing was sent or held`)
  }
  // Pinned to the version (and file) the quote was for, as a priced job is: a priced version
  // becoming ready meanwhile must not run for free under this quote.
  if (quote.totalWei === 0n) return free(quote.version, quote.sha256)
  if (request.payer === null) {
    throw new PaymentRequiredError(
      `${label} costs ${quote.totalWei} wei per inference and this API key has no payer: use a key created with a payer address (npm run key:create -- <label> --payer 0x…) that has deposited into the Escrow at ${config.escrow}`,
      'Authorization',
    )
  }
  const id = crypto.randomUUID()
  const createdAt = now()
  const reservation = {
    id,
    payer: request.payer,
    price: quote,
    modelName: request.model,
    // '' = the newest version (the price did not depend on which one).
    modelVersion: quote.version ?? '',
    apiKeyLabel: request.apiKeyLabel,
    createdAt,
    expiresAt: createdAt + request.deadlineMs + RESERVATION_MARGIN_MS,
  }
  let balance = await availableBalance(config, request.payer, false)
  let held = await reserve(env.DB, reservation, balance)
  if (!held && balance.readAt < createdAt) {
    // The cached balance may predate a deposit made a moment ago: look again before refusing.
    balance = await availableBalance(config, request.payer, true)
    held = await reserve(env.DB, reservation, balance)
  }
  if (!held) throw await insufficientFunds(env.DB, config, request.payer, label, quote, balance.available)
  return {
    priceWei: quote.totalWei,
    reservationId: id,
    version: quote.version,
    sha256: quote.sha256,
    release: () =>
      release(env.DB, id).catch((error: unknown) => {
        // Not fatal: the cron tick releases it once it expires.
        console.warn(`releasing reservation ${id}: ${messageOf(error)}`)
      }),
  }
}

async function insufficientFunds(
  db: D1Database,
  config: PaymentsConfig,
  payer: Hex,
  label: string,
  quote: JobQuote,
  available: bigint,
): Promise<PaymentRequiredError> {
  const holds = await payerHolds(db, payer)
  // A pending withdrawal takes its amount out of what jobs may spend: say so, or a payer who
  // sees its balance on-chain is told to deposit what it already has. (One more read, on this
  // path only; without it the refusal stands, just less precise.)
  const withdrawal = await escrowAccount(config, payer).then((account) => account.withdrawal, () => null)
  const withdrawing = withdrawal
    ? ` A withdrawal of ${withdrawal.amount} wei is pending and not available to jobs: cancel it (depinfer escrow cancel-withdrawal, Escrow.cancelWithdrawal) or deposit more (Escrow.deposit), and retry`
    : ': deposit more (Escrow.deposit) and retry'
  return new PaymentRequiredError(
    `${label} costs ${quote.totalWei} wei; payer ${payer} has ${available} wei available in the Escrow at ${config.escrow}, ` +
      `of which ${holds.reserved.wei} wei is held by ${holds.reserved.jobs} job(s) in flight or just answered and ${holds.chargedUnsettled.wei} wei by ` +
      `${holds.chargedUnsettled.jobs} completed job(s) not settled yet${withdrawal ? '.' : ''}${withdrawing}`,
    'payer',
  )
}
