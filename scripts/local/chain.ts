/**
 * The local chain of the network: anvil from npm (nothing downloaded) with the compiled
 * AttestationRegistry deployed, and the account that may submit batches. Production points the
 * edge at an L2 RPC URL and a deployed registry instead (README "Production").
 */
import { createPublicClient, createWalletClient, http, type Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { foundry } from 'viem/chains'
import { startAnvil } from '../../contracts/scripts/anvil.js'
import { buildContracts } from '../../contracts/scripts/build.js'

/** anvil's first well-known development account (public test key; never use it elsewhere). */
export const ANVIL_DEV_PRIVATE_KEY: Hex = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80'

export interface LocalChain {
  rpcUrl: string
  chainId: number
  registryAddress: Hex
  submitterPrivateKey: Hex
  stop(): Promise<void>
}

export async function startLocalChain(): Promise<LocalChain> {
  await buildContracts({})
  // Imported after the build: `contracts/generated/` is produced by it.
  const { deployAttestationRegistry } = await import('../../contracts/src/index.js')
  const anvil = await startAnvil()
  try {
    const account = privateKeyToAccount(ANVIL_DEV_PRIVATE_KEY)
    const transport = http(anvil.rpcUrl)
    const wallet = createWalletClient({ account, chain: foundry, transport })
    const publicClient = createPublicClient({ chain: foundry, transport })
    const registry = await deployAttestationRegistry(wallet, publicClient, { submitters: [account.address] })
    return {
      rpcUrl: anvil.rpcUrl,
      chainId: foundry.id,
      registryAddress: registry.address,
      submitterPrivateKey: ANVIL_DEV_PRIVATE_KEY,
      stop: () => anvil.stop(),
    }
  } catch (error) {
    await anvil.stop()
    throw error
  }
}
