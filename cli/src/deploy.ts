/**
 * `depinfer contracts deploy`: the operator's step 5–6 of README "Production" as one command.
 * Deploys the AttestationRegistry, the Escrow and the ProviderRegistry to the chain at
 * DEPINFER_RPC_URL from DEPINFER_PRIVATE_KEY's account, wired as the edge expects (the
 * submitter posts batches and settles them; the Escrow settles against this registry), and
 * prints the `wrangler.toml` values that point an edge at them.
 */
import { type Address, getAddress, type PrivateKeyAccount } from 'viem'
import { loadContracts } from './contracts.js'
import type { RpcConnection } from './chain.js'
import { CliError } from './errors.js'
import { eth } from './eth.js'
import { readChain } from './transactions.js'

/**
 * The shortest withdrawal or unstake delay accepted. A payer's funds must stay until the edge
 * has settled their jobs (each minute's cron, later while the RPC is down), and a provider's
 * stake until its recent jobs can no longer be disputed.
 */
export const MIN_DELAY_SECONDS = 3600n
/** The delays' default: a day, what `npm start`'s chain uses. */
export const DEFAULT_DELAY_SECONDS = 86_400n

const UNIT_SECONDS: Record<string, bigint> = { s: 1n, m: 60n, h: 3600n, d: 86_400n }

/**
 * Seconds of a duration typed as `86400`, `90m`, `24h` or `7d` (`what`: the option), at least
 * MIN_DELAY_SECONDS; a CliError (exit 2) otherwise.
 */
export function parseDelay(text: string, what: string): bigint {
  const match = /^([0-9]{1,12})([smhd]?)$/.exec(text)
  const seconds = match ? BigInt(match[1]!) * UNIT_SECONDS[match[2] || 's']! : undefined
  if (seconds === undefined) throw new CliError(`${what} must be a duration: seconds, or a number with s, m, h or d (e.g. 24h), got ${JSON.stringify(text.slice(0, 100))}`, 2)
  if (seconds < MIN_DELAY_SECONDS) {
    throw new CliError(`${what} ${text} is under an hour: funds must stay until the edge has settled or could dispute the jobs they cover (it settles every minute, later while its RPC is down)`, 2)
  }
  return seconds
}

export interface DeployRequest {
  rpc: RpcConnection
  rpcUrl: string
  deployer: PrivateKeyAccount
  /** The edge's account (its SUBMITTER_PRIVATE_KEY). */
  submitter: Address
  admin: Address
  /** Undefined: the AttestationRegistry alone (attestations on-chain, every job free). */
  payments?: { withdrawalDelaySeconds: bigint; minStake: bigint; unstakeDelaySeconds: bigint; slashers: Address[] }
}

/** Deploys the contracts, printing each as it lands, then the edge's settings for them. */
export async function deployContracts({ rpc, rpcUrl, deployer, submitter, admin, payments }: DeployRequest): Promise<void> {
  const { deployNetworkContracts } = await loadContracts()
  console.log(`deploying to chain ${rpc.chainId} from ${deployer.address}; admin ${admin}, submitter ${submitter}`)
  const deployed = await readChain('deploying the contracts', () =>
    deployNetworkContracts(rpc.wallet(deployer), rpc.client, { submitter, admin, ...(payments && { payments }) }, (name, contract) =>
      console.log(`${name}: ${getAddress(contract.address)} (tx ${contract.transactionHash}, block ${contract.receipt.blockNumber})`),
    ),
  )
  const vars: Record<string, string> = {
    CHAIN_ID: String(rpc.chainId),
    CHAIN_RPC_URL: rpcUrl,
    REGISTRY_ADDRESS: getAddress(deployed.registry.address),
  }
  if (deployed.escrow) vars.ESCROW_ADDRESS = getAddress(deployed.escrow.address)
  if (deployed.providerRegistry) vars.PROVIDER_REGISTRY_ADDRESS = getAddress(deployed.providerRegistry.address)
  console.log(`\nwrangler.toml, [vars]:\n${Object.entries(vars).map(([name, value]) => `${name} = ${JSON.stringify(value)}`).join('\n')}`)
  const gas = await readChain(`reading the balance of ${submitter}`, () => rpc.client.getBalance({ address: submitter }))
  console.log(
    [
      '',
      'then:',
      `  npx wrangler secret put SUBMITTER_PRIVATE_KEY   # the private key of ${submitter}, which posts batches${payments ? ' and settles jobs' : ''}`,
      `  the submitter pays their gas and holds ${eth(gas)}${gas === 0n ? ': fund it before the first batch' : ''}`,
      '  CHAIN_RPC_URL is shown to every client (GET /api/chain): if this RPC URL carries a key, put a public one there',
      '  and this one in the secret CHAIN_SUBMIT_RPC_URL, which the edge then uses for its own chain traffic',
      ...(payments ? ['  set PROVIDER_FEE_WEI, PROTOCOL_FEE_BPS and PROTOCOL_FEE_ADDRESS in wrangler.toml (README "Payments")'] : []),
    ].join('\n'),
  )
}

/** DEPINFER_RPC_URL for a deployment: there is no edge to ask for it yet. */
export function requireRpcUrl(rpcUrl: string | undefined): string {
  if (!rpcUrl) throw new CliError('contracts deploy needs DEPINFER_RPC_URL: the JSON-RPC URL of the chain to deploy to', 2)
  return rpcUrl
}
