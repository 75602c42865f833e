import { PROTOCOL_VERSION, type DeviceStatus, type Hex } from '@depinfer/shared'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { buildCatalog, catalogKey, NOT_ROUTABLE } from '../gateway/catalog.js'
import { DeviceTable } from '../gateway/device-table.js'
import { RegistryStakeGate, stakeGate, type ActiveDeviceReader } from './device-stakes.js'

const REGISTRY: Hex = `0x${'11'.repeat(20)}`
const A: Hex = `0x${'aa'.repeat(20)}`
const B: Hex = `0x${'bb'.repeat(20)}`
const TTL = 1_000

/** A chain that answers from `active` (or fails while `down`), counting calls per address. */
function fakeChain() {
  const chain = {
    active: new Set<Hex>(),
    providers: new Map<Hex, Hex>(),
    down: false,
    calls: [] as Hex[],
    read: (async (address) => {
      chain.calls.push(address)
      if (chain.down) throw new Error('connection refused')
      return { active: chain.active.has(address), provider: chain.providers.get(address) }
    }) as ActiveDeviceReader,
  }
  return chain
}

describe('RegistryStakeGate', () => {
  afterEach(() => vi.restoreAllMocks())
  const quiet = () => {
    vi.spyOn(console, 'log').mockImplementation(() => {})
    vi.spyOn(console, 'warn').mockImplementation(() => {})
  }

  it('refuses an address never checked, then answers from the cache until the TTL passes', async () => {
    quiet()
    let now = 0
    const chain = fakeChain()
    chain.active.add(A)
    const gate = new RegistryStakeGate(REGISTRY, chain.read, TTL, () => now)
    expect(gate.refusal(A)).toMatch(/not checked yet/)
    await gate.refreshStale([A, B])
    expect(gate.refusal(A)).toBeUndefined()
    expect(gate.refusal(B)).toMatch(/^device not staked \(0xbbbb.* ProviderRegistry 0x1111/)
    // Within the TTL nothing is asked again, however often routing looks.
    now = TTL - 1
    await gate.refreshStale([A, B])
    expect(chain.calls).toEqual([A, B])
    // Unstaked on-chain: seen at the first re-check after the TTL.
    chain.active.delete(A)
    now = TTL
    await gate.refreshStale([A])
    expect(gate.refusal(A)).toMatch(/not staked/)
    expect(chain.calls).toEqual([A, B, A])
  })

  it('moves its revision whenever a refusal may have changed, and only then', async () => {
    quiet()
    let now = 0
    const chain = fakeChain()
    chain.active.add(A)
    const gate = new RegistryStakeGate(REGISTRY, chain.read, TTL, () => now)
    const seen: [string | undefined, number][] = []
    const look = () => seen.push([gate.refusal(A), gate.revision])
    look()
    await gate.refreshStale([A]) // checked: active
    look()
    now = TTL
    await gate.refreshStale([A]) // re-checked, same answer
    look()
    chain.down = true
    now = 2 * TTL
    await gate.refreshStale([A]) // unreadable: the known answer stands
    look()
    chain.down = false
    chain.active.delete(A)
    now = 3 * TTL
    await gate.refreshStale([A]) // unstaked
    look()
    gate.retainOnly([]) // forgotten: "not checked yet" again
    look()
    const revisions = seen.map(([, revision]) => revision)
    // Every change of `refusal(A)` came with a new revision: checked, unstaked, forgotten.
    for (let i = 1; i < seen.length; i++) {
      if (seen[i]![0] !== seen[i - 1]![0]) expect(revisions[i]).toBeGreaterThan(revisions[i - 1]!)
    }
    expect(new Set(revisions).size).toBe(4)
    // The same answer re-checked, and a failed check while the answer is known, change nothing.
    expect(revisions[2]).toBe(revisions[1])
    expect(revisions[3]).toBe(revisions[2])
  })

  it('keeps the last answer while the chain cannot be read; an address never read stays refused', async () => {
    quiet()
    let now = 0
    const chain = fakeChain()
    chain.active.add(A)
    const gate = new RegistryStakeGate(REGISTRY, chain.read, TTL, () => now)
    await gate.refreshStale([A])
    chain.down = true
    now = TTL
    await gate.refreshStale([A, B])
    expect(gate.refusal(A)).toBeUndefined()
    expect(gate.refusal(B)).toMatch(/stake unknown \(ProviderRegistry 0x1111.* could not be read: connection refused\)/)
    // A failed check is retried a TTL later, not on every look.
    await gate.refreshStale([A, B])
    expect(chain.calls).toEqual([A, A, B])
    chain.down = false
    now = 2 * TTL
    await gate.refreshStale([A, B])
    expect(gate.refusal(B)).toMatch(/not staked/)
  })

  it("keeps each address's provider from its last check, for telling devices of one provider apart", async () => {
    quiet()
    let now = 0
    const chain = fakeChain()
    const P: Hex = `0x${'cc'.repeat(20)}`
    chain.active.add(A)
    chain.providers.set(A, P)
    const gate = new RegistryStakeGate(REGISTRY, chain.read, TTL, () => now)
    expect(gate.providerOf(A)).toBeUndefined()
    await gate.refreshStale([A, B])
    expect(gate.providerOf(A)).toBe(P)
    expect(gate.providerOf(B)).toBeUndefined()
    // Unregistered since: the next check forgets the provider.
    chain.providers.delete(A)
    now += TTL
    await gate.refreshStale([A])
    expect(gate.providerOf(A)).toBeUndefined()
  })

  it('runs one check per address at a time', async () => {
    quiet()
    const chain = fakeChain()
    let release: () => void = () => {}
    const slow: ActiveDeviceReader = async (address) => {
      await new Promise<void>((resolve) => (release = resolve))
      return chain.read(address)
    }
    const gate = new RegistryStakeGate(REGISTRY, slow, 0, () => 0)
    const first = gate.refreshStale([A])
    await gate.refreshStale([A]) // TTL 0 but in flight: skipped
    release()
    await first
    expect(chain.calls).toEqual([A])
  })

  it('forgets addresses no longer in use', async () => {
    quiet()
    const chain = fakeChain()
    chain.active.add(A)
    const gate = new RegistryStakeGate(REGISTRY, chain.read, TTL, () => 0)
    await gate.refreshStale([A])
    gate.retainOnly([B])
    expect(gate.refusal(A)).toMatch(/not checked yet/)
  })
})

describe('stakeGate (from env vars)', () => {
  const stakeGateFromEnv = (vars: Parameters<typeof stakeGate>[0]) => stakeGate(vars, () => async () => ({ active: true, provider: undefined }))
  const env = { CHAIN_ID: '31337', CHAIN_RPC_URL: 'http://127.0.0.1:1', PROVIDER_REGISTRY_ADDRESS: REGISTRY }

  it('is off without a registry: nothing changes for unstaked networks', () => {
    expect(stakeGateFromEnv({ ...env, PROVIDER_REGISTRY_ADDRESS: '' })).toBeUndefined()
    expect(stakeGateFromEnv({ CHAIN_ID: '', CHAIN_RPC_URL: '' })).toBeUndefined()
  })

  it('reads the TTL, defaulting to 30 s', () => {
    expect(stakeGateFromEnv(env)?.ttlMs).toBe(30_000)
    expect(stakeGateFromEnv({ ...env, DEVICE_STAKE_TTL_MS: '1500' })?.ttlMs).toBe(1_500)
  })

  it('refuses every device, saying why, when the registry is set but the chain is not usable', () => {
    vi.spyOn(console, 'error').mockImplementation(() => {})
    expect(stakeGateFromEnv({ ...env, CHAIN_ID: '' })?.refusal(A)).toMatch(/CHAIN_ID is not/)
    expect(stakeGateFromEnv({ ...env, CHAIN_RPC_URL: '' })?.refusal(A)).toMatch(/CHAIN_RPC_URL is not/)
    expect(stakeGateFromEnv({ ...env, PROVIDER_REGISTRY_ADDRESS: '0x12' })?.refusal(A)).toMatch(/PROVIDER_REGISTRY_ADDRESS must be an Ethereum address/)
    // A checksum typo, refused as payments refuse it: the two must agree on the registry.
    expect(stakeGateFromEnv({ ...env, PROVIDER_REGISTRY_ADDRESS: '0x90F79bf6EB2c4f870365E785982E1f101E93b907' })?.refusal(A)).toMatch(/EIP-55 checksum/)
    vi.restoreAllMocks()
  })
})

describe('buildCatalog with a refusal', () => {
  const model = {
    name: 'm',
    version: '1',
    sha256: 'ab'.repeat(32),
    platform: 'onnxruntime_onnx' as const,
    inputs: [],
    outputs: [],
    maxBatch: 1,
    state: 'ready' as const,
  }
  const status = (deviceId: string): DeviceStatus => ({
    protocol: PROTOCOL_VERSION,
    deviceId,
    online: true,
    publicKey: `0x02${'cd'.repeat(32)}`,
    models: [model],
  })

  it('lists a model served only by refused devices as UNAVAILABLE with the reason, not ready', () => {
    const table = new DeviceTable(() => 0)
    table.applyStatus(status('d1'))
    table.applyStatus(status('d2'))
    const refused = buildCatalog(table, (d) => `device not staked (${d.deviceId})`).get(catalogKey('m', '1', model.sha256))!
    expect(refused).toMatchObject({ state: 'UNAVAILABLE', readyDevices: [] })
    expect(refused.reason).toBe(`${NOT_ROUTABLE}: d1: device not staked (d1); d2: device not staked (d2)`)

    const partly = buildCatalog(table, (d) => (d.deviceId === 'd1' ? 'device not staked' : undefined)).get(catalogKey('m', '1', model.sha256))!
    expect(partly).toMatchObject({ state: 'READY', reason: '' })
    expect(partly.readyDevices.map((d) => d.deviceId)).toEqual(['d2'])
    // Without a refusal (no registry configured), routing is as before.
    expect(buildCatalog(table).get(catalogKey('m', '1', model.sha256))!.readyDevices).toHaveLength(2)
  })
})
