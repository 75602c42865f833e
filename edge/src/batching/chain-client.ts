/**
 * The edge's connection to the chain that holds the AttestationRegistry: read access for
 * everyone (public RPC URL), write access for the batch submitter (its key is a secret).
 * Configured by env only: the local anvil under `npm start`, an L2 in production.
 */
import { addressProblem, cutToLength } from '@depinfer/shared'
import { attestationRegistryAbi, escrowAbi, providerRegistryAbi } from '@depinfer/contracts'
import { createPublicClient, createWalletClient, defineChain, hexToBigInt, http, toFunctionSelector, type Hash, type Hex } from 'viem'
import { formatAbiItem } from 'viem/utils'
import { privateKeyToAccount } from 'viem/accounts'
import type { Env } from '../env.js'

export interface ChainConfig {
  chainId: number
  rpcUrl: string
  registry: Hex
  submitterKey: Hex
}

/** The chain settings, or why batching cannot run (nothing configured is not an error). */
export function chainConfig(env: Env): ChainConfig | { missing: string } {
  const chainId = Number(env.CHAIN_ID)
  if (!Number.isSafeInteger(chainId) || chainId <= 0) return { missing: 'CHAIN_ID' }
  const registryProblem = addressProblem(env.REGISTRY_ADDRESS ?? '')
  if (registryProblem !== undefined) return { missing: env.REGISTRY_ADDRESS ? `REGISTRY_ADDRESS: it ${registryProblem}` : 'REGISTRY_ADDRESS' }
  // A private (keyed) RPC for sending may differ from the public one shown to clients.
  const rpcUrl = env.CHAIN_SUBMIT_RPC_URL || env.CHAIN_RPC_URL
  if (!rpcUrl) return { missing: 'CHAIN_RPC_URL' }
  if (!/^0x[0-9a-fA-F]{64}$/.test(env.SUBMITTER_PRIVATE_KEY ?? '')) return { missing: 'SUBMITTER_PRIVATE_KEY' }
  return { chainId, rpcUrl, registry: env.REGISTRY_ADDRESS as Hex, submitterKey: env.SUBMITTER_PRIVATE_KEY as Hex }
}

/** A read-only client of the configured chain (balance reads in the Worker, proofs). */
export function chainReader(config: { chainId: number; rpcUrl: string }, requestTimeoutMs: number) {
  // No retries inside viem: every caller has its own retry (the next request or cron tick).
  const transport = http(config.rpcUrl, { timeout: requestTimeoutMs, retryCount: 0 })
  return createPublicClient({ chain: chainOf(config), transport, pollingInterval: 250 })
}

export function chainClients(config: ChainConfig, requestTimeoutMs: number) {
  const chain = chainOf(config)
  // No retries inside viem: the batcher's own retry is the next cron tick, with state in D1.
  const transport = http(config.rpcUrl, { timeout: requestTimeoutMs, retryCount: 0 })
  const account = privateKeyToAccount(config.submitterKey)
  return {
    account,
    publicClient: createPublicClient({ chain, transport, pollingInterval: 250 }),
    walletClient: createWalletClient({ chain, transport, account }),
  }
}

function chainOf(config: { chainId: number; rpcUrl: string }) {
  return defineChain({
    id: config.chainId,
    name: `chain ${config.chainId}`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [config.rpcUrl] } },
  })
}

export type ChainClients = ReturnType<typeof chainClients>

/**
 * A transaction's receipt, 'pending' for a known transaction not yet mined, undefined for one
 * the node does not know (dropped, or never sent).
 */
export async function receiptOrPending(publicClient: ChainClients['publicClient'], txHash: Hash) {
  const receipt = await publicClient.getTransactionReceipt({ hash: txHash }).catch((error: unknown) => {
    if ((error as Error).name === 'TransactionReceiptNotFoundError') return undefined
    throw error
  })
  if (receipt) return receipt
  const transaction = await publicClient.getTransaction({ hash: txHash }).catch((error: unknown) => {
    if ((error as Error).name === 'TransactionNotFoundError') return undefined
    throw error
  })
  return transaction ? ('pending' as const) : undefined
}

/**
 * The chain's latest block number, as a plain eth_blockNumber request: viem's getBlockNumber
 * shares one in-flight request among its callers (withCache, even with cacheTime 0), and in a
 * Worker a request must not await I/O another request started (workerd fails it, or cancels it
 * as hung: a plain-text 500).
 */
export async function latestBlockNumber(client: Pick<ChainClients['publicClient'], 'request'>): Promise<bigint> {
  return hexToBigInt(await client.request({ method: 'eth_blockNumber' }))
}

/**
 * viem's one-line message of an RPC or contract error, with its details (the cause, e.g.
 * "connect ECONNREFUSED"), for logs and D1's last_error. Not viem's full message: it names the
 * RPC URL, and a keyed RPC's URL holds its key (last_error is served by /api/batches).
 */
export function shortError(error: unknown): string {
  const e = error as { shortMessage?: string; message?: string; details?: string }
  // Details quote the runtime's own error, which may name the URL (workerd: "Fetch API cannot load: <url>").
  const scrub = (text: string) => text.replace(/\b(?:https?|wss?):\/\/\S+/g, '<rpc url>')
  const details = e.shortMessage !== undefined && e.details && !e.shortMessage.includes(e.details) ? ` (${scrub(e.details)})` : ''
  return cutToLength(namedCustomErrors(`${scrub(e.shortMessage ?? e.message ?? String(error))}${details}`), 300)
}

/** The contracts' custom errors by selector, for reverts a node reports undecoded. */
let customErrors: Map<string, string> | undefined

/**
 * "custom error 0xdb42144d(…)" as "InsufficientBalance(address,uint256,uint256) 0xdb42144d(…)":
 * a node that answers a revert in its message rather than its data leaves viem only the
 * selector, and an operator reading last_error needs the name (a money audit saw
 * `custom error 0xdb42144d` 46 times).
 */
function namedCustomErrors(text: string): string {
  if (!text.includes('custom error 0x')) return text
  customErrors ??= new Map(
    [...attestationRegistryAbi, ...escrowAbi, ...providerRegistryAbi]
      .filter((item) => item.type === 'error')
      .map((item) => {
        const signature = formatAbiItem(item)
        return [toFunctionSelector(signature), signature] as const
      }),
  )
  return text.replace(/custom error (0x[0-9a-f]{8})/g, (match, selector: string) => {
    const signature = customErrors!.get(selector)
    return signature ? `custom error ${signature} ${selector}` : match
  })
}
