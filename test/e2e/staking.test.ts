/**
 * Providers stake, and the edge routes only to staked devices (issue 6) — on a real anvil with
 * the real ProviderRegistry: a device the local network registered serves at once; an online
 * device nobody staked for is listed as not routable and gets no job (503 saying why, nothing on
 * the wire); once its provider stakes and registers it, it serves within the re-check interval;
 * when the provider asks to unstake it stops getting jobs after the next re-check; a device whose
 * key is not the registered address never gets a job, whatever address it claims; and when the
 * chain cannot be read the edge keeps its last answers.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { type Address, createPublicClient, createWalletClient, type Hex, http, parseEther } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { foundry } from 'viem/chains'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { providerRegistryAbi } from '../../contracts/generated/index.js'
import { initDeviceKey, loadDeviceKey } from '../../device-agent/src/keys/device-key.js'
import { localDeviceKeyPath } from '../../scripts/local/agent-process.js'
import { ANVIL_PROVIDER_PRIVATE_KEY } from '../../scripts/local/chain.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { waitFor } from '../../scripts/local/wait-for.js'
import {
  addressOf,
  deviceClientId,
  deviceHeartbeatTopic,
  deviceStatusTopic,
  gatewayClientId,
  parseDeviceTopic,
  PROTOCOL_VERSION,
  publicKeyOf,
  signDeviceKeyProof,
  type DeviceStatus,
  type ModelDescriptor,
} from '../../shared/src/index.js'
import { startRpcProxy, type RpcProxy } from '../helpers/rpc-proxy.js'
import { apiClient, type ApiClient } from './support.js'

/** Short, so registration and unstaking show within seconds; production defaults to 30 s. */
const TTL_MS = 1_000
/** Staked by the local network before it starts (the default for every agent). */
const STAKED = 'staking-staked'
/** Started unregistered; its provider stakes and registers it during the suite. */
const LATE = 'staking-late'
/** Runs with its own key while another key is what its provider registered. */
const MISMATCHED = 'staking-mismatched'
/** anvil's well-known dev key #8: the provider of LATE (not the network's default provider). */
const PROVIDER_KEY: Hex = '0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97'
const CLS_SHAPE = [1, 3, 48, 32]
const clsJob = () => ({ inputs: [{ name: 'x', datatype: 'FP32', shape: CLS_SHAPE, data: new Array(3 * 48 * 32).fill(0.25) }] })
const detJob = () => ({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, 32, 32], data: new Array(3 * 32 * 32).fill(0.5) }] })

interface RepositoryEntry {
  name: string
  version: string
  state: string
  reason: string
}

describe('the edge routes only to staked devices', () => {
  let network: LocalNetwork
  let api: ApiClient
  let rpc: RpcProxy
  let observer: mqtt.MqttClient
  let chain: ReturnType<typeof createPublicClient>
  let registry: Address
  const keyDir = mkdtempSync(join(tmpdir(), 'depinfer-staking-'))
  /** Jobs the broker carried, per device id. */
  const jobsOnWire = new Map<string, number>()
  const jobsTo = async (deviceId: string) => {
    // A job would be on the wire before its answer came back; give the observer a moment anyway.
    await new Promise((resolve) => setTimeout(resolve, 300))
    return jobsOnWire.get(deviceId) ?? 0
  }
  const isActiveDevice = (device: Address) => chain.readContract({ address: registry, abi: providerRegistryAbi, functionName: 'isActiveDevice', args: [device] })
  const entry = async (model: string): Promise<RepositoryEntry> => {
    const response = await api.post('/v2/repository/index')
    expect(response.status, response.text).toBe(200)
    const found = (JSON.parse(response.text) as RepositoryEntry[]).find((e) => e.name === model)
    expect(found, `${model} in ${response.text}`).toBeDefined()
    return found!
  }
  const ready = async (model: string) => (await api.get(`/v2/models/${model}/ready`)).status === 200
  const addressOfKeyFile = async (path: string) => (await loadDeviceKey(path)).address as Address

  beforeAll(async () => {
    rpc = await startRpcProxy()
    network = await startLocalNetwork({
      build: false,
      chain: true,
      staking: true,
      agents: [{ deviceId: STAKED, models: 'ppocr-det' }],
      // The stake gate reads through the fault-injecting proxy; the test reads the chain directly.
      edgeVars: { DEVICE_STAKE_TTL_MS: String(TTL_MS), CHAIN_SUBMIT_RPC_URL: rpc.url },
    })
    rpc.target = network.chain!.rpcUrl
    registry = network.chain!.providerRegistryAddress
    chain = createPublicClient({ chain: foundry, transport: http(network.chain!.rpcUrl) })
    api = apiClient(network.edge.url, network.apiKey)
    observer = await mqtt.connectAsync(network.broker.tcpUrl, { clientId: gatewayClientId('staking-observer'), reconnectPeriod: 200 })
    observer.on('message', (topic) => {
      const parsed = parseDeviceTopic(topic)
      if (parsed?.kind === 'jobs') jobsOnWire.set(parsed.deviceId, (jobsOnWire.get(parsed.deviceId) ?? 0) + 1)
    })
    await observer.subscribeAsync('depinfer/v1/devices/+/jobs', { qos: 1 })
  })
  afterAll(async () => {
    await observer?.endAsync(true)
    await network?.close()
    await rpc?.close()
    rmSync(keyDir, { recursive: true, force: true })
  })

  it('serves from a device the local network staked and registered before starting it', async () => {
    const device = await addressOfKeyFile(localDeviceKeyPath(STAKED))
    expect(await isActiveDevice(device)).toBe(true)
    const provider = privateKeyToAccount(ANVIL_PROVIDER_PRIVATE_KEY).address
    expect(await chain.readContract({ address: registry, abi: providerRegistryAbi, functionName: 'providerOf', args: [device] })).toBe(provider)
    // Routable from its first status: no waiting for a re-check.
    await waitFor('ppocr-det ready', async () => ((await ready('ppocr-det')) ? true : undefined), 60_000)
    const response = await api.post('/v2/models/ppocr-det/infer', detJob())
    expect(response.status, response.text).toBe(200)
    expect(response.body.parameters).toMatchObject({ device_id: STAKED, attestation_device: device.toLowerCase() })
  })

  it('lists an online device nobody staked for as not routable and sends it no job (503 saying why)', async () => {
    const agent = network.startAgent({ deviceId: LATE, models: 'ppocr-cls', stake: false })
    await agent.started
    const device = await addressOfKeyFile(localDeviceKeyPath(LATE))
    expect(await isActiveDevice(device)).toBe(false)
    // Online and loaded: the repository says why it is not used rather than hiding it.
    const listed = await waitFor('ppocr-cls listed as not staked', async () => {
      const e = await entry('ppocr-cls')
      return e.reason.includes('device not staked') ? e : undefined
    }, 60_000)
    expect(listed.state).toBe('UNAVAILABLE')
    expect(listed.reason).toContain(`${LATE}: device not staked (${device.toLowerCase()} is not an active device in ProviderRegistry ${registry.toLowerCase()}`)
    const model = await api.get('/v2/models/ppocr-cls')
    expect(model.body.parameters).toMatchObject({ state: 'UNAVAILABLE', ready_devices: 0 })

    const response = await api.post('/v2/models/ppocr-cls/infer', clsJob())
    expect(response.status, response.text).toBe(503)
    expect(response.body).toMatchObject({ type: 'urn:depinfer:problem:no-capacity', field: 'model' })
    expect(response.body.detail).toContain('device not staked')
    expect(response.body.detail).toContain(device.toLowerCase())
    expect(await jobsTo(LATE)).toBe(0)
    // Still not routed to after several re-checks: it is the answer, not a race.
    await new Promise((resolve) => setTimeout(resolve, 3 * TTL_MS))
    expect((await api.post('/v2/models/ppocr-cls/infer', clsJob())).status).toBe(503)
    expect(await jobsTo(LATE)).toBe(0)
  })

  it('serves from it within the re-check interval once its provider stakes and registers it', async () => {
    const device = await addressOfKeyFile(localDeviceKeyPath(LATE))
    // The provider stakes the minimum and registers the device, which signs its consent with
    // its key file (what `ProviderRegistry.registerDevice` checks).
    await network.chain!.registerDevice(localDeviceKeyPath(LATE), PROVIDER_KEY)
    const registeredAt = Date.now()
    expect(await isActiveDevice(device)).toBe(true)
    await waitFor('ppocr-cls ready after staking', async () => ((await ready('ppocr-cls')) ? true : undefined), 10_000, 50)
    const tookMs = Date.now() - registeredAt
    // One TTL until the answer is stale, plus the re-check itself and this poll.
    expect(tookMs).toBeLessThan(TTL_MS + 2_000)
    const response = await api.post('/v2/models/ppocr-cls/infer', clsJob())
    expect(response.status, response.text).toBe(200)
    expect(response.body.parameters).toMatchObject({ device_id: LATE, attestation_device: device.toLowerCase() })
    expect(await jobsTo(LATE)).toBe(1)
    console.log(`staking: a newly registered device was routable ${tookMs} ms after its registration (TTL ${TTL_MS} ms)`)
  })

  it('stops sending it jobs after the next re-check once its provider requests to unstake', async () => {
    const device = await addressOfKeyFile(localDeviceKeyPath(LATE))
    const provider = createWalletClient({ account: privateKeyToAccount(PROVIDER_KEY), chain: foundry, transport: http(network.chain!.rpcUrl) })
    const hash = await provider.writeContract({ address: registry, abi: providerRegistryAbi, functionName: 'requestUnstake', args: [network.chain!.minStake] })
    expect((await chain.waitForTransactionReceipt({ hash })).status).toBe('success')
    const requestedAt = Date.now()
    // Inactive on-chain at once (the stake stays for the unstake delay, still slashable).
    expect(await isActiveDevice(device)).toBe(false)
    await waitFor('ppocr-cls no longer ready', async () => ((await ready('ppocr-cls')) ? undefined : true), 10_000, 50)
    expect(Date.now() - requestedAt).toBeLessThan(TTL_MS + 2_000)
    const before = await jobsTo(LATE)
    const response = await api.post('/v2/models/ppocr-cls/infer', clsJob())
    expect(response.status, response.text).toBe(503)
    expect(response.body.detail).toContain('device not staked')
    expect(await jobsTo(LATE)).toBe(before)
    expect((await entry('ppocr-cls')).reason).toContain(`${LATE}: device not staked`)
    await network.agents.find((a) => a.deviceId === LATE)!.stop()
  })

  it('never routes to a device whose key is not the registered address, whatever address it claims', async () => {
    // The provider registers the key in `registeredKeyPath`; the agent runs with another key.
    const registeredKeyPath = join(keyDir, 'registered.key')
    const registered = initDeviceKey(registeredKeyPath).address as Address
    const providerKey = generatePrivateKey()
    const funder = createWalletClient({ account: privateKeyToAccount(PROVIDER_KEY), chain: foundry, transport: http(network.chain!.rpcUrl) })
    const funding = await funder.sendTransaction({ to: privateKeyToAccount(providerKey).address, value: parseEther('1') })
    await chain.waitForTransactionReceipt({ hash: funding })
    await network.chain!.registerDevice(registeredKeyPath, providerKey)
    expect(await isActiveDevice(registered)).toBe(true)

    const agent = network.startAgent({ deviceId: MISMATCHED, models: 'ppocr-cls', stake: false })
    await agent.started
    const own = await addressOfKeyFile(localDeviceKeyPath(MISMATCHED))
    expect(own).not.toBe(registered)
    try {
      const listed = await waitFor('the mismatched device listed', async () => {
        const e = await entry('ppocr-cls')
        return e.reason.includes(`${MISMATCHED}: device not staked (${own.toLowerCase()}`) ? e : undefined
      }, 60_000)
      expect(listed.state).toBe('UNAVAILABLE')

      // A forged status naming the registered address, with a key of its own: the edge checks
      // the address of the key it verifies attestations with, not the one a device names.
      const forgerKey = privateKeyBytes(generatePrivateKey())
      const forgedKey = publicKeyOf(forgerKey)
      const forger = await fakeDevice('staking-forger', forgerKey, [await servedModel('ppocr-cls')], { address: registered.toLowerCase() as Hex })
      try {
        const forged = await waitFor('the forged device listed', async () => {
          const e = await entry('ppocr-cls')
          return e.reason.includes('staking-forger: device not staked') ? e : undefined
        }, 10_000)
        expect(forged.reason).toContain(addressOf(forgedKey))
        expect(forged.state).toBe('UNAVAILABLE')
        // Several re-checks later, still nothing is routed to either.
        await new Promise((resolve) => setTimeout(resolve, 2 * TTL_MS))
        const response = await api.post('/v2/models/ppocr-cls/infer', clsJob())
        expect(response.status, response.text).toBe(503)
        expect(await jobsTo(MISMATCHED)).toBe(0)
        expect(await jobsTo('staking-forger')).toBe(0)
      } finally {
        await forger.close()
      }
    } finally {
      await agent.stop()
    }
  })

  it("routes nothing to a device that advertises a staked device's public key without holding its private key", async () => {
    // A public key is public (every status carries it): the borrower signs its proof with its own key.
    const staked = await loadDeviceKey(localDeviceKeyPath(STAKED))
    const det = await servedModel('ppocr-det')
    // Also a model only it serves, so the index says why it is not routed.
    const borrowed = { ...det, name: 'staking-borrowed' }
    const borrower = await fakeDevice('staking-borrower', privateKeyBytes(generatePrivateKey()), [det, borrowed], { publicKey: staked.publicKey })
    try {
      const listed = await waitFor('the borrower listed', async () => {
        const e = await entry('staking-borrowed')
        return e.reason.includes('staking-borrower: the device advertises no signing key it proves to hold') ? e : undefined
      }, 10_000)
      expect(listed.state).toBe('UNAVAILABLE')
      const refused = await api.post('/v2/models/staking-borrowed/infer', detJob())
      expect(refused.status, refused.text).toBe(503)
      // The staked device it borrowed the key of serves ppocr-det alone.
      for (let i = 0; i < 5; i++) {
        const response = await api.post('/v2/models/ppocr-det/infer', detJob())
        expect(response.status, response.text).toBe(200)
        expect(response.body.parameters).toMatchObject({ device_id: STAKED })
      }
      expect(await jobsTo('staking-borrower')).toBe(0)
    } finally {
      await borrower.close()
    }
  })

  it('keeps the last answers while the chain cannot be read: staked devices serve, unchecked ones wait', async () => {
    const probe = { ...(await servedModel('ppocr-det')), name: 'staking-probe' }
    rpc.mode = 'down'
    try {
      // Several failed re-checks of the staked device: it keeps serving.
      await new Promise((resolve) => setTimeout(resolve, 3 * TTL_MS))
      for (let i = 0; i < 3; i++) {
        const response = await api.post('/v2/models/ppocr-det/infer', detJob())
        expect(response.status, response.text).toBe(200)
        expect(response.body.parameters).toMatchObject({ device_id: STAKED })
      }
      // A device first seen now cannot be checked: not routable, and the reason says so.
      const newcomer = await fakeDevice('staking-newcomer', privateKeyBytes(generatePrivateKey()), [probe])
      try {
        const listed = await waitFor('the newcomer listed as unknown', async () => {
          const e = await entry('staking-probe')
          return e.reason.includes('could not be read') ? e : undefined
        }, 10_000)
        expect(listed.state).toBe('UNAVAILABLE')
        expect(listed.reason).toContain('staking-newcomer: device stake unknown (ProviderRegistry')
        const response = await api.post('/v2/models/staking-probe/infer', detJob())
        expect(response.status, response.text).toBe(503)
        expect(await jobsTo('staking-newcomer')).toBe(0)
      } finally {
        await newcomer.close()
      }
    } finally {
      rpc.mode = 'pass'
    }
  })

  /** The descriptor the edge lists for a model served by the network's agents. */
  const servedModel = async (name: string): Promise<ModelDescriptor> => {
    const meta = (await api.get(`/v2/models/${name}`)).body as { sha256: string; inputs: ModelDescriptor['inputs']; outputs: ModelDescriptor['outputs'] }
    return { name, version: '1', sha256: meta.sha256, platform: 'onnxruntime_onnx', inputs: meta.inputs, outputs: meta.outputs, maxBatch: 1, state: 'ready' }
  }

  /**
   * A device that only announces itself (status and heartbeats over the real broker) and never
   * answers: enough to see whether the edge would route to it. It holds `privateKey` and proves
   * it (keyProof); `claims` changes what its status says: the address it names, or the public
   * key it advertises (another's, which it cannot prove to hold).
   */
  const fakeDevice = async (deviceId: string, privateKey: Uint8Array, models: ModelDescriptor[], claims: { address?: Hex; publicKey?: Uint8Array } = {}) => {
    const client = await mqtt.connectAsync(network.broker.tcpUrl, { protocolVersion: 4, clientId: deviceClientId(deviceId), reconnectPeriod: 0 })
    const publicKey = claims.publicKey ?? publicKeyOf(privateKey)
    const status: DeviceStatus = {
      protocol: PROTOCOL_VERSION,
      deviceId,
      online: true,
      publicKey: `0x${Buffer.from(publicKey).toString('hex')}`,
      address: claims.address ?? addressOf(publicKey),
      keyProof: signDeviceKeyProof(privateKey, deviceId),
      models,
    }
    await client.publishAsync(deviceStatusTopic(deviceId), JSON.stringify(status), { qos: 1, retain: true })
    // Claims to be fast, so the scheduler would prefer it if it were routable at all.
    const beat = () => client.publish(deviceHeartbeatTopic(deviceId), JSON.stringify({ inflight: 0, queued: 0, ewmaMs: 0.01, ts: Date.now() }))
    beat()
    const heartbeat = setInterval(beat, 1_000)
    return {
      async close() {
        clearInterval(heartbeat)
        const offline = { protocol: PROTOCOL_VERSION, deviceId, online: false, models: [] }
        await client.publishAsync(deviceStatusTopic(deviceId), JSON.stringify(offline), { qos: 1, retain: true })
        await client.endAsync()
      },
    }
  }
})

const privateKeyBytes = (hex: Hex) => Uint8Array.from(Buffer.from(hex.slice(2), 'hex'))
