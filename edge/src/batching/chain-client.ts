/**
 * The edge's connection to the chain that holds the AttestationRegistry: read access for
 * everyone (public RPC URL), write access for the batch submitter (its key is a secret).
 * Configured by env only: the local anvil under `npm start`, an L2 in production.
 */
import { createPublicClient, createWalletClient, defineChain, http, type Hex } from 'viem'
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
  if (!/^0x[0-9a-fA-F]{40}$/.test(env.REGISTRY_ADDRESS ?? '')) return { missing: 'REGISTRY_ADDRESS' }
  // A private (keyed) RPC for sending may differ from the public one shown to clients.
  const rpcUrl = env.CHAIN_SUBMIT_RPC_URL || env.CHAIN_RPC_URL
  if (!rpcUrl) return { missing: 'CHAIN_RPC_URL' }
  if (!/^0x[0-9a-fA-F]{64}$/.test(env.SUBMITTER_PRIVATE_KEY ?? '')) return { missing: 'SUBMITTER_PRIVATE_KEY' }
  return { chainId, rpcUrl, registry: env.REGISTRY_ADDRESS as Hex, submitterKey: env.SUBMITTER_PRIVATE_KEY as Hex }
}

export function chainClients(config: ChainConfig, requestTimeoutMs: number) {
  const chain = defineChain({
    id: config.chainId,
    name: `chain ${config.chainId}`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [config.rpcUrl] } },
  })
  // No retries inside viem: the batcher's own retry is the next cron tick, with state in D1.
  const transport = http(config.rpcUrl, { timeout: requestTimeoutMs, retryCount: 0 })
  const account = privateKeyToAccount(config.submitterKey)
  return {
    account,
    publicClient: createPublicClient({ chain, transport, pollingInterval: 250 }),
    walletClient: createWalletClient({ chain, transport, account }),
  }
}
