/**
 * Gets one recorded transaction on-chain exactly once, across cron ticks that may die, time out
 * or lose answers at any point: the batcher's `submitBatch` and the settler's `settleBatch` both
 * go through it. Every step is recorded (through the callbacks) before the next:
 *
 *   1. a transaction sent earlier: its receipt settles it, unless it is still on its way (or
 *      another transaction took its nonce: then step 2);
 *   2. otherwise ask the contract whether it already happened (a transaction whose hash was
 *      never stored, or that replaced ours) and only record it;
 *   3. otherwise send, record the hash, wait for the receipt.
 *
 * A revert or an RPC failure before anything is known to be on-chain goes back to pending; a
 * receipt wait that times out keeps the hash, so the next tick looks it up first.
 */
import type { Hash } from 'viem'
import { receiptOrPending, shortError, type ChainClients } from './chain-client.js'

export type OnChainOutcome = { kind: 'confirmed'; txHash: Hash } | { kind: 'unsettled'; reason: string }

export interface OnChainStep {
  /** The transaction sent by an earlier attempt, if one was recorded. */
  sentTx: Hash | null
  /** Where the effect already is on-chain, if it is (step 2). */
  findLanded(): Promise<{ txHash: Hash; blockNumber: bigint } | undefined>
  /** Sends the transaction (step 3). */
  send(): Promise<Hash>
  markSent(txHash: Hash): Promise<void>
  markConfirmed(txHash: Hash, blockNumber: bigint): Promise<void>
  /** `keepTx`: the sent transaction may still be mined, look it up next time. */
  markFailed(reason: string, keepTx: boolean): Promise<void>
}

export async function landOnce(
  publicClient: ChainClients['publicClient'],
  confirmTimeoutMs: number,
  step: OnChainStep,
): Promise<OnChainOutcome> {
  const confirm = async (txHash: Hash, blockNumber: bigint): Promise<OnChainOutcome> => {
    await step.markConfirmed(txHash, blockNumber)
    return { kind: 'confirmed', txHash }
  }
  const waitFor = async (txHash: Hash): Promise<OnChainOutcome> => {
    try {
      const receipt = await publicClient.waitForTransactionReceipt({ hash: txHash, timeout: confirmTimeoutMs })
      if (receipt.transactionHash !== txHash) {
        // viem answers with the receipt of the transaction that took our nonce (a wallet's
        // "cancel" or "speed up"): ours will never be mined. Only the contract can say whether
        // the replacement did the work.
        const landed = await step.findLanded()
        if (landed) return confirm(landed.txHash, landed.blockNumber)
        const reason = `transaction ${txHash} was replaced by ${receipt.transactionHash}, which did not do it`
        await step.markFailed(reason, false)
        return { kind: 'unsettled', reason }
      }
      if (receipt.status === 'success') return confirm(txHash, receipt.blockNumber)
      // Reverted: it did nothing; maybe another transaction did (step 2 next time).
      await step.markFailed(`transaction ${txHash} reverted`, false)
      return { kind: 'unsettled', reason: `transaction ${txHash} reverted` }
    } catch (error) {
      const reason = `waiting for ${txHash}: ${shortError(error)}`
      await step.markFailed(reason, true).catch(() => {})
      return { kind: 'unsettled', reason }
    }
  }
  try {
    if (step.sentTx) {
      const known = await receiptOrPending(publicClient, step.sentTx)
      if (known === 'pending') return waitFor(step.sentTx)
      if (known?.status === 'success') return confirm(step.sentTx, known.blockNumber)
    }
    const landed = await step.findLanded()
    if (landed) return confirm(landed.txHash, landed.blockNumber)
    const txHash = await step.send()
    await step.markSent(txHash)
    return waitFor(txHash)
  } catch (error) {
    const reason = shortError(error)
    await step.markFailed(reason, false).catch(() => {})
    return { kind: 'unsettled', reason }
  }
}
