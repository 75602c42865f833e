/**
 * The local chain of the network: anvil from npm (nothing downloaded) with the compiled
 * AttestationRegistry and Escrow deployed, and the account that may submit batches and settle
 * them. Production points the edge at an L2 RPC URL and deployed contracts instead (README
 * "Production").
 */
import { createPublicClient, createWalletClient, http, type Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { foundry } from 'viem/chains'
import { startAnvil } from '../../contracts/scripts/anvil.js'
import { buildContracts } from '../../contracts/scripts/build.js'

/** anvil's first well-known development account (public test key; never use it elsewhere). */
export const ANVIL_DEV_PRIVATE_KEY: Hex = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80'
/** anvil's second development account: `npm start`'s payer (public test key, like the first). */
export const ANVIL_PAYER_PRIVATE_KEY: Hex = '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d'
/**
 * Seconds a payer's withdrawal waits: far longer than a settlement tick plus the longest job,
 * so reserved funds are always settled before they can leave.
 */
const WITHDRAWAL_DELAY_SECONDS = 24n * 3600n

export interface LocalChain {
  rpcUrl: string
  chainId: number
  registryAddress: Hex
  /** Escrow (pay per inference); the submitter account is its settler. */
  escrowAddress: Hex
  submitterPrivateKey: Hex
  /** Deposits `wei` into the Escrow from the account of `payerPrivateKey`, for itself. */
  deposit(payerPrivateKey: Hex, wei: bigint): Promise<void>
  stop(): Promise<void>
}

export async function startLocalChain(): Promise<LocalChain> {
  await buildContracts({})
  // Imported after the build: `contracts/generated/` is produced by it.
  const { deployAttestationRegistry, deployEscrow, escrowAbi } = await import('../../contracts/src/index.js')
  const anvil = await startAnvil()
  try {
    const account = privateKeyToAccount(ANVIL_DEV_PRIVATE_KEY)
    const transport = http(anvil.rpcUrl)
    const wallet = createWalletClient({ account, chain: foundry, transport })
    const publicClient = createPublicClient({ chain: foundry, transport })
    const registry = await deployAttestationRegistry(wallet, publicClient, { submitters: [account.address] })
    const escrow = await deployEscrow(wallet, publicClient, {
      attestationRegistry: registry.address,
      settlers: [account.address],
      withdrawalDelaySeconds: WITHDRAWAL_DELAY_SECONDS,
    })
    return {
      rpcUrl: anvil.rpcUrl,
      chainId: foundry.id,
      registryAddress: registry.address,
      escrowAddress: escrow.address,
      submitterPrivateKey: ANVIL_DEV_PRIVATE_KEY,
      async deposit(payerPrivateKey, wei) {
        const payer = createWalletClient({ account: privateKeyToAccount(payerPrivateKey), chain: foundry, transport })
        const hash = await payer.writeContract({ address: escrow.address, abi: escrowAbi, functionName: 'deposit', value: wei })
        const receipt = await publicClient.waitForTransactionReceipt({ hash })
        if (receipt.status !== 'success') throw new Error(`deposit ${hash} reverted`)
      },
      stop: () => anvil.stop(),
    }
  } catch (error) {
    await anvil.stop()
    throw error
  }
}
