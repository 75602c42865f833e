/**
 * Where the chain commands send their calls: the RPC URL and the contract's address from the
 * environment (DEPINFER_RPC_URL, DEPINFER_ESCROW_ADDRESS, DEPINFER_PROVIDER_REGISTRY_ADDRESS)
 * or else from the edge's `GET /api/chain`, so a user of `npm start` needs nothing but the URL
 * and key it prints; the signing account from DEPINFER_PRIVATE_KEY. Connecting checks that the
 * RPC answers, is the edge's chain, and has code at the address, so a wrong setting is named in
 * one line before any transaction is built.
 */
import { type Address, type Chain, createPublicClient, createWalletClient, defineChain, type Hex, http, type PrivateKeyAccount, type PublicClient, type Transport, type WalletClient } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { z } from 'zod'
import { addressSchema, type EdgeSession } from './edge-session.js'
import { CliError } from './errors.js'
import { parseAddress } from './eth.js'
import { chainFailure } from './transactions.js'

export type ContractName = 'escrow' | 'providerRegistry'

const CONTRACTS: Record<ContractName, { label: string; envVar: string; missingOnEdge: string }> = {
  escrow: { label: 'Escrow', envVar: 'DEPINFER_ESCROW_ADDRESS', missingOnEdge: 'payments are off there' },
  providerRegistry: {
    label: 'ProviderRegistry',
    envVar: 'DEPINFER_PROVIDER_REGISTRY_ADDRESS',
    missingOnEdge: 'it checks no stakes and routes to any device with a key',
  },
}

const edgeChainSchema = z.object({
  chainId: z.number().int().positive(),
  rpcUrl: z.string().nullable(),
  contracts: z.object({ escrow: addressSchema.nullable().optional(), providerRegistry: addressSchema.nullable().optional() }),
})

export interface ChainTarget {
  rpcUrl: string
  /** Which setting named the RPC, for errors: DEPINFER_RPC_URL or the edge. */
  rpcSource: string
  contract: ContractName
  address: Address
  /** Which setting named the address, for errors. */
  addressSource: string
  /** The chain id the edge uses, when it was asked: the RPC must serve the same chain. */
  edgeChainId?: number
}

/** The RPC and `contract`'s address: the environment's, else the edge's `GET /api/chain`. */
export async function chainTarget(contract: ContractName, env: NodeJS.ProcessEnv, edge: EdgeSession): Promise<ChainTarget> {
  const { envVar, label, missingOnEdge } = CONTRACTS[contract]
  const envRpc = rpcUrlFromEnv(env)
  const envAddress = env[envVar] ? parseAddress(env[envVar], envVar) : undefined
  if (envRpc && envAddress) return { rpcUrl: envRpc, rpcSource: 'DEPINFER_RPC_URL', contract, address: envAddress, addressSource: envVar }

  const info = await edge.get('/api/chain', edgeChainSchema, 'reading the chain settings', `the RPC URL and the ${label} address come from the edge's /api/chain (or set DEPINFER_RPC_URL and ${envVar})`)
  const rpcUrl = envRpc ?? info.rpcUrl
  if (!rpcUrl) throw new CliError(`the edge at ${edge.url.origin} publishes no RPC URL: set DEPINFER_RPC_URL to a JSON-RPC endpoint of chain ${info.chainId}`, 2)
  const address = envAddress ?? info.contracts[contract]
  if (!address) throw new CliError(`the edge at ${edge.url.origin} has no ${label}: ${missingOnEdge}; set ${envVar} to use one anyway`)
  const fromEdge = `the edge's /api/chain`
  return {
    rpcUrl,
    rpcSource: envRpc ? 'DEPINFER_RPC_URL' : fromEdge,
    contract,
    address: parseAddress(address, `the edge's ${label} address`),
    addressSource: envAddress ? envVar : fromEdge,
    edgeChainId: info.chainId,
  }
}

export interface Connection {
  target: ChainTarget
  chainId: number
  client: PublicClient<Transport, Chain>
  wallet(account: PrivateKeyAccount): WalletClient<Transport, Chain, PrivateKeyAccount>
}

/**
 * Connects to the target's RPC: it must answer, serve the edge's chain (when the edge was asked)
 * and have code at the contract's address.
 */
export async function connect(target: ChainTarget): Promise<Connection> {
  const { label } = CONTRACTS[target.contract]
  const rpc = await connectRpc(target.rpcUrl, target.rpcSource)
  const where = `the RPC at ${target.rpcUrl} (${target.rpcSource})`
  if (target.edgeChainId !== undefined && rpc.chainId !== target.edgeChainId) {
    throw new CliError(`${where} serves chain ${rpc.chainId}, but the edge uses chain ${target.edgeChainId}: point DEPINFER_RPC_URL at chain ${target.edgeChainId}`, target.rpcSource === 'DEPINFER_RPC_URL' ? 2 : 1)
  }
  const code = await rpc.client.getCode({ address: target.address }).catch((error: unknown) => {
    throw chainFailure(error, `reading the ${label} at ${target.address}`)
  })
  if (code === undefined || code === '0x') {
    throw new CliError(`there is no contract at ${target.address} on chain ${rpc.chainId} (${where}): check the ${label} address (${target.addressSource})`)
  }
  return { target, ...rpc }
}

/** A chain's RPC, reached: it answered its chain id. */
export type RpcConnection = Omit<Connection, 'target'>

/** Connects to the RPC at `rpcUrl` (`rpcSource`: which setting named it, for errors). */
export async function connectRpc(rpcUrl: string, rpcSource: string): Promise<RpcConnection> {
  // One retry: an RPC that refuses connections should fail in about a second, not after backoff.
  const transport = http(rpcUrl, { retryCount: 1, timeout: 20_000 })
  const chainId = await createPublicClient({ transport })
    .getChainId()
    .catch((error: unknown) => {
      throw chainFailure(error, `reading the chain id (RPC URL from ${rpcSource})`)
    })
  const chain = defineChain({
    id: chainId,
    name: `chain ${chainId}`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  })
  // Receipts are polled every half second: a local anvil mines at once, an L2 within seconds.
  const client = createPublicClient({ chain, transport, pollingInterval: 500 })
  return { chainId, client, wallet: (account) => createWalletClient({ account, chain, transport, pollingInterval: 500 }) }
}

/** DEPINFER_RPC_URL, checked to be an http(s) URL; undefined when it is not set. */
export function rpcUrlFromEnv(env: NodeJS.ProcessEnv): string | undefined {
  const envRpc = env.DEPINFER_RPC_URL || undefined
  if (envRpc !== undefined && !/^https?:\/\//.test(envRpc)) {
    throw new CliError(`DEPINFER_RPC_URL must be an http:// or https:// JSON-RPC URL, got ${JSON.stringify(envRpc.slice(0, 100))}`, 2)
  }
  return envRpc
}

/**
 * The account of DEPINFER_PRIVATE_KEY (`whose`: e.g. "the provider's account"); a CliError (exit
 * 2) without the key's value, which must never reach a terminal or a log.
 */
export function signerFromEnv(env: NodeJS.ProcessEnv, whose: string): PrivateKeyAccount {
  const key = env.DEPINFER_PRIVATE_KEY?.trim()
  if (!key) throw new CliError(`set DEPINFER_PRIVATE_KEY to the private key of ${whose} (0x and 64 hex digits): it signs and pays for the transactions`, 2)
  const hex = (key.startsWith('0x') ? key : `0x${key}`) as Hex
  if (!/^0x[0-9a-fA-F]{64}$/.test(hex)) throw new CliError('DEPINFER_PRIVATE_KEY must be a private key: 0x and 64 hex digits', 2)
  try {
    return privateKeyToAccount(hex)
  } catch {
    // Zero or not below the curve order: the value itself stays out of the message.
    throw new CliError('DEPINFER_PRIVATE_KEY is not a valid secp256k1 private key', 2)
  }
}

/** The account DEPINFER_PRIVATE_KEY names, or undefined when it is not set (for read-only commands). */
export function addressFromEnv(env: NodeJS.ProcessEnv, whose: string): Address | undefined {
  return env.DEPINFER_PRIVATE_KEY?.trim() ? signerFromEnv(env, whose).address : undefined
}
