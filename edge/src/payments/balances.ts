/**
 * Payers' escrow balances, read on-chain (`Escrow.availableBalance`: the balance minus any
 * pending withdrawal). Cached per payer in the isolate for a few seconds so a busy payer does
 * not cost one RPC call per job; a stale value is safe because the reservation also counts
 * jobs settled after the value was read (see reservations.ts). Without a balance no job is
 * sent: an RPC failure is a 503 with Retry-After.
 */
import { escrowAbi } from '@depinfer/contracts'
import type { Hex } from '@depinfer/shared'
import { chainReader, latestBlockNumber, shortError } from '../batching/chain-client.js'
import { PaymentsUnavailableError } from '../errors/payment.js'
import type { PaymentsConfig } from './config.js'

const BALANCE_CACHE_MS = 3_000
const BALANCE_CACHE_SIZE = 10_000
const RPC_TIMEOUT_MS = 5_000

export interface BalanceRead {
  available: bigint
  /** When the read was started: the chain state is at least this recent. */
  readAt: number
  /** The block the balance was read at: settlements in later blocks are not reflected in it. */
  block: bigint
}

const cache = new Map<string, BalanceRead>()
let reader: { key: string; client: ReturnType<typeof chainReader> } | undefined

function client(config: PaymentsConfig) {
  const key = `${config.chainId}\u0000${config.rpcUrl}`
  if (reader?.key !== key) reader = { key, client: chainReader(config, RPC_TIMEOUT_MS) }
  return reader.client
}

/** `availableBalance(payer)`, from the cache unless `fresh` or older than a few seconds. */
export async function availableBalance(config: PaymentsConfig, payer: Hex, fresh: boolean, now = Date.now): Promise<BalanceRead> {
  const key = `${config.escrow}:${payer}`
  const cached = cache.get(key)
  if (!fresh && cached && now() - cached.readAt < BALANCE_CACHE_MS) return cached
  const readAt = now()
  let available: bigint
  let block: bigint
  const read = (blockNumber?: bigint) =>
    client(config).readContract({ address: config.escrow, abi: escrowAbi, functionName: 'availableBalance', args: [payer], ...(blockNumber !== undefined && { blockNumber }) })
  try {
    // Read at a known block, so the reservation can tell which settlements the value already
    // reflects (reservations.ts): a lagging node's older block is then accounted for exactly.
    block = await latestBlockNumber(client(config))
    try {
      available = await read(block)
    } catch {
      // A load-balanced RPC may send the read to a node that has not seen that block yet. The
      // latest value then comes from an unknown block: as block 0, every recent settlement
      // keeps holding against it (the cautious side).
      available = await read()
      block = 0n
    }
  } catch (error) {
    throw new PaymentsUnavailableError(`cannot read the escrow balance of ${payer} (the job was not sent): ${shortError(error)}`, error)
  }
  const result = { available, readAt, block }
  if (cache.size >= BALANCE_CACHE_SIZE) cache.delete(cache.keys().next().value!)
  cache.set(key, result)
  return result
}

export interface EscrowAccount {
  balance: bigint
  available: bigint
  withdrawal: { amount: bigint; availableAt: bigint } | null
}

/** The payer's full escrow state, read fresh (GET /api/account). */
export async function escrowAccount(config: PaymentsConfig, payer: Hex): Promise<EscrowAccount> {
  const chain = client(config)
  const base = { address: config.escrow, abi: escrowAbi, args: [payer] } as const
  try {
    const [balance, available, withdrawal] = await Promise.all([
      chain.readContract({ ...base, functionName: 'balanceOf' }),
      chain.readContract({ ...base, functionName: 'availableBalance' }),
      chain.readContract({ ...base, functionName: 'withdrawalRequest' }),
    ])
    return {
      balance,
      available,
      withdrawal: withdrawal.amount === 0n ? null : { amount: withdrawal.amount, availableAt: withdrawal.availableAt },
    }
  } catch (error) {
    throw new PaymentsUnavailableError(`cannot read the escrow account of ${payer}: ${shortError(error)}`, error)
  }
}

/** What `account` has claimed so far, or undefined when the chain cannot be read right now. */
export async function claimedOnChain(config: PaymentsConfig, account: Hex): Promise<bigint | undefined> {
  try {
    return await client(config).readContract({ address: config.escrow, abi: escrowAbi, functionName: 'claimed', args: [account] })
  } catch {
    return undefined
  }
}
