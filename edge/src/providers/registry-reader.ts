/**
 * The stake gate's view of the chain: `ProviderRegistry.isActiveDevice` through the edge's
 * read-only chain client (kept apart from device-stakes.ts, which has no Workers or viem client
 * dependencies and is unit-tested in Node).
 */
import { providerRegistryAbi } from '@depinfer/contracts'
import { chainReader, shortError } from '../batching/chain-client.js'
import type { Hex } from '@depinfer/shared'
import type { Env } from '../env.js'
import { StakeReadError, stakeGate, type ActiveDeviceReader, type StakeChain, type StakeGate } from './device-stakes.js'

/** One call; a slow node must not hold a check (or the Gateway's alarm) for long. */
const RPC_TIMEOUT_MS = 5_000

const ZERO_ADDRESS = '0x0000000000000000000000000000000000000000'

function activeDeviceReader(chain: StakeChain): ActiveDeviceReader {
  const client = chainReader(chain, RPC_TIMEOUT_MS)
  const contract = { address: chain.registry, abi: providerRegistryAbi } as const
  return (device) =>
    Promise.all([
      client.readContract({ ...contract, functionName: 'isActiveDevice', args: [device] }),
      client.readContract({ ...contract, functionName: 'providerOf', args: [device] }),
    ]).then(
      ([active, provider]) => {
        // Two calls may reach two nodes of a load-balanced RPC at different blocks: an active
        // device always has a provider, so an answer without one is a torn read, not an answer.
        if (active && provider === ZERO_ADDRESS) throw new StakeReadError('the registry answered active but no provider (reads at different blocks?)')
        return { active, provider: provider === ZERO_ADDRESS ? undefined : (provider.toLowerCase() as Hex) }
      },
      (error: unknown) => {
        throw new StakeReadError(shortError(error))
      },
    )
}

/** The Gateway's stake gate as the env configures it (undefined: no ProviderRegistry). */
export function stakeGateFromEnv(env: Env): StakeGate | undefined {
  return stakeGate(env, activeDeviceReader)
}
