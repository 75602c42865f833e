/**
 * What the payouts API serves: an account's cumulative earnings under the latest payout root
 * confirmed on-chain, and the Merkle proof `Escrow.claim(account, cumulative, payoutRoot, proof)`
 * takes. The tree is rebuilt from D1 (every account's cumulative amount) once per root.
 */
import { buildPayoutTree, type PayoutTree } from '@depinfer/contracts'
import type { Hex } from '@depinfer/shared'
import { confirmedPayoutState, type SettlementRow } from './settlement-store.js'

export interface PayoutView {
  account: Hex
  /** Everything the account has earned in settled batches, wei (decimal string). */
  cumulative: string
  payoutRoot: Hex
  proof: Hex[]
  /** The settlement that posted `payoutRoot`. */
  settlement: { attestationRoot: string; txHash: string | null; blockNumber: number | null; totalDebited: string }
}

/** Trees of the latest roots: every claimant of one root shares one build. */
const treeCache = new Map<string, PayoutTree>()
const TREE_CACHE_SIZE = 2

async function latestTree(db: D1Database): Promise<{ settlement: SettlementRow; tree: PayoutTree } | undefined> {
  const head = await confirmedPayoutState(db, false)
  const cached = head.settlement?.payout_root ? treeCache.get(head.settlement.payout_root) : undefined
  if (head.settlement && cached) return { settlement: head.settlement, tree: cached }
  // Read the root and the accounts together: a settlement confirmed in between would mismatch.
  const { settlement, accounts } = await confirmedPayoutState(db, true)
  if (!settlement?.payout_root || !accounts || accounts.length === 0) return undefined
  const tree = buildPayoutTree(accounts.map((a) => ({ account: a.account as Hex, cumulativeAmount: BigInt(a.cumulative_wei) })))
  if (tree.root.toLowerCase() !== settlement.payout_root) {
    throw new Error(`the payout accounts hash to ${tree.root}, not the confirmed payout root ${settlement.payout_root}`)
  }
  if (treeCache.size >= TREE_CACHE_SIZE) treeCache.delete(treeCache.keys().next().value!)
  treeCache.set(settlement.payout_root, tree)
  return { settlement, tree }
}

/** The account's payout view, or undefined when it has earned nothing in a settled batch yet. */
export async function payoutOf(db: D1Database, account: Hex): Promise<PayoutView | undefined> {
  const latest = await latestTree(db)
  const entry = latest?.tree.entry(account)
  if (!latest || !entry) return undefined
  const { settlement, tree } = latest
  return {
    account: entry.account,
    cumulative: entry.cumulativeAmount.toString(),
    payoutRoot: tree.root,
    proof: tree.proof(account),
    settlement: {
      attestationRoot: settlement.attestation_root,
      txHash: settlement.tx_hash,
      blockNumber: settlement.block_number,
      totalDebited: settlement.payout_total,
    },
  }
}
