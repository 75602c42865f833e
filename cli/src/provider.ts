/**
 * The `depinfer provider` commands: a provider's stake and devices in the ProviderRegistry.
 * Registering stakes up to the wanted amount when the stake is lower, then registers the device
 * with its key's EIP-712 consent (ProviderRegistry.registerDevice checks it), skipping each step
 * already done, so running it again changes nothing. Status reads the chain only: the edge
 * routes to a device exactly when `isActiveDevice` says so. Leaving mirrors an Escrow
 * withdrawal: `unstake` requests (the devices stop getting jobs at once), then, run again after
 * the registry's delay, pays the stake out; `cancel-unstake` drops the request; `unregister`
 * frees a device for another provider.
 */
import { type Address, bytesToHex, isAddressEqual, parseEventLogs, type PrivateKeyAccount, zeroAddress } from 'viem'
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

async function registryContract(conn: Connection) {
  const { providerRegistryAbi } = await loadContracts()
  return { address: conn.target.address, abi: providerRegistryAbi } as const
}

export async function registerDevice({ conn, provider, device, stake }: RegisterOptions): Promise<void> {
  const { deviceRegistrationTypedData } = await loadContracts()
  const registry = await registryContract(conn)
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
    await sendTransaction(conn, `stake of ${eth(topUp)} (stake ${eth(standing.stake)} → ${eth(target)})`, () =>
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
    await sendTransaction(conn, `registration of device ${device.address}`, () =>
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
  const registry = await registryContract(conn)
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

/**
 * Requests an unstake of `amount` wei (default: the whole stake) when none is pending or an
 * amount is given (replacing the pending one, whose delay restarts); otherwise pays out the
 * pending one if its delay has passed, and says when it will have if not (exit 1). While a
 * request is pending every device of the provider is inactive: the edge sends them no job.
 */
export async function unstake(conn: Connection, provider: PrivateKeyAccount, amount?: bigint): Promise<void> {
  const registry = await registryContract(conn)
  const wallet = conn.wallet(provider)
  const [standing, block] = await readChain(`reading the ProviderRegistry at ${registry.address}`, () =>
    Promise.all([conn.client.readContract({ ...registry, functionName: 'getProvider', args: [provider.address] }), conn.client.getBlock()]),
  )
  if (amount !== undefined || standing.unstakeAmount === 0n) {
    const wanted = amount ?? standing.stake
    if (wanted === 0n) {
      console.log(`nothing to unstake: ${provider.address} has no stake in ProviderRegistry ${registry.address}`)
      return
    }
    if (wanted > standing.stake) throw new CliError(`--amount ${eth(wanted)} is more than the stake of ${provider.address}, ${eth(standing.stake)}`, 2)
    if (standing.unstakeAmount > 0n) console.log(`replacing the pending unstake of ${eth(standing.unstakeAmount)} (the delay starts again)`)
    await sendTransaction(conn, `unstake request of ${eth(wanted)}`, () => wallet.writeContract({ ...registry, functionName: 'requestUnstake', args: [wanted] }))
    const [now, after] = await readChain('reading the unstake request', () =>
      Promise.all([conn.client.getBlock(), conn.client.readContract({ ...registry, functionName: 'getProvider', args: [provider.address] })]),
    )
    console.log(
      `the edge sends this provider's ${after.deviceCount} device(s) no more jobs until it is done or cancelled (depinfer provider cancel-unstake); ` +
        `run \`depinfer provider unstake\` again from ${whenAvailable(after.unstakeAvailableAt, now.timestamp)} to receive it`,
    )
    return
  }
  // The contract compares with the block's timestamp, so the chain's clock decides, not ours.
  if (block.timestamp < standing.unstakeAvailableAt) {
    throw new CliError(`the unstake of ${eth(standing.unstakeAmount)} is not available yet: run this again from ${whenAvailable(standing.unstakeAvailableAt, block.timestamp)}`)
  }
  const receipt = await sendTransaction(conn, 'unstake', () => wallet.writeContract({ ...registry, functionName: 'unstake' }))
  const event = parseEventLogs({ abi: registry.abi, eventName: 'Unstaked', logs: receipt.logs })[0]
  const paid = event?.args.amount ?? 0n
  // Less than requested when the provider was slashed during the delay.
  console.log(`unstaked ${eth(paid)} to ${provider.address}${paid < standing.unstakeAmount ? ` (slashing took the other ${eth(standing.unstakeAmount - paid)})` : ''}`)
  await printProviderStatus(conn, provider.address)
}

/** Drops the provider's pending unstake request, so its devices are active again (if staked enough). */
export async function cancelUnstake(conn: Connection, provider: PrivateKeyAccount): Promise<void> {
  const registry = await registryContract(conn)
  const standing = await readChain(`reading the ProviderRegistry at ${registry.address}`, () =>
    conn.client.readContract({ ...registry, functionName: 'getProvider', args: [provider.address] }),
  )
  if (standing.unstakeAmount === 0n) {
    console.log(`no unstake of ${provider.address} is pending: nothing to cancel`)
    return
  }
  await sendTransaction(conn, `cancellation of the unstake of ${eth(standing.unstakeAmount)}`, () =>
    conn.wallet(provider).writeContract({ ...registry, functionName: 'cancelUnstake' }),
  )
  await printProviderStatus(conn, provider.address)
}

/** Removes `device` from the provider: it gets no more jobs and another provider may register it. */
export async function unregisterDevice(conn: Connection, provider: PrivateKeyAccount, device: Address): Promise<void> {
  const registry = await registryContract(conn)
  const current = await readChain(`reading the ProviderRegistry at ${registry.address}`, () =>
    conn.client.readContract({ ...registry, functionName: 'providerOf', args: [device] }),
  )
  if (current === zeroAddress) {
    console.log(`device ${device} is not registered: nothing to unregister`)
    return
  }
  if (!isAddressEqual(current, provider.address)) {
    throw new CliError(`device ${device} is registered to provider ${current}, not ${provider.address}: only that provider can unregister it`)
  }
  await sendTransaction(conn, `unregistration of device ${device}`, () =>
    conn.wallet(provider).writeContract({ ...registry, functionName: 'unregisterDevice', args: [device] }),
  )
  await printProviderStatus(conn, provider.address, [device])
}
