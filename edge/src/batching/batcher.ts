/**
 * The scheduled batcher (issue 4): takes pending attestations in sequence order, builds the
 * Merkle tree of their leaves, records the batch in D1, posts `submitBatch` and waits for the
 * receipt. Every step is recorded before the next, so an RPC outage, a reverted or dropped
 * transaction, or a crashed invocation leaves the same batch to the next tick, and a batch is
 * never posted twice: before (re-)sending, the registry is asked whether the root is already
 * there (the registry itself also refuses a duplicate root).
 */
import { attestationLeaf, buildMerkleTree, type Hex, messageOf } from '@depinfer/shared'
import { attestationRegistryAbi } from '@depinfer/contracts'
import { parseEventLogs, type Hash } from 'viem'
import { attestationOfRow, type AttestationRow, type BatchRow } from '../attestations/rows.js'
import { numberVar, type Env } from '../env.js'
import {
  acquireLease,
  markConfirmed,
  markFailed,
  markSent,
  oldestUnconfirmedBatch,
  pendingAttestations,
  recordBatch,
  releaseLease,
} from './batch-store.js'
import { chainClients, chainConfig, type ChainConfig } from './chain-client.js'
import { landOnce, type OnChainOutcome } from './once-on-chain.js'

const DEFAULT_MAX_LEAVES = 10_000
const DEFAULT_CONFIRM_TIMEOUT_MS = 60_000
const RPC_TIMEOUT_MS = 10_000
/** A tick stops cutting new batches after this long (cron invocations are time-limited). */
const TICK_BUDGET_MS = 45_000
const LEASE_TTL_MS = 5 * 60_000

export interface BatchTickReport {
  /** Why nothing was attempted (no chain configured, another tick holds the lease). */
  skipped?: string
  /** Batches confirmed during this tick. */
  confirmed: { root: string; fromSeq: number; toSeq: number; txHash: string }[]
  /** Why the tick stopped early, if it did: the batch stays for the next tick. */
  error?: string
}

/** The leaves of a batch's attestations, in sequence order (the order the tree is built from). */
export function batchLeaves(rows: readonly AttestationRow[]): Hex[] {
  return rows.map((row) => attestationLeaf(attestationOfRow(row), BigInt(row.seq)))
}

export async function runBatchTick(env: Env, now: () => number = Date.now): Promise<BatchTickReport> {
  const config = chainConfig(env)
  if ('missing' in config) return { skipped: `chain not configured (${config.missing})`, confirmed: [] }
  const holder = crypto.randomUUID()
  const report: BatchTickReport = { confirmed: [] }
  try {
    if (!(await acquireLease(env.DB, holder, now(), LEASE_TTL_MS))) {
      return { skipped: 'another batcher invocation holds the lease', confirmed: [] }
    }
    const settler = new BatchSettler(env.DB, config, numberVar(env.BATCH_CONFIRM_TIMEOUT_MS, DEFAULT_CONFIRM_TIMEOUT_MS), now)
    const maxLeaves = Math.min(numberVar(env.BATCH_MAX_LEAVES, DEFAULT_MAX_LEAVES), 0xffff_ffff)
    const started = now()
    while (now() - started < TICK_BUDGET_MS) {
      let batch: BatchToSettle | null = await oldestUnconfirmedBatch(env.DB)
      if (!batch) {
        const rows = await pendingAttestations(env.DB, maxLeaves)
        if (rows.length === 0) break
        const root = buildMerkleTree(batchLeaves(rows)).root
        const fromSeq = rows[0]!.seq
        const toSeq = rows.at(-1)!.seq
        await recordBatch(env.DB, root, fromSeq, toSeq, now())
        batch = { root, from_seq: fromSeq, to_seq: toSeq, count: rows.length, tx_hash: null }
      }
      const outcome = await settler.settle(batch)
      if (outcome.kind !== 'confirmed') {
        report.error = `batch ${batch.root} (${batch.from_seq}..${batch.to_seq}): ${outcome.reason}`
        break
      }
      report.confirmed.push({ root: batch.root, fromSeq: batch.from_seq, toSeq: batch.to_seq, txHash: outcome.txHash })
    }
  } catch (error) {
    report.error = messageOf(error)
  } finally {
    await releaseLease(env.DB, holder).catch(() => {})
  }
  if (report.error) console.warn(`batcher: ${report.error}`)
  return report
}

type BatchToSettle = Pick<BatchRow, 'root' | 'from_seq' | 'to_seq' | 'count' | 'tx_hash'>

/** Brings one recorded batch to `confirmed`, or leaves it in a state the next tick resumes. */
class BatchSettler {
  readonly #clients: ReturnType<typeof chainClients>

  constructor(
    private readonly db: D1Database,
    private readonly config: ChainConfig,
    private readonly confirmTimeoutMs: number,
    private readonly now: () => number,
  ) {
    this.#clients = chainClients(config, RPC_TIMEOUT_MS)
  }

  settle(batch: BatchToSettle): Promise<OnChainOutcome> {
    const root = batch.root as Hex
    const { walletClient, account, publicClient } = this.#clients
    return landOnce(publicClient, this.confirmTimeoutMs, {
      sentTx: batch.tx_hash as Hash | null,
      findLanded: () => this.#findPosting(root),
      send: () =>
        walletClient.writeContract({
          address: this.config.registry,
          abi: attestationRegistryAbi,
          functionName: 'submitBatch',
          args: [root, batch.count, BigInt(batch.from_seq), BigInt(batch.to_seq)],
          account,
        }),
      markSent: (txHash) => markSent(this.db, root, txHash),
      markConfirmed: (txHash, blockNumber) => markConfirmed(this.db, root, txHash, Number(blockNumber), this.now()),
      markFailed: (reason, keepTx) => markFailed(this.db, root, reason, keepTx),
    })
  }

  /** Where `root` was posted, if it was: the registry's record and its BatchSubmitted event. */
  async #findPosting(root: Hex): Promise<{ txHash: Hash; blockNumber: bigint } | undefined> {
    const { publicClient } = this.#clients
    const batch = await publicClient.readContract({
      address: this.config.registry,
      abi: attestationRegistryAbi,
      functionName: 'getBatch',
      args: [root],
    })
    if (batch.count === 0) return undefined
    const block = BigInt(batch.postedAtBlock)
    const logs = await publicClient.getLogs({
      address: this.config.registry,
      fromBlock: block,
      toBlock: block,
    })
    const event = parseEventLogs({ abi: attestationRegistryAbi, eventName: 'BatchSubmitted', logs }).find(
      (log) => log.args.root.toLowerCase() === root,
    )
    if (!event?.transactionHash) throw new Error(`root ${root} is posted at block ${block} but its event was not found`)
    return { txHash: event.transactionHash, blockNumber: block }
  }
}
