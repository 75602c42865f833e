/**
 * The scheduled settler (issue 6): after the batcher has posted attestation batches, settles
 * each confirmed batch on the Escrow, in batch order. For a batch's charged jobs it debits each
 * payer the sum of its jobs' prices, credits every earner (the model developer its price minus
 * the protocol fee, the device's provider its fee, the protocol its fee) on top of their
 * cumulative earnings, and posts the payout tree over all accounts with
 * `settleBatch(attestationRoot, payers, amounts, payoutRoot, totalDebited)`.
 *
 * Like the batcher, every step is recorded in D1 before the next: the settlement (exact debits,
 * earnings and payout root) before its transaction, its hash once sent, and before (re-)sending
 * the Escrow is asked whether the batch is already settled (`settledIn`), so a crash or an RPC
 * failure anywhere resumes with the same settlement and a batch is never settled twice.
 */
import { buildPayoutTree, escrowAbi, providerRegistryAbi } from '@depinfer/contracts'
import { type Hash, zeroAddress } from 'viem'
import { messageOf, type Hex } from '@depinfer/shared'
import type { BatchRow } from '../attestations/rows.js'
import { acquireLease, releaseLease } from '../batching/batch-store.js'
import { chainClients, chainConfig, latestBlockNumber, type ChainClients } from '../batching/chain-client.js'
import { landOnce, type OnChainOutcome } from '../batching/once-on-chain.js'
import { numberVar, type Env } from '../env.js'
import { paymentsSetting, type PaymentsConfig } from './config.js'
import { releaseExpired } from './reservations.js'
import {
  chargedJobsOfBatch,
  discardSettlement,
  lastPayoutTotal,
  markSettlementConfirmed,
  markSettlementFailed,
  markSettlementSent,
  nextBatchToSettle,
  oldestOpenSettlement,
  payoutAccounts,
  recordSettlement,
  recordSkipped,
  type ChargedJob,
  type OpenSettlement,
  type UnfundedJob,
} from './settlement-store.js'

const DEFAULT_CONFIRM_TIMEOUT_MS = 60_000
const RPC_TIMEOUT_MS = 10_000
/** A tick stops taking new batches after this long (cron invocations are time-limited). */
const TICK_BUDGET_MS = 45_000
const LEASE_TTL_MS = 5 * 60_000

export interface SettlementTickReport {
  /** Why nothing was attempted (payments off, no chain, another tick holds the lease). */
  skipped?: string
  /** Abandoned reservations released. */
  released: number
  /** Settlements confirmed during this tick. */
  settled: { attestationRoot: string; payoutRoot: string; jobs: number; totalWei: string; txHash: string }[]
  /** Confirmed batches with no charged job (nothing to settle). */
  empty: number
  /** Why the tick stopped early, if it did: the settlement stays for the next tick. */
  error?: string
}

/**
 * `releaseExpiredBefore`: release reservations still `reserved` that expired before this instant
 * (one before which every answered job is known to be charged, see index.ts); undefined: none.
 */
export async function runSettlementTick(
  env: Env,
  releaseExpiredBefore: number | undefined,
  now: () => number = Date.now,
): Promise<SettlementTickReport> {
  const report: SettlementTickReport = { released: 0, settled: [], empty: 0 }
  let config: PaymentsConfig
  try {
    const setting = paymentsSetting(env)
    if (!setting.enabled) return { ...report, skipped: `payments off (${setting.reason})` }
    config = setting.config
  } catch (error) {
    return { ...report, skipped: messageOf(error) }
  }
  try {
    if (releaseExpiredBefore !== undefined) report.released = await releaseExpired(env.DB, releaseExpiredBefore)
  } catch (error) {
    // Not a reason to skip settling: abandoned holds only make payers look poorer for a while.
    console.warn(`settler: releasing expired reservations: ${messageOf(error)}`)
  }
  const chain = chainConfig(env)
  if ('missing' in chain) return { ...report, skipped: `chain not configured (${chain.missing})` }
  const holder = crypto.randomUUID()
  // The batcher's lease: batches and settlements are sent from the same account, one at a time.
  const leased = await acquireLease(env.DB, holder, now(), LEASE_TTL_MS).catch((error: unknown) => {
    report.error = `taking the lease: ${messageOf(error)}`
    return false
  })
  if (!leased) return { ...report, ...(!report.error && { skipped: 'another invocation holds the chain lease' }) }
  try {
    const clients = chainClients(chain, RPC_TIMEOUT_MS)
    const sender = new SettlementSender(env.DB, config, clients, numberVar(env.BATCH_CONFIRM_TIMEOUT_MS, DEFAULT_CONFIRM_TIMEOUT_MS), now)
    const started = now()
    while (now() - started < TICK_BUDGET_MS) {
      let open: OpenSettlement | null = await oldestOpenSettlement(env.DB)
      if (open && (await overdrawn(config, clients, open))) {
        // Not sent, so nothing of it can land: recorded again from the balances as they are.
        await discardSettlement(env.DB, open.attestation_root)
        open = null
      }
      if (!open) {
        const batch = await nextBatchToSettle(env.DB)
        if (!batch) break
        const recorded = await prepareSettlement(env.DB, config, clients, batch, now())
        if (!recorded) {
          report.empty++
          continue
        }
        open = (await oldestOpenSettlement(env.DB))!
      }
      const outcome = await sender.settle(open)
      if (outcome.kind !== 'confirmed') {
        report.error = `settlement of batch ${open.attestation_root} (${open.from_seq}..${open.to_seq}): ${outcome.reason}`
        break
      }
      report.settled.push({
        attestationRoot: open.attestation_root,
        payoutRoot: open.payout_root!,
        jobs: open.jobs,
        totalWei: open.total_wei,
        txHash: outcome.txHash,
      })
    }
  } catch (error) {
    report.error = messageOf(error)
  } finally {
    await releaseLease(env.DB, holder).catch(() => {})
  }
  if (report.error) console.warn(`settler: ${report.error}`)
  return report
}

/**
 * Computes and records the settlement of a confirmed batch; returns false for a batch with no
 * charged job it can settle (recorded as skipped). Reads the chain (device → provider lookups,
 * payers' balances) before anything is recorded, so what is recorded only changes if a payer's
 * balance falls below it before it is sent (see runSettlementTick).
 */
async function prepareSettlement(db: D1Database, config: PaymentsConfig, clients: ChainClients, batch: BatchRow, now: number): Promise<boolean> {
  const [charged, previousTotal] = await Promise.all([chargedJobsOfBatch(db, batch.root), lastPayoutTotal(db)])
  // One block for the balances and for whether the batch is settled: a settlement discarded as
  // overdrawn (runSettlementTick) might have had a transaction on its way after all.
  const blockNumber = await latestBlockNumber(clients.publicClient)
  if ((await settledIn(config, clients, batch.root, blockNumber)) !== 0n) {
    throw new Error(`batch ${batch.root} is settled on-chain, but by no settlement recorded here (one discarded while its transaction was on its way?): the Escrow and D1 must be reconciled by hand`)
  }
  const [providers, { funded: jobs, unfunded }] = await Promise.all([providersOf(config, clients, charged), fundedJobs(config, clients, charged, blockNumber)])
  if (unfunded.length > 0) {
    console.warn(
      `settler: batch ${batch.root} leaves out ${unfunded.length} job(s) their payers' Escrow balances no longer cover ` +
        `(${[...new Set(unfunded.map((u) => u.job.payer))].join(', ')}): withdrawn while unsettled; they are not debited and their earners not paid`,
    )
  }
  if (jobs.length === 0) {
    await recordSkipped(db, batch, previousTotal, now, unfunded)
    return false
  }
  const debits = new Map<string, bigint>()
  const earned = new Map<string, bigint>()
  const add = (map: Map<string, bigint>, account: string | null, amount: bigint) => {
    if (amount === 0n) return
    // The reservation was priced with its addresses; a share without one is a broken row.
    if (account === null) throw new Error(`an amount of ${amount} wei has no account`)
    const key = account.toLowerCase()
    map.set(key, (map.get(key) ?? 0n) + amount)
  }
  for (const job of jobs) {
    const price = BigInt(job.price_wei)
    const shares = [BigInt(job.developer_wei), BigInt(job.provider_fee_wei), BigInt(job.protocol_fee_wei)]
    // Invariants of every charge: the device signed exactly the reserved price, and the price is
    // exactly what its earners share. A violation stops settlement (nothing is sent) for a human.
    if (BigInt(job.attested_price_wei) !== price) {
      throw new Error(`job ${job.job_id}: attested price ${job.attested_price_wei} wei differs from its reservation's ${price} wei`)
    }
    if (shares.reduce((a, b) => a + b, 0n) !== price) throw new Error(`job ${job.job_id}: its shares do not add up to its price ${price}`)
    add(debits, job.payer, price)
    add(earned, job.developer_address, shares[0]!)
    add(earned, providers.get(job.device.toLowerCase()) ?? job.device, shares[1]!)
    add(earned, job.protocol_address, shares[2]!)
  }
  const cumulative = await payoutAccounts(db)
  const earnings = new Map<string, bigint>()
  for (const [account, amount] of earned) {
    const next = (cumulative.get(account) ?? 0n) + amount
    earnings.set(account, next)
    cumulative.set(account, next)
  }
  const tree = buildPayoutTree([...cumulative].map(([account, amount]) => ({ account: account as Hex, cumulativeAmount: amount })))
  const payers = [...debits.keys()].sort() as Hex[]
  const amounts = payers.map((payer) => debits.get(payer)!)
  const total = amounts.reduce((a, b) => a + b, 0n)
  const payoutTotal = previousTotal + total
  // The contract can only check payoutTotal against what it debited; that the tree sums to it
  // is this settler's promise, so it is checked here.
  if (tree.total !== payoutTotal) {
    throw new Error(`the payout tree sums to ${tree.total} wei but ${payoutTotal} wei have been debited`)
  }
  await recordSettlement(db, { batch, jobs: jobs.length, payers, amounts, total, payoutRoot: tree.root.toLowerCase() as Hex, payoutTotal, earnings, unfunded }, now)
  return true
}

/**
 * The batch's charged jobs its payers' Escrow balances cover, and the rest. `settleBatch` reverts
 * as a whole when one payer's balance is below its debit, and settlements go in batch order: one
 * payer who withdrew while its jobs were unsettled (settlement behind its withdrawal delay, e.g.
 * after a chain outage) stopped every later settlement, for every payer and earner (an audit).
 * Such a payer's jobs are covered in order while its balance lasts; the others are left out.
 */
async function fundedJobs(config: PaymentsConfig, clients: ChainClients, jobs: readonly ChargedJob[], blockNumber: bigint): Promise<{ funded: ChargedJob[]; unfunded: UnfundedJob[] }> {
  const balances = await balancesOf(config, clients, jobs.map((j) => j.payer), blockNumber)
  const left = new Map(balances)
  const funded: ChargedJob[] = []
  const unfunded: UnfundedJob[] = []
  for (const job of jobs) {
    const payer = job.payer.toLowerCase()
    const price = BigInt(job.price_wei)
    const balance = left.get(payer)!
    if (price <= balance) {
      left.set(payer, balance - price)
      funded.push(job)
    } else {
      unfunded.push({ job, balance: balances.get(payer)! })
    }
  }
  return { funded, unfunded }
}

/** Each payer's Escrow balance at `blockNumber` (`balanceOf`: what `settleBatch` debits from), by lowercase address. */
async function balancesOf(config: PaymentsConfig, clients: ChainClients, payers: readonly string[], blockNumber: bigint): Promise<Map<string, bigint>> {
  const unique = [...new Set(payers.map((p) => p.toLowerCase()))]
  const balances = await Promise.all(
    unique.map((payer) => clients.publicClient.readContract({ address: config.escrow, abi: escrowAbi, functionName: 'balanceOf', args: [payer as Hex], blockNumber })),
  )
  return new Map(unique.map((payer, i) => [payer, balances[i]!]))
}

/** The Escrow's settlement epoch of the batch at `blockNumber` (0: not settled). */
function settledIn(config: PaymentsConfig, clients: ChainClients, root: string, blockNumber: bigint): Promise<bigint> {
  return clients.publicClient.readContract({ address: config.escrow, abi: escrowAbi, functionName: 'settledIn', args: [root as Hex], blockNumber })
}

/**
 * Whether a recorded settlement with no transaction known to be on its way asks a payer for more
 * than its balance now holds (it withdrew since the settlement was recorded): sending it would
 * revert, and the next attempt too. Not if the batch is settled on-chain already: a transaction
 * whose answer was lost may have landed (its hash unrecorded), and then the balance is low
 * because it was debited; landOnce finds and confirms that settlement.
 */
async function overdrawn(config: PaymentsConfig, clients: ChainClients, s: OpenSettlement): Promise<boolean> {
  if (s.status !== 'pending' || s.tx_hash !== null) return false
  // Both read at one block: a transaction landing between two unpinned reads would show its
  // debit without its settlement.
  const blockNumber = await latestBlockNumber(clients.publicClient)
  if ((await settledIn(config, clients, s.attestation_root, blockNumber)) !== 0n) return false
  const payers = JSON.parse(s.payers_json) as string[]
  const amounts = (JSON.parse(s.amounts_json) as string[]).map(BigInt)
  const balances = await balancesOf(config, clients, payers, blockNumber)
  return payers.some((payer, i) => balances.get(payer.toLowerCase())! < amounts[i]!)
}

/** Each device's provider account when a ProviderRegistry is configured and has the device. */
async function providersOf(config: PaymentsConfig, clients: ChainClients, jobs: readonly ChargedJob[]): Promise<Map<string, string>> {
  const providers = new Map<string, string>()
  const registry = config.providerRegistry
  if (!registry) return providers
  const devices = [...new Set(jobs.filter((j) => BigInt(j.provider_fee_wei) > 0n).map((j) => j.device.toLowerCase()))]
  await Promise.all(
    devices.map(async (device) => {
      const provider = await clients.publicClient.readContract({
        address: registry,
        abi: providerRegistryAbi,
        functionName: 'providerOf',
        args: [device as Hex],
      })
      if (provider !== zeroAddress) providers.set(device, provider.toLowerCase())
    }),
  )
  return providers
}

/** Brings one recorded settlement to `confirmed`, or leaves it in a state the next tick resumes. */
class SettlementSender {
  constructor(
    private readonly db: D1Database,
    private readonly config: PaymentsConfig,
    private readonly clients: ChainClients,
    private readonly confirmTimeoutMs: number,
    private readonly now: () => number,
  ) {}

  settle(s: OpenSettlement): Promise<OnChainOutcome> {
    const root = s.attestation_root as Hex
    const { walletClient, account, publicClient } = this.clients
    return landOnce(publicClient, this.confirmTimeoutMs, {
      sentTx: s.tx_hash as Hash | null,
      findLanded: () => this.#findSettlement(s),
      send: () =>
        walletClient.writeContract({
          address: this.config.escrow,
          abi: escrowAbi,
          functionName: 'settleBatch',
          args: [root, JSON.parse(s.payers_json) as Hex[], (JSON.parse(s.amounts_json) as string[]).map(BigInt), s.payout_root as Hex, BigInt(s.payout_total)],
          account,
        }),
      markSent: (txHash) => markSettlementSent(this.db, root, txHash),
      markConfirmed: (txHash, blockNumber) => markSettlementConfirmed(this.db, root, txHash, Number(blockNumber), this.now()),
      markFailed: (reason, keepTx) => markSettlementFailed(this.db, root, reason, keepTx),
    })
  }

  /**
   * Where the batch was settled, if it was: `settledIn` and its BatchSettled event. A settlement
   * with another payout root means the Escrow and D1 disagree about earnings: that stops here.
   */
  async #findSettlement(s: OpenSettlement): Promise<{ txHash: Hash; blockNumber: bigint } | undefined> {
    const { publicClient } = this.clients
    const root = s.attestation_root as Hex
    const epoch = await publicClient.readContract({ address: this.config.escrow, abi: escrowAbi, functionName: 'settledIn', args: [root] })
    if (epoch === 0n) return undefined
    const events = await publicClient.getContractEvents({
      address: this.config.escrow,
      abi: escrowAbi,
      eventName: 'BatchSettled',
      args: { attestationRoot: root },
      fromBlock: BigInt(s.batch_block ?? 0),
    })
    const event = events[0]
    if (!event?.transactionHash || event.blockNumber === null) throw new Error(`batch ${root} is settled (epoch ${epoch}) but its BatchSettled event was not found`)
    if (event.args.payoutRoot?.toLowerCase() !== s.payout_root) {
      throw new Error(`batch ${root} was settled on-chain with payout root ${event.args.payoutRoot}, not the recorded ${s.payout_root}`)
    }
    return { txHash: event.transactionHash, blockNumber: event.blockNumber }
  }
}
