/**
 * ProviderRegistry on a real anvil: stakes, device registration with the device's EIP-712
 * consent, the unstake delay, slashing, and which devices the edge may route to.
 */
import { ethers } from 'ethers'
import {
  type Address,
  createPublicClient,
  createTestClient,
  createWalletClient,
  getAddress,
  type Hex,
  hashTypedData,
  http,
  keccak256,
  parseEther,
  parseEventLogs,
  type PublicClient,
  stringToHex,
  type TransactionReceipt,
} from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { foundry } from 'viem/chains'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type AnvilInstance, startAnvil } from '../scripts/anvil.ts'
import { buildContracts } from '../scripts/build.ts'
import { expectRevert } from './expect-revert.js'

type Contracts = typeof import('../src/index.ts')

const GAS_REPORT = process.env.GAS_REPORT === '1'
const MIN_STAKE = parseEther('1')
const UNSTAKE_DELAY = 7n * 24n * 3_600n
const ZERO: Address = '0x0000000000000000000000000000000000000000'

/** Runs `fn`, expecting a revert with the custom error `errorName` (and `args`, if given). */
/** Device signing keys, deterministic so failures reproduce. */
const deviceKey = (name: string): Hex => keccak256(stringToHex(`depinfer test device ${name}`))
const devices = {
  d1: privateKeyToAccount(deviceKey('d1')),
  d2: privateKeyToAccount(deviceKey('d2')),
  d3: privateKeyToAccount(deviceKey('d3')),
}

describe('ProviderRegistry on anvil', () => {
  let anvil: AnvilInstance | undefined
  let contracts: Contracts
  let publicClient: PublicClient
  let admin: Address, slasher: Address, p1: Address, p2: Address, p3: Address, outsider: Address, treasury: Address
  let registry: Address
  const gas: Record<string, bigint[]> = {}

  const wallet = (account: Address) => createWalletClient({ account, chain: foundry, transport: http(anvil?.rpcUrl) })
  const testClient = () => createTestClient({ chain: foundry, mode: 'anvil', transport: http(anvil?.rpcUrl) })
  const recordGas = (what: string, receipt: TransactionReceipt) => (gas[what] ??= []).push(receipt.gasUsed)
  const fee = (r: TransactionReceipt) => r.gasUsed * r.effectiveGasPrice
  const ethBalance = (address: Address) => publicClient.getBalance({ address })

  async function confirm(hash: Hex): Promise<TransactionReceipt> {
    const receipt = await publicClient.waitForTransactionReceipt({ hash })
    expect(receipt.status).toBe('success')
    return receipt
  }

  // Writes are simulated first so that reverts surface as decoded custom errors.
  const tx = {
    stake: async (from: Address, value: bigint) => {
      const { request } = await publicClient.simulateContract({
        address: registry,
        abi: contracts.providerRegistryAbi,
        functionName: 'stake',
        value,
        account: from,
      })
      return confirm(await wallet(from).writeContract(request))
    },
    register: async (from: Address, device: Address, signature: Hex) => {
      const { request } = await publicClient.simulateContract({
        address: registry,
        abi: contracts.providerRegistryAbi,
        functionName: 'registerDevice',
        args: [device, signature],
        account: from,
      })
      return confirm(await wallet(from).writeContract(request))
    },
    unregister: async (from: Address, device: Address) => {
      const { request } = await publicClient.simulateContract({
        address: registry,
        abi: contracts.providerRegistryAbi,
        functionName: 'unregisterDevice',
        args: [device],
        account: from,
      })
      return confirm(await wallet(from).writeContract(request))
    },
    requestUnstake: async (from: Address, amount: bigint) => {
      const { request } = await publicClient.simulateContract({
        address: registry,
        abi: contracts.providerRegistryAbi,
        functionName: 'requestUnstake',
        args: [amount],
        account: from,
      })
      return confirm(await wallet(from).writeContract(request))
    },
    cancelUnstake: async (from: Address) => {
      const { request } = await publicClient.simulateContract({
        address: registry,
        abi: contracts.providerRegistryAbi,
        functionName: 'cancelUnstake',
        account: from,
      })
      return confirm(await wallet(from).writeContract(request))
    },
    unstake: async (from: Address) => {
      const { request } = await publicClient.simulateContract({
        address: registry,
        abi: contracts.providerRegistryAbi,
        functionName: 'unstake',
        account: from,
      })
      return confirm(await wallet(from).writeContract(request))
    },
    slash: async (from: Address, provider: Address, amount: bigint, to: Address) => {
      const { request } = await publicClient.simulateContract({
        address: registry,
        abi: contracts.providerRegistryAbi,
        functionName: 'slash',
        args: [provider, amount, to],
        account: from,
      })
      return confirm(await wallet(from).writeContract(request))
    },
  }
  const read = {
    active: (device: Address) =>
      publicClient.readContract({ address: registry, abi: contracts.providerRegistryAbi, functionName: 'isActiveDevice', args: [device] }),
    providerOf: (device: Address) =>
      publicClient.readContract({ address: registry, abi: contracts.providerRegistryAbi, functionName: 'providerOf', args: [device] }),
    provider: (provider: Address) =>
      publicClient.readContract({ address: registry, abi: contracts.providerRegistryAbi, functionName: 'getProvider', args: [provider] }),
    nonce: (device: Address) =>
      publicClient.readContract({ address: registry, abi: contracts.providerRegistryAbi, functionName: 'nonces', args: [device] }),
  }

  /** The device's consent for `provider` at the device's current (or a given) nonce. */
  async function consent(device: keyof typeof devices, provider: Address, nonce?: bigint): Promise<Hex> {
    const account = devices[device]
    const message = { provider, device: account.address, nonce: nonce ?? (await read.nonce(account.address)) }
    return account.signTypedData(contracts.deviceRegistrationTypedData({ chainId: foundry.id, registry }, message))
  }

  beforeAll(async () => {
    const [started] = await Promise.all([startAnvil(), buildContracts()])
    anvil = started
    contracts = await import('../src/index.ts')
    publicClient = createPublicClient({ chain: foundry, transport: http(anvil.rpcUrl) })
    // Checksummed, as viem decodes addresses in events and errors.
    const accounts = (await createWalletClient({ chain: foundry, transport: http(anvil.rpcUrl) }).getAddresses()).map((a) => getAddress(a))
    ;[admin, slasher, p1, p2, p3, outsider, treasury] = accounts as [Address, Address, Address, Address, Address, Address, Address]
    const deployed = await contracts.deployProviderRegistry(wallet(admin), publicClient, {
      minStake: MIN_STAKE,
      unstakeDelaySeconds: UNSTAKE_DELAY,
      slashers: [slasher],
    })
    registry = deployed.address
    recordGas('deploy ProviderRegistry', deployed.receipt)
  })

  afterAll(async () => {
    if (GAS_REPORT) {
      for (const [what, used] of Object.entries(gas)) console.log(`gas ${what}: ${used.join(', ')}`)
    }
    await anvil?.stop()
  })

  it('is configured at deployment; the device consent matches ethers and the contract', async () => {
    const abi = contracts.providerRegistryAbi
    expect(await publicClient.readContract({ address: registry, abi, functionName: 'minStake' })).toBe(MIN_STAKE)
    expect(await publicClient.readContract({ address: registry, abi, functionName: 'unstakeDelay' })).toBe(UNSTAKE_DELAY)
    const role = await publicClient.readContract({ address: registry, abi, functionName: 'SLASHER_ROLE' })
    expect(await publicClient.readContract({ address: registry, abi, functionName: 'hasRole', args: [role, slasher] })).toBe(true)
    expect(await publicClient.readContract({ address: registry, abi, functionName: 'hasRole', args: [role, admin] })).toBe(false)
    const [, name, version, chainId, verifyingContract] = await publicClient.readContract({
      address: registry,
      abi,
      functionName: 'eip712Domain',
    })
    expect({ name, version, chainId, verifyingContract }).toEqual({
      name: 'depinfer',
      version: '1',
      chainId: BigInt(foundry.id),
      verifyingContract: getAddress(registry),
    })

    // The digest three ways (viem, ethers v6, the contract) and the signature two ways.
    const message = { provider: p1, device: devices.d1.address, nonce: 0n }
    const typed = contracts.deviceRegistrationTypedData({ chainId: foundry.id, registry }, message)
    const digest = hashTypedData(typed)
    const ethersDomain = { name: 'depinfer', version: '1', chainId: foundry.id, verifyingContract: registry }
    const ethersTypes = { DeviceRegistration: [...contracts.DEVICE_REGISTRATION_TYPES.DeviceRegistration] }
    expect(ethers.TypedDataEncoder.hash(ethersDomain, ethersTypes, message)).toBe(digest)
    expect(
      await publicClient.readContract({
        address: registry,
        abi,
        functionName: 'deviceRegistrationDigest',
        args: [message.provider, message.device, message.nonce],
      }),
    ).toBe(digest)
    const ethersSignature = await new ethers.Wallet(deviceKey('d1')).signTypedData(ethersDomain, ethersTypes, message)
    expect(ethersSignature).toBe(await consent('d1', p1, 0n)) // RFC 6979: both sign deterministically
  })

  it('registers devices of staked providers only, with the device consent', async () => {
    // Below the minimum stake: no registration.
    await tx.stake(p3, MIN_STAKE - 1n)
    await expectRevert(() => tx.register(p3, devices.d3.address, '0x'), 'InsufficientStake', [p3, MIN_STAKE - 1n, MIN_STAKE])
    await expectRevert(() => tx.stake(p3, 0n), 'ZeroAmount')

    const staked = await tx.stake(p1, MIN_STAKE)
    recordGas('stake', staked)
    const [stakedEvent] = parseEventLogs({ abi: contracts.providerRegistryAbi, logs: staked.logs, eventName: 'Staked' })
    expect(stakedEvent?.args).toEqual({ provider: p1, amount: MIN_STAKE, stake: MIN_STAKE })
    expect(await read.active(devices.d1.address)).toBe(false) // not registered yet

    const receipt = await tx.register(p1, devices.d1.address, await consent('d1', p1))
    recordGas('registerDevice', receipt)
    const [event] = parseEventLogs({ abi: contracts.providerRegistryAbi, logs: receipt.logs, eventName: 'DeviceRegistered' })
    expect(event?.args).toEqual({ provider: p1, device: devices.d1.address })
    expect(await read.active(devices.d1.address)).toBe(true)
    expect(await read.providerOf(devices.d1.address)).toBe(p1)
    expect(await read.nonce(devices.d1.address)).toBe(1n)
    expect(await read.provider(p1)).toEqual({ stake: MIN_STAKE, unstakeAmount: 0n, unstakeAvailableAt: 0n, deviceCount: 1 })

    await tx.register(p1, devices.d2.address, await consent('d2', p1))
    expect(await read.active(devices.d2.address)).toBe(true)
    expect((await read.provider(p1)).deviceCount).toBe(2)
  })

  it('refuses a device registered by two providers, and registrations without the device consent', async () => {
    await tx.stake(p2, 2n * MIN_STAKE)
    // d1 belongs to p1, even with d1's genuine consent for p2.
    const d1ForP2 = await consent('d1', p2)
    await expectRevert(() => tx.register(p2, devices.d1.address, d1ForP2), 'DeviceAlreadyRegistered', [
      devices.d1.address,
      p1,
    ])
    await expectRevert(async () => tx.register(p1, devices.d1.address, await consent('d1', p1)), 'DeviceAlreadyRegistered')

    // d3's consent was given to p1: p2 cannot use it; nor a signature by another key; nor
    // malformed or empty signatures; nor a consent for a stale or future nonce.
    const d3ForP1 = await consent('d3', p1)
    await expectRevert(() => tx.register(p2, devices.d3.address, d3ForP1), 'InvalidDeviceSignature', [devices.d3.address])
    await expectRevert(async () => tx.register(p2, devices.d3.address, await consent('d2', p2)), 'InvalidDeviceSignature')
    await expectRevert(() => tx.register(p2, devices.d3.address, '0x'), 'InvalidDeviceSignature')
    await expectRevert(() => tx.register(p2, devices.d3.address, `0x${'11'.repeat(65)}`), 'InvalidDeviceSignature')
    await expectRevert(async () => tx.register(p2, devices.d3.address, await consent('d3', p2, 1n)), 'InvalidDeviceSignature')
    await expectRevert(() => tx.register(p2, ZERO, '0x'), 'ZeroAddress')
    expect(await read.providerOf(devices.d3.address)).toBe(ZERO)
    expect(await read.active(devices.d3.address)).toBe(false)
  })

  it('unregisters devices (provider only); old consents cannot be replayed', async () => {
    const oldConsent = await consent('d1', p1, 0n)
    await expectRevert(() => tx.unregister(p2, devices.d1.address), 'NotDeviceProvider', [devices.d1.address, p2])
    await expectRevert(() => tx.unregister(outsider, devices.d3.address), 'NotDeviceProvider')
    const receipt = await tx.unregister(p1, devices.d1.address)
    const [event] = parseEventLogs({ abi: contracts.providerRegistryAbi, logs: receipt.logs, eventName: 'DeviceUnregistered' })
    expect(event?.args).toEqual({ provider: p1, device: devices.d1.address })
    expect(await read.active(devices.d1.address)).toBe(false)
    expect(await read.providerOf(devices.d1.address)).toBe(ZERO)
    expect((await read.provider(p1)).deviceCount).toBe(1)

    // p1 replaying the consent it used before (nonce 0) fails; the device moves to p2 with a
    // fresh consent at nonce 1.
    await expectRevert(() => tx.register(p1, devices.d1.address, oldConsent), 'InvalidDeviceSignature')
    await tx.register(p2, devices.d1.address, await consent('d1', p2))
    expect(await read.providerOf(devices.d1.address)).toBe(p2)
    expect(await read.active(devices.d1.address)).toBe(true)
    expect(await read.nonce(devices.d1.address)).toBe(2n)
  })

  it('deactivates devices while an unstake is pending and pays out after the delay', async () => {
    const d1 = devices.d1.address // p2's, stake 2 ETH
    await expectRevert(() => tx.unstake(p2), 'NoUnstakeRequest', [p2])
    await expectRevert(() => tx.requestUnstake(p2, 2n * MIN_STAKE + 1n), 'InsufficientStake', [p2, 2n * MIN_STAKE, 2n * MIN_STAKE + 1n])
    await expectRevert(() => tx.requestUnstake(p2, 0n), 'ZeroAmount')

    // Any pending request deactivates every device of the provider, even one that would leave
    // enough stake: the edge drains them before stake can leave.
    const requested = await tx.requestUnstake(p2, 1n)
    const requestedAt = (await publicClient.getBlock({ blockNumber: requested.blockNumber })).timestamp
    expect(await read.active(d1)).toBe(false)
    expect(
      await publicClient.readContract({ address: registry, abi: contracts.providerRegistryAbi, functionName: 'isActiveProvider', args: [p2] }),
    ).toBe(false)
    await expectRevert(() => tx.unstake(p2), 'UnstakeNotReady', [requestedAt + UNSTAKE_DELAY])
    await tx.cancelUnstake(p2)
    expect(await read.active(d1)).toBe(true)
    await expectRevert(() => tx.cancelUnstake(p2), 'NoUnstakeRequest')

    // Unstake 1.5 ETH of 2: after the delay the provider is below the minimum, d1 inactive.
    const amount = parseEther('1.5')
    const second = await tx.requestUnstake(p2, amount)
    const availableAt = (await publicClient.getBlock({ blockNumber: second.blockNumber })).timestamp + UNSTAKE_DELAY
    expect(await read.provider(p2)).toEqual({ stake: 2n * MIN_STAKE, unstakeAmount: amount, unstakeAvailableAt: availableAt, deviceCount: 1 })
    await testClient().increaseTime({ seconds: Number(UNSTAKE_DELAY) - 60 })
    await testClient().mine({ blocks: 1 })
    await expectRevert(() => tx.unstake(p2), 'UnstakeNotReady', [availableAt])
    await testClient().increaseTime({ seconds: 60 })
    await testClient().mine({ blocks: 1 })
    const before = await ethBalance(p2)
    const receipt = await tx.unstake(p2)
    recordGas('unstake', receipt)
    expect(await ethBalance(p2)).toBe(before + amount - fee(receipt))
    const [event] = parseEventLogs({ abi: contracts.providerRegistryAbi, logs: receipt.logs, eventName: 'Unstaked' })
    expect(event?.args).toEqual({ provider: p2, amount, stake: 2n * MIN_STAKE - amount })
    expect(await read.active(d1)).toBe(false)
    expect(await read.providerOf(d1)).toBe(p2) // still registered, just not routable

    // Topping the stake back up reactivates it.
    await tx.stake(p2, amount)
    expect(await read.active(d1)).toBe(true)
  })

  it('lets only slashers slash; slashed stake goes to the given account, exactly', async () => {
    const role = await publicClient.readContract({ address: registry, abi: contracts.providerRegistryAbi, functionName: 'SLASHER_ROLE' })
    for (const who of [outsider, admin, p1]) {
      await expectRevert(() => tx.slash(who, p1, 1n, treasury), 'AccessControlUnauthorizedAccount', [who, role])
    }
    await expectRevert(() => tx.slash(slasher, p1, MIN_STAKE + 1n, treasury), 'InsufficientStake', [p1, MIN_STAKE, MIN_STAKE + 1n])
    await expectRevert(() => tx.slash(slasher, p1, 1n, ZERO), 'ZeroAddress')
    await expectRevert(() => tx.slash(slasher, p1, 0n, treasury), 'ZeroAmount')

    const d2 = devices.d2.address // p1's, stake exactly the minimum
    expect(await read.active(d2)).toBe(true)
    const before = await ethBalance(treasury)
    const slashed = parseEther('0.25')
    const receipt = await tx.slash(slasher, p1, slashed, treasury)
    recordGas('slash', receipt)
    expect(await ethBalance(treasury)).toBe(before + slashed)
    const [event] = parseEventLogs({ abi: contracts.providerRegistryAbi, logs: receipt.logs, eventName: 'Slashed' })
    expect(event?.args).toEqual({ provider: p1, amount: slashed, to: treasury, slasher: slasher })
    expect((await read.provider(p1)).stake).toBe(MIN_STAKE - slashed)
    expect(await read.active(d2)).toBe(false) // below the minimum

    // Slashing during a pending unstake: the unstake pays what is left.
    await tx.requestUnstake(p1, MIN_STAKE - slashed)
    await tx.slash(slasher, p1, parseEther('0.5'), treasury)
    await testClient().increaseTime({ seconds: Number(UNSTAKE_DELAY) })
    await testClient().mine({ blocks: 1 })
    const p1Before = await ethBalance(p1)
    const unstaked = await tx.unstake(p1)
    expect(await ethBalance(p1)).toBe(p1Before + parseEther('0.25') - fee(unstaked))
    expect(await read.provider(p1)).toEqual({ stake: 0n, unstakeAmount: 0n, unstakeAvailableAt: 0n, deviceCount: 1 })
  })

  it('holds exactly the total stake; plain transfers bounce', async () => {
    const abi = contracts.providerRegistryAbi
    const total = await publicClient.readContract({ address: registry, abi, functionName: 'totalStaked' })
    const stakes = await Promise.all([p1, p2, p3].map(async (p) => (await read.provider(p)).stake))
    // p1: 1 − 0.25 − 0.5 slashed − 0.25 unstaked = 0; p2: 2 − 1.5 + 1.5; p3: just below the minimum.
    expect(stakes).toEqual([0n, 2n * MIN_STAKE, MIN_STAKE - 1n])
    expect(total).toBe(stakes.reduce((s, v) => s + v, 0n))
    expect(await ethBalance(registry)).toBe(total)
    await expect(publicClient.estimateGas({ account: outsider, to: registry, value: 1n })).rejects.toThrow()
  })
})
