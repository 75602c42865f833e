/**
 * The local chain of the network: anvil from npm (nothing downloaded) with the compiled
 * AttestationRegistry, Escrow and ProviderRegistry deployed, the account that may submit batches
 * and settle them, and a provider account that stakes and registers local devices. Production
 * points the edge at an L2 RPC URL and deployed contracts instead (README "Production").
 */
import { bytesToHex, createPublicClient, createWalletClient, http, parseEther, zeroAddress, type Hash, type Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { foundry } from 'viem/chains'
import { startAnvil } from '../../contracts/scripts/anvil.js'
import { buildContracts } from '../../contracts/scripts/build.js'
import { loadDeviceKey } from '../../device-agent/src/keys/device-key.js'

/** anvil's first well-known development account (public test key; never use it elsewhere). */
export const ANVIL_DEV_PRIVATE_KEY: Hex = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80'
/** anvil's second development account: `npm start`'s payer (public test key, like the first). */
export const ANVIL_PAYER_PRIVATE_KEY: Hex = '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d'
/**
 * Seconds a payer's withdrawal waits: far longer than a settlement tick plus the longest job,
 * so reserved funds are always settled before they can leave.
 */
const WITHDRAWAL_DELAY_SECONDS = 24n * 3600n
/**
 * anvil's eighth development account (index 7): the local network's provider, which stakes and
 * registers the devices it starts. Not the submitter (#0, whose nonces the batcher relies on) nor
 * `npm start`'s payer (#1); the payments e2e suite uses #2–#6 and #9.
 */
export const ANVIL_PROVIDER_PRIVATE_KEY: Hex = '0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356'
/** A provider's minimum stake on the local ProviderRegistry. */
export const LOCAL_MIN_STAKE = parseEther('0.1')
/** Seconds an unstake waits (the window in which recent jobs' stakes stay slashable). */
const UNSTAKE_DELAY_SECONDS = 24n * 3600n

export interface LocalChain {
  rpcUrl: string
  chainId: number
  registryAddress: Hex
  /** Escrow (pay per inference); the submitter account is its settler. */
  escrowAddress: Hex
  /** ProviderRegistry: the edge routes only to its active devices when given its address. */
  providerRegistryAddress: Hex
  /** Stake a provider needs (wei) for its devices to be active. */
  minStake: bigint
  submitterPrivateKey: Hex
  /** Deposits `wei` into the Escrow from the account of `payerPrivateKey`, for itself. */
  deposit(payerPrivateKey: Hex, wei: bigint): Promise<void>
  /**
   * Makes the device whose key file is `deviceKeyPath` an active device of the provider (default
   * ANVIL_PROVIDER_PRIVATE_KEY): stakes up to `minStake` and cancels a pending unstake if needed,
   * then registers the device with its key's EIP-712 consent, unless it already is the provider's.
   * Returns the device's address. Transactions are sent one at a time (shared accounts' nonces).
   */
  registerDevice(deviceKeyPath: string, providerPrivateKey?: Hex): Promise<Hex>
  stop(): Promise<void>
}

/** A device already belongs to another provider: registering it again would revert. */
export class DeviceTakenError extends Error {
  override name = 'DeviceTakenError'
}

export async function startLocalChain(): Promise<LocalChain> {
  await buildContracts({})
  // Imported after the build: `contracts/generated/` is produced by it.
  const { deployNetworkContracts, deviceRegistrationTypedData, escrowAbi, providerRegistryAbi } = await import(
    '../../contracts/src/index.js'
  )
  // Only recent states in memory: by default anvil keeps every block's, and a long-running
  // local network grew ~0.28 MB a batch (a soak run: 25 min, 5 s batches, 112 MB); pruned, half
  // of that at most (a probe: 1,500 blocks of transfers, +76 MB default, +30 MB pruned). Nothing
  // here reads state at old blocks: receipts, logs and the latest state are kept. A bare
  // `--prune-history` keeps the newest state alone, and a read at "latest" made while a block
  // was being mined then failed ("block height is N but requested was N-1": 671 of 11,538 calls
  // in a probe, a proof check of the README's among them); 64 states keep it answered (0 failed).
  const anvil = await startAnvil({ args: ['--prune-history', '64'] })
  try {
    const account = privateKeyToAccount(ANVIL_DEV_PRIVATE_KEY)
    const transport = http(anvil.rpcUrl)
    const wallet = createWalletClient({ account, chain: foundry, transport })
    // anvil mines each transaction at once: poll receipts quickly rather than every 4 s.
    const publicClient = createPublicClient({ chain: foundry, transport, pollingInterval: 100 })
    const { registry, escrow, providerRegistry: providers } = await deployNetworkContracts(wallet, publicClient, {
      submitter: account.address,
      payments: { withdrawalDelaySeconds: WITHDRAWAL_DELAY_SECONDS, minStake: LOCAL_MIN_STAKE, unstakeDelaySeconds: UNSTAKE_DELAY_SECONDS },
    })
    const confirm = async (what: string, hash: Hash) => {
      const receipt = await publicClient.waitForTransactionReceipt({ hash })
      if (receipt.status !== 'success') throw new Error(`${what} (${hash}) reverted`)
    }
    const readRegistry = { address: providers.address, abi: providerRegistryAbi } as const
    // One registration at a time: concurrent agents share the provider account, and two
    // transactions sent at once from it would be given the same nonce.
    let queue: Promise<unknown> = Promise.resolve()
    const register = async (deviceKeyPath: string, providerPrivateKey: Hex): Promise<Hex> => {
      const device = privateKeyToAccount(bytesToHex((await loadDeviceKey(deviceKeyPath)).privateKey))
      const provider = createWalletClient({ account: privateKeyToAccount(providerPrivateKey), chain: foundry, transport })
      const providerAddress = provider.account.address
      const standing = await publicClient.readContract({ ...readRegistry, functionName: 'getProvider', args: [providerAddress] })
      if (standing.stake < LOCAL_MIN_STAKE) {
        const hash = await provider.writeContract({ ...readRegistry, functionName: 'stake', value: LOCAL_MIN_STAKE - standing.stake })
        await confirm(`staking by provider ${providerAddress}`, hash)
      }
      if (standing.unstakeAmount > 0n) {
        await confirm(`cancelUnstake by ${providerAddress}`, await provider.writeContract({ ...readRegistry, functionName: 'cancelUnstake' }))
      }
      const current = await publicClient.readContract({ ...readRegistry, functionName: 'providerOf', args: [device.address] })
      if (current.toLowerCase() === providerAddress.toLowerCase()) return device.address
      if (current !== zeroAddress) throw new DeviceTakenError(`device ${device.address} is registered to provider ${current}, not ${providerAddress}`)
      const nonce = await publicClient.readContract({ ...readRegistry, functionName: 'nonces', args: [device.address] })
      // The device's consent, signed with its own key file: without it the registry refuses.
      const signature = await device.signTypedData(
        deviceRegistrationTypedData({ chainId: foundry.id, registry: providers.address }, { provider: providerAddress, device: device.address, nonce }),
      )
      const hash = await provider.writeContract({ ...readRegistry, functionName: 'registerDevice', args: [device.address, signature] })
      await confirm(`registering device ${device.address}`, hash)
      return device.address
    }
    return {
      rpcUrl: anvil.rpcUrl,
      chainId: foundry.id,
      registryAddress: registry.address,
      escrowAddress: escrow.address,
      providerRegistryAddress: providers.address,
      minStake: LOCAL_MIN_STAKE,
      submitterPrivateKey: ANVIL_DEV_PRIVATE_KEY,
      registerDevice(deviceKeyPath, providerPrivateKey = ANVIL_PROVIDER_PRIVATE_KEY) {
        const run = queue.then(() => register(deviceKeyPath, providerPrivateKey))
        queue = run.catch(() => {})
        return run
      },
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
