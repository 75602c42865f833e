/**
 * `depinfer provider register` and `depinfer provider status`: a provider's stake and devices in
 * the ProviderRegistry. Registering stakes up to the wanted amount when the stake is lower, then
 * registers the device with its key's EIP-712 consent (ProviderRegistry.registerDevice checks
 * it), skipping each step already done, so running it again changes nothing. Status reads the
 * chain only: the edge routes to a device exactly when `isActiveDevice` says so.
 */
import { type Address, bytesToHex, isAddressEqual, type PrivateKeyAccount, zeroAddress } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
// The agent's own loader, so the CLI reads a key file exactly as the agent does (format, mode
// 0600 check, messages); @depinfer/device-agent exports no entry point for it.
import { DeviceKeyError, loadDeviceKey } from '@depinfer/device-agent/device-key'
import type { Connection } from './chain.js'
import { loadContracts } from './contracts.js'
import { CliError } from './errors.js'
import { eth, whenAvailable } from './eth.js'
import { readChain, sendTransaction } from './transactions.js'

/** The device key file's account (it signs the registration consent, nothing else). */
export async function deviceAccount(path: string): Promise<PrivateKeyAccount> {
  try {
    return privateKeyToAccount(bytesToHex((await loadDeviceKey(path)).privateKey))
  } catch (error) {
    // Its messages already name the file and what to do (chmod 600, depinfer-agent init).
    if (error instanceof DeviceKeyError) throw new CliError(error.message.replace(/\s+/g, ' '), 1, { cause: error })
    throw error
  }
}

export interface RegisterOptions {
  conn: Connection
  provider: PrivateKeyAccount
  device: PrivateKeyAccount
  /** The stake to hold (wei); default the registry's minStake. */
  stake?: bigint
}

export async function registerDevice({ conn, provider, device, stake }: RegisterOptions): Promise<void> {
  const { providerRegistryAbi, deviceRegistrationTypedData } = await loadContracts()
  const registry = { address: conn.target.address, abi: providerRegistryAbi } as const
  const [minStake, standing, current] = await readChain(`reading the ProviderRegistry at ${registry.address}`, () =>
    Promise.all([
      conn.client.readContract({ ...registry, functionName: 'minStake' }),
      conn.client.readContract({ ...registry, functionName: 'getProvider', args: [provider.address] }),
      conn.client.readContract({ ...registry, functionName: 'providerOf', args: [device.address] }),
    ]),
  )
  const target = stake ?? minStake
  if (target < minStake) throw new CliError(`--stake ${eth(target)} is below the registry's minimum stake of ${eth(minStake)}`, 2)
  // Before any stake moves: a device of another provider cannot be registered by this one.
  if (current !== zeroAddress && !isAddressEqual(current, provider.address)) {
    throw new CliError(`device ${device.address} is registered to provider ${current}, not ${provider.address}: that provider must unregisterDevice it first`)
  }
  console.log(`provider ${provider.address}, device ${device.address}, ProviderRegistry ${registry.address} on chain ${conn.chainId}`)
  const wallet = conn.wallet(provider)
  if (standing.stake < target) {
    const topUp = target - standing.stake
    await sendTransaction(conn, `staked ${eth(topUp)} (stake ${eth(standing.stake)} → ${eth(target)})`, () =>
      wallet.writeContract({ ...registry, functionName: 'stake', value: topUp }),
    )
  } else {
    console.log(`stake is already ${eth(standing.stake)}, at least ${eth(target)}${stake === undefined ? ' (the minimum)' : ''}: nothing staked`)
  }
  if (current !== zeroAddress) {
    console.log(`device ${device.address} is already registered to this provider: nothing to register`)
  } else {
    const nonce = await readChain('reading the device nonce', () => conn.client.readContract({ ...registry, functionName: 'nonces', args: [device.address] }))
    // The device's consent to this provider, for this nonce: without it the registry refuses,
    // and with it nobody else can claim the device's earnings.
    const signature = await device.signTypedData(
      deviceRegistrationTypedData({ chainId: conn.chainId, registry: registry.address }, { provider: provider.address, device: device.address, nonce }),
    )
    await sendTransaction(conn, `registered device ${device.address}`, () =>
      wallet.writeContract({ ...registry, functionName: 'registerDevice', args: [device.address, signature] }),
    )
  }
  await printProviderStatus(conn, provider.address, [device.address])
}

/**
 * Prints `provider`'s stake, standing and devices. Devices are found from the registry's
 * DeviceRegistered events (the contract keeps no list) and each is confirmed with `providerOf`;
 * `known` devices are checked even when the RPC will not list events (some cap log ranges).
 */
export async function printProviderStatus(conn: Connection, provider: Address, known: readonly Address[] = []): Promise<void> {
  const { providerRegistryAbi } = await loadContracts()
  const registry = { address: conn.target.address, abi: providerRegistryAbi } as const
  const [minStake, standing, active, block] = await readChain(`reading the ProviderRegistry at ${registry.address}`, () =>
    Promise.all([
      conn.client.readContract({ ...registry, functionName: 'minStake' }),
      conn.client.readContract({ ...registry, functionName: 'getProvider', args: [provider] }),
      conn.client.readContract({ ...registry, functionName: 'isActiveProvider', args: [provider] }),
      conn.client.getBlock(),
    ]),
  )
  let standingText: string
  if (active) standingText = 'in good standing: its registered devices are active'
  else if (standing.unstakeAmount > 0n) {
    standingText = `NOT in good standing: an unstake of ${eth(standing.unstakeAmount)} is pending (withdrawable from ${whenAvailable(standing.unstakeAvailableAt, block.timestamp)}), so all its devices are inactive until it is cancelled (cancelUnstake)`
  } else standingText = `NOT in good standing: the stake is below the minimum of ${eth(minStake)}, so all its devices are inactive`
  console.log(`provider ${provider}: stake ${eth(standing.stake)} (minimum ${eth(minStake)}), ${standing.deviceCount} device(s), ${standingText}`)

  let candidates: Address[] = [...known]
  let listed = true
  try {
    const events = await conn.client.getContractEvents({ ...registry, eventName: 'DeviceRegistered', args: { provider }, fromBlock: 0n, toBlock: 'latest' })
    candidates = [...candidates, ...events.flatMap((e) => (e.args.device ? [e.args.device] : []))]
  } catch {
    // Some public RPCs refuse a log query over the whole chain; the count above still stands.
    listed = false
  }
  const unique = candidates.filter((d, i) => candidates.findIndex((o) => isAddressEqual(o, d)) === i)
  const devices = await readChain('reading the devices', () =>
    Promise.all(
      unique.map(async (device) => ({
        device,
        owner: await conn.client.readContract({ ...registry, functionName: 'providerOf', args: [device] }),
        active: await conn.client.readContract({ ...registry, functionName: 'isActiveDevice', args: [device] }),
      })),
    ),
  )
  for (const { device, owner, active: routable } of devices) {
    if (isAddressEqual(owner, provider)) {
      console.log(`  device ${device}: registered, ${routable ? 'active: the edge routes jobs to it (while it is online and serves the model)' : 'inactive: the edge sends it no job'}`)
    } else if (known.some((k) => isAddressEqual(k, device))) {
      console.log(`  device ${device}: ${owner === zeroAddress ? 'not registered' : `registered to another provider, ${owner}`}`)
    }
  }
  if (!listed) console.log(`  (the RPC would not list the registry's DeviceRegistered events, so devices other than those named are not shown)`)
}
