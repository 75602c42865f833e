/**
 * The agent against a real broker (the embedded aedes), with this test playing the gateway:
 * it publishes job frames and reads result frames exactly as the edge does.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { Aedes } from 'aedes'
import { recoverTypedDataAddress } from 'viem'
import mqtt from 'mqtt'
import * as ort from 'onnxruntime-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  attestationFromWire,
  attestationTypedData,
  bytesOf,
  inputCommitment,
  outputHash,
  type Hex,
  decodeFrames,
  type DecodedFrame,
  DeviceStatusSchema,
  deviceJobsTopic,
  deviceHeartbeatTopic,
  deviceStatusTopic,
  encodeFrame,
  gatewayClientId,
  joinFrames,
  MAX_TENSOR_BYTES,
  gatewayResultsTopic,
  PROTOCOL_VERSION,
  ResultHeaderSchema,
  sha256Hex,
  typedElements,
  type DeviceStatus,
  type JobHeader,
  type RawTensor,
} from '@depinfer/shared'
import { spawnAgent } from '../../scripts/local/agent-process.js'
import { startLocalBroker, type LocalBroker } from '../../scripts/local/broker.js'
import { waitFor } from '../../scripts/local/wait-for.js'
import { startAgent, type RunningAgent } from './agent.js'
import { AgentConfigSchema } from './config.js'
import { initDeviceKey } from './keys/device-key.js'
import { bundledModelPath } from './models/bundled.js'
import { buildModel, rawData, slowModel, slowModelInputs } from '../../test/helpers/onnx-model.js'
import { temporaryDirectory } from '../../test/helpers/temporary-directory.js'

const DEVICE = 'agent-under-test'
const RESULTS = gatewayResultsTopic('test', DEVICE)
const clsSha256 = sha256Hex(readFileSync(bundledModelPath('ppocr-cls')))
/** Jobs are named in the tests; on the wire their ids are bytes32. */
const idOf = (name: string): Hex => `0x${sha256Hex(name)}`
const DOMAIN = { chainId: 31337n, verifyingContract: `0x${'42'.repeat(20)}` as Hex }
const SALT: Hex = `0x${'5a'.repeat(32)}`

/** A ppocr-cls job's frame as the gateway at RESULTS sends it (`overrides` change its header). */
function jobFrame(name: string, inputs: RawTensor[], overrides: Partial<JobHeader> = {}): Buffer {
  const header: JobHeader = {
    protocol: PROTOCOL_VERSION,
    jobId: idOf(name),
    replyTo: RESULTS,
    model: { name: 'ppocr-cls', version: '1', sha256: clsSha256 },
    outputs: [],
    deadlineMs: 10_000,
    attempt: 1,
    attest: { chainId: String(DOMAIN.chainId), verifyingContract: DOMAIN.verifyingContract, salt: SALT, priceWei: '1234' },
    ...overrides,
  }
  return Buffer.from(encodeFrame(header, inputs))
}
const keyPath = join(temporaryDirectory('agent-key-'), 'device.key')

/** A new device key in a file of its own (`depinfer-agent init`), for an agent of one test: its path. */
function newDeviceKeyFile(): string {
  const path = join(temporaryDirectory('agent-key-'), 'device.key')
  initDeviceKey(path)
  return path
}

describe('device agent', () => {
  let broker: LocalBroker
  let agent: RunningAgent
  let gateway: mqtt.MqttClient
  const results = new Map<string, DecodedFrame>()
  /** Which results message (counted from 1) each job's result came in. */
  const resultMessageOf = new Map<string, number>()
  let resultMessages = 0
  let lastStatus: DeviceStatus | undefined
  const agentLog: string[] = []
  let deviceAddress: Hex

  const job = (name: string, inputs: RawTensor[], overrides: Partial<JobHeader> = {}) =>
    gateway.publish(deviceJobsTopic(DEVICE), jobFrame(name, inputs, overrides), { qos: 1 })
  const resultOf = (name: string) => waitFor(`result of ${name}`, async () => results.get(idOf(name)), 10_000, 5)
  const image = (h: number, w: number, value = 0.3): RawTensor => ({
    name: 'x',
    datatype: 'FP32',
    shape: [1, 3, h, w],
    data: bytesOf(new Float32Array(3 * h * w).fill(value)),
  })

  beforeAll(async () => {
    broker = await startLocalBroker()
    gateway = await mqtt.connectAsync(broker.tcpUrl, { clientId: gatewayClientId('test') })
    gateway.on('message', (topic, payload) => {
      if (topic === RESULTS) {
        resultMessages++
        for (const frame of decodeFrames(payload)) {
          results.set(String(frame.header.jobId), frame)
          resultMessageOf.set(String(frame.header.jobId), resultMessages)
        }
      } else if (topic === deviceStatusTopic(DEVICE) && payload.length > 0) {
        lastStatus = DeviceStatusSchema.parse(JSON.parse(payload.toString()))
      }
    })
    await gateway.subscribeAsync([RESULTS, deviceStatusTopic(DEVICE)], { qos: 1 })
    const config = AgentConfigSchema.parse({
      deviceId: DEVICE,
      broker: { url: broker.tcpUrl },
      models: [{ bundled: 'ppocr-cls' }, { name: 'broken', version: '1', path: '/nonexistent/model.onnx' }],
      heartbeatSec: 0.2,
      statusRefreshSec: 0.5,
      keyPath,
    })
    deviceAddress = initDeviceKey(keyPath).address
    agent = await startAgent(config, (line) => agentLog.push(line))
    await agent.modelsSettled
    await waitFor('the ready status', async () => (lastStatus?.models.some((m) => m.state === 'ready') ? true : undefined))
  })
  afterAll(async () => {
    await agent?.stop()
    await gateway?.endAsync()
    await broker?.close()
  })

  it('advertises its models with the file sha256 and real metadata, and skips one that fails to load', () => {
    expect(lastStatus).toMatchObject({
      deviceId: DEVICE,
      online: true,
      models: [
        {
          name: 'ppocr-cls',
          version: '1',
          sha256: clsSha256,
          state: 'ready',
          inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 3, -1, -1] }],
          outputs: [{ name: 'softmax_0.tmp_0', datatype: 'FP32', shape: [-1, 2] }],
        },
      ],
      hw: { cpus: expect.any(Number), memMB: expect.any(Number) },
    })
    expect(lastStatus!.models).toHaveLength(1) // the broken model is not advertised as servable
  })

  it('answers a job with exactly what onnxruntime computes on the same input', async () => {
    const input = image(48, 96)
    job('ok-1', [input])
    const { header, tensors } = await resultOf('ok-1')
    expect(ResultHeaderSchema.parse(header)).toMatchObject({ jobId: idOf('ok-1'), deviceId: DEVICE, attempt: 1 })
    expect(header.error).toBeUndefined()
    const session = await ort.InferenceSession.create(bundledModelPath('ppocr-cls'))
    const direct = await session.run({ x: new ort.Tensor('float32', new Float32Array(3 * 48 * 96).fill(0.3), [1, 3, 48, 96]) })
    await session.release()
    expect(tensors).toHaveLength(1)
    expect(tensors[0]).toMatchObject({ name: 'softmax_0.tmp_0', datatype: 'FP32', shape: [1, 2] })
    expect(Array.from(typedElements('FP32', tensors[0]!.data) as Float32Array)).toEqual(Array.from(direct['softmax_0.tmp_0']!.data as Float32Array))
  })

  it('signs every result with its advertised key, over the salted inputs and the outputs it returned', async () => {
    expect(lastStatus).toMatchObject({ address: deviceAddress, publicKey: expect.stringMatching(/^0x0[23]/) })
    const input = image(48, 64, 0.7)
    job('signed', [input])
    const { header, tensors } = await resultOf('signed')
    const { attestation, signature } = attestationFromWire(header.attestation)
    expect(attestation).toMatchObject({
      jobId: idOf('signed'),
      modelHash: `0x${clsSha256}`,
      device: deviceAddress,
      price: 1234n,
      inputHash: inputCommitment(Buffer.from(SALT.slice(2), 'hex'), [input]),
      outputHash: outputHash(tensors),
    })
    // Checked with viem, independently of the protocol package's own verification.
    const signer = await recoverTypedDataAddress({ ...attestationTypedData(DOMAIN, attestation), signature })
    expect(signer.toLowerCase()).toBe(deviceAddress)
  })

  it('runs the jobs of one message as one batch, answers each as if it ran alone, all in one message', async () => {
    const values = [0.1, 0.4, 0.7, 0.9]
    const names = values.map((v) => `together-${v}`)
    const message = joinFrames(names.map((name, i) => jobFrame(name, [image(48, 64, values[i])])))
    gateway.publish(deviceJobsTopic(DEVICE), Buffer.from(message), { qos: 1 })
    const answers = await Promise.all(names.map(resultOf))
    const session = await ort.InferenceSession.create(bundledModelPath('ppocr-cls'))
    for (const [i, { header, tensors }] of answers.entries()) {
      expect(ResultHeaderSchema.parse(header)).toMatchObject({ jobId: idOf(names[i]!), timings: { batchJobs: 4 } })
      expect(header.error).toBeUndefined()
      const direct = await session.run({ x: new ort.Tensor('float32', new Float32Array(3 * 48 * 64).fill(values[i]!), [1, 3, 48, 64]) })
      const expected = direct['softmax_0.tmp_0']!.data as Float32Array
      const got = typedElements('FP32', tensors[0]!.data) as Float32Array
      expect(tensors[0]!.shape).toEqual([1, 2])
      got.forEach((value, k) => expect(value).toBeCloseTo(expected[k]!, 5))
    }
    await session.release()
    expect(new Set(names.map((name) => resultMessageOf.get(idOf(name)))).size).toBe(1)
  })

  it('refuses to start without a device key, and init refuses to replace one', async () => {
    const config = AgentConfigSchema.parse({ deviceId: 'keyless', broker: { url: broker.tcpUrl }, models: [{ bundled: 'ppocr-cls' }], keyPath: '/nonexistent/device.key' })
    await expect(startAgent(config, () => {})).rejects.toThrow(/depinfer-agent init/)
    expect(() => initDeviceKey(keyPath)).toThrow(/already exists/)
    expect(statSync(keyPath).mode & 0o777).toBe(0o600)
  })

  it.each([
    ['a wrong datatype', { ...image(48, 48), datatype: 'INT32' as const }, 'inputs[0].datatype'],
    ['a wrong rank', { ...image(48, 48), shape: [3, 48, 48] }, 'inputs[0].shape'],
    // Refused before onnxruntime, which aborts the whole process on an empty batch of some models.
    ['an empty batch', { ...image(48, 48), shape: [0, 3, 48, 48], data: new Uint8Array(0) }, 'inputs[0].shape'],
  ])('answers %s with an invalid_input error naming the field, and keeps serving', async (_what, tensor, field) => {
    const id = `bad-${field}-${tensor.shape.join('x')}`
    job(id, [tensor])
    const bad = await resultOf(id)
    expect(bad.header.error).toMatchObject({ code: 'invalid_input', field })
    job(`${id}-after`, [image(48, 48)])
    expect((await resultOf(`${id}-after`)).header.error).toBeUndefined()
  })

  it('refuses a job for a model file it does not have (sha256 mismatch) as model_unavailable', async () => {
    job('wrong-sha', [image(48, 48)], { model: { name: 'ppocr-cls', version: '1', sha256: 'f'.repeat(64) } })
    expect((await resultOf('wrong-sha')).header.error).toMatchObject({ code: 'model_unavailable' })
  })

  it('survives garbage on its jobs topic and never replies to a topic that is not a gateway results topic', async () => {
    gateway.publish(deviceJobsTopic(DEVICE), Buffer.from('not a frame'), { qos: 1 })
    let hijacked = false
    const spy = await mqtt.connectAsync(broker.tcpUrl, { clientId: gatewayClientId('spy') })
    spy.on('message', () => (hijacked = true))
    const otherDevicesResults = gatewayResultsTopic('test', 'other-device')
    await spy.subscribeAsync([`depinfer/v1/devices/${DEVICE}/heartbeat-hijack`, otherDevicesResults], { qos: 1 })
    job('hijack', [image(48, 48)], { replyTo: `depinfer/v1/devices/${DEVICE}/heartbeat-hijack` })
    // Another device's results topic: answering there would be answering in its name.
    job('impersonate', [image(48, 48)], { replyTo: otherDevicesResults })
    // Jobs are handled in order: once the next job is answered, the earlier ones were handled.
    job('after-garbage', [image(48, 48)])
    expect((await resultOf('after-garbage')).header.error).toBeUndefined()
    expect(results.has(idOf('hijack'))).toBe(false)
    expect(results.has(idOf('impersonate'))).toBe(false)
    expect(agentLog).toContainEqual(expect.stringMatching(new RegExp(`dropping job ${idOf('impersonate')}: reply topic .*other-device is not`)))
    expect(hijacked).toBe(false)
    await spy.endAsync()
  })

  it('reconnects after the broker restarts and advertises itself again', async () => {
    const { tcpPort, wsPort } = broker
    await gateway.endAsync(true)
    await broker.close()
    lastStatus = undefined
    broker = await startLocalBroker({ tcpPort, wsPort })
    gateway = await mqtt.connectAsync(broker.tcpUrl, { clientId: gatewayClientId('test') })
    gateway.on('message', (topic, payload) => {
      if (topic === deviceStatusTopic(DEVICE) && payload.length > 0) lastStatus = DeviceStatusSchema.parse(JSON.parse(payload.toString()))
      if (topic === RESULTS) for (const frame of decodeFrames(payload)) results.set(String(frame.header.jobId), frame)
    })
    await gateway.subscribeAsync([RESULTS, deviceStatusTopic(DEVICE)], { qos: 1 })
    await waitFor('the status on the new broker', async () => (lastStatus?.online ? true : undefined), 20_000)
    job('after-restart', [image(48, 48)])
    expect((await resultOf('after-restart')).header.error).toBeUndefined()
  })

  it('publishes its retained status again, so a broker that lost it has it back', async () => {
    // Cleared the way a gateway forgets a device (an empty retained message).
    await gateway.publishAsync(deviceStatusTopic(DEVICE), Buffer.alloc(0), { qos: 1, retain: true })
    const retainedStatus = async () => {
      const probe = await mqtt.connectAsync(broker.tcpUrl, { clientId: gatewayClientId(`probe-${Date.now()}`) })
      let retained: string | undefined
      probe.on('message', (_topic, payload, packet) => packet.retain && payload.length > 0 && (retained = payload.toString()))
      await probe.subscribeAsync(deviceStatusTopic(DEVICE), { qos: 1 })
      await new Promise((resolve) => setTimeout(resolve, 100))
      await probe.endAsync(true)
      return retained
    }
    expect(await retainedStatus()).toBeUndefined()
    await waitFor('the status retained again', async () => (await retainedStatus()) && true, 5_000)
    expect(JSON.parse((await retainedStatus())!)).toMatchObject({ deviceId: DEVICE, online: true })
  })

  it('publishes a retained offline status when stopped', async () => {
    await agent.stop()
    await waitFor('the offline status', async () => (lastStatus?.online === false ? true : undefined))
    expect(lastStatus!.models[0]?.sha256).toBe(clsSha256)
  })
})

describe('two agents started with the same device id', () => {
  it('warns, once each, that another process uses the device id, and backs off instead of reconnecting at once', async () => {
    const broker = await startLocalBroker()
    const twinKey = newDeviceKeyFile()
    const config = AgentConfigSchema.parse({
      deviceId: 'twin',
      broker: { url: broker.tcpUrl },
      // A model that fails at once: this is about the connection, not serving.
      models: [{ name: 'none', version: '1', path: '/nonexistent/model.onnx' }],
      heartbeatSec: 5,
      reconnect: { minMs: 50, maxMs: 400 },
      keyPath: twinKey,
    })
    const logs: [string[], string[]] = [[], []]
    const agents: RunningAgent[] = []
    try {
      for (const log of logs) agents.push(await startAgent(config, (message) => log.push(message)))
      const warned = (log: string[]) => log.filter((message) => /another process is probably connected with the same device id \(MQTT client id depinfer-device-twin\)/.test(message))
      await waitFor('both agents to warn', async () => (logs.every((log) => warned(log).length > 0) ? true : undefined), 10_000, 20)
      // Each warned once for the streak, and the delays grew past the minimum: dropping each
      // other no longer resets the back-off, which used to stay at minMs (every 50 ms here) forever.
      await new Promise((resolve) => setTimeout(resolve, 1_000))
      for (const log of logs) expect(warned(log)).toHaveLength(1)
      const delays = logs.flat().flatMap((message) => /reconnecting in (\d+) ms/.exec(message)?.[1] ?? []).map(Number)
      expect(delays.filter((delay) => delay > 100).length).toBeGreaterThan(2)
    } finally {
      await Promise.all(agents.map((agent) => agent.stop()))
      await broker.close()
    }
  })
})

describe('stopping while the broker does not acknowledge', () => {
  it('returns within seconds when its offline status is never acknowledged, instead of waiting forever', async () => {
    // A broker that never authorizes (so never acknowledges) an offline status: a stand-in for
    // a connection that drops while that publish is in flight, which a test cannot time. Before,
    // mqtt.js's graceful end waited for the acknowledgement, and stop() never returned.
    let offlineHeld = false
    const aedes = await Aedes.createBroker({
      authorizePublish: (_client, packet, callback) => {
        const offline = packet.topic === deviceStatusTopic('unacknowledged') && /"online":false/.test(packet.payload.toString())
        if (offline && packet.retain) offlineHeld = true
        else callback(null)
      },
    })
    const sockets = new Set<Socket>()
    const server = createServer((socket) => {
      sockets.add(socket)
      aedes.handle(socket)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as { port: number }).port
    const key = newDeviceKeyFile()
    const logs: string[] = []
    const stopping = await startAgent(
      AgentConfigSchema.parse({
        deviceId: 'unacknowledged',
        broker: { url: `mqtt://127.0.0.1:${port}` },
        models: [{ name: 'none', version: '1', path: '/nonexistent/model.onnx' }],
        keyPath: key,
      }),
      (message) => logs.push(message),
    )
    try {
      await waitFor('the agent connected', async () => (logs.some((m) => m.startsWith('connected to')) ? true : undefined))
      const started = Date.now()
      await stopping.stop()
      expect(offlineHeld).toBe(true)
      expect(Date.now() - started).toBeLessThan(10_000)
    } finally {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
    }
  })
})

describe('stopping with jobs in hand', () => {
  it('answers a job whose outputs would not fit one message with invalid_input naming outputs, and keeps serving', async () => {
    // y = Expand(x, [n]): one float in, MAX_TENSOR_BYTES + 4 bytes out.
    const n = MAX_TENSOR_BYTES / 4 + 1
    const path = join(temporaryDirectory('agent-huge-'), 'expand.onnx')
    writeFileSync(path, buildModel({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [n] }],
      initializers: [{ name: 'n', datatype: 'INT64', dims: [1], data: rawData(BigInt64Array.of(BigInt(n))) }],
      nodes: [{ opType: 'Expand', inputs: ['x', 'n'], outputs: ['y'] }],
    }))
    const broker = await startLocalBroker()
    const gateway = await mqtt.connectAsync(broker.tcpUrl, { clientId: gatewayClientId('test') })
    const device = 'huge-outputs'
    const answers = new Map<string, DecodedFrame>()
    gateway.on('message', (_topic, payload) => {
      for (const frame of decodeFrames(payload)) answers.set(String(frame.header.jobId), frame)
    })
    await gateway.subscribeAsync(gatewayResultsTopic('test', device), { qos: 1 })
    const key = newDeviceKeyFile()
    const config = AgentConfigSchema.parse({ deviceId: device, broker: { url: broker.tcpUrl }, models: [{ name: 'expand', version: '1', path }], keyPath: key })
    const agent = await startAgent(config, () => {})
    try {
      await agent.modelsSettled
      const send = (name: string) => {
        const frame = jobFrame(name, [{ name: 'x', datatype: 'FP32', shape: [1], data: bytesOf(Float32Array.of(0.5)) }], {
          replyTo: gatewayResultsTopic('test', device),
          model: { name: 'expand', version: '1', sha256: sha256Hex(readFileSync(path)) },
        })
        gateway.publish(deviceJobsTopic(device), frame, { qos: 1 })
      }
      const answerOf = (name: string) => waitFor(`the answer to ${name}`, async () => answers.get(idOf(name)), 20_000, 10)
      send('too-big')
      // One output: asking for fewer cannot help, a smaller input can.
      expect((await answerOf('too-big')).header.error).toMatchObject({
        code: 'invalid_input',
        field: 'outputs',
        message: `the outputs are ${MAX_TENSOR_BYTES + 4} bytes, more than the ${MAX_TENSOR_BYTES} one result may carry: send a smaller input (a smaller batch or image)`,
      })
      // Still connected and serving: the broker never saw an oversized message.
      send('too-big-again')
      expect((await answerOf('too-big-again')).header.error).toMatchObject({ code: 'invalid_input' })
    } finally {
      await agent.stop()
      await gateway.endAsync()
      await broker.close()
    }
  })

  it('says it is draining, answers the jobs it holds and those still arriving, then says offline', async () => {
    const broker = await startLocalBroker()
    const gateway = await mqtt.connectAsync(broker.tcpUrl, { clientId: gatewayClientId('drain-test') })
    const device = 'draining-device'
    const deviceResults = gatewayResultsTopic('test', device)
    /** Result headers and draining / offline statuses, in the order they arrived. */
    const seen: { kind: 'result' | 'draining' | 'offline'; jobId?: string; error?: string; outputs?: number }[] = []
    let queued = 0
    let ready = false
    gateway.on('message', (topic, payload) => {
      if (topic === deviceResults) {
        for (const { header, tensors } of decodeFrames(payload)) {
          const error = (header.error as { code?: string } | undefined)?.code
          seen.push({ kind: 'result', jobId: String(header.jobId), outputs: tensors.length, ...(error && { error }) })
        }
      } else if (topic === deviceStatusTopic(device)) {
        const status = DeviceStatusSchema.parse(JSON.parse(payload.toString()))
        if (!status.online) seen.push({ kind: 'offline' })
        else if (status.draining) {
          if (!seen.some((s) => s.kind === 'draining')) seen.push({ kind: 'draining' })
        } else if (status.models.some((m) => m.state === 'ready')) ready = true
      } else {
        queued = (JSON.parse(payload.toString()) as { queued: number }).queued
      }
    })
    await gateway.subscribeAsync([deviceResults, deviceStatusTopic(device), deviceHeartbeatTopic(device)], { qos: 1 })
    const key = newDeviceKeyFile()
    // A job waits 1 s in the queue for company: long enough to stop the agent while it holds one.
    const config = AgentConfigSchema.parse({
      deviceId: device,
      broker: { url: broker.tcpUrl },
      models: [{ bundled: 'ppocr-cls' }],
      batching: { maxBatch: 8, maxQueueDelayMs: 1_000 },
      heartbeatSec: 0.1,
      keyPath: key,
    })
    const agent = await startAgent(config, () => {})
    try {
      await agent.modelsSettled
      const x: RawTensor = { name: 'x', datatype: 'FP32', shape: [1, 3, 48, 96], data: bytesOf(new Float32Array(3 * 48 * 96).fill(0.3)) }
      const send = (name: string) => gateway.publish(deviceJobsTopic(device), jobFrame(name, [x], { replyTo: deviceResults }), { qos: 1 })
      await waitFor('the agent online', async () => (ready ? true : undefined))
      send('held')
      await waitFor('the job in the queue', async () => (queued === 1 ? true : undefined), 5_000, 10)
      const stopping = agent.stop()
      // Sent before the edge could have seen the draining status: on its way, so answered too.
      send('late')
      await stopping
      await waitFor('the offline status', async () => (seen.some((s) => s.kind === 'offline') ? true : undefined))
      expect(seen[0]).toEqual({ kind: 'draining' })
      expect(seen.slice(1, 3).sort((a, b) => String(a.jobId).localeCompare(String(b.jobId)))).toEqual(
        [
          { kind: 'result', jobId: idOf('held'), outputs: 1 },
          { kind: 'result', jobId: idOf('late'), outputs: 1 },
        ].sort((a, b) => a.jobId.localeCompare(b.jobId)),
      )
      expect(seen.slice(3)).toEqual([{ kind: 'offline' }])
    } finally {
      await agent.stop()
      await gateway.endAsync()
      await broker.close()
    }
  })
})

/** Iterations of slowModel() for a run of about `ms` here, measured on onnxruntime directly (warmed up). */
async function slowRunOf(modelPath: string, ms: number) {
  const direct = await ort.InferenceSession.create(modelPath)
  const x = new ort.Tensor('float32', Float32Array.from({ length: 2 * 64 }, (_, i) => Math.sin(i)), [2, 64])
  const timedRun = () => direct.run({ x, iterations: new ort.Tensor('int64', BigInt64Array.of(20_000n), []) })
  await timedRun()
  const timed = performance.now()
  await timedRun()
  const iterations = BigInt(Math.ceil((ms / Math.max(1, performance.now() - timed)) * 20_000))
  return { direct, x, iterations }
}

/**
 * An agent (in this process) serving slowModel() from a file, heartbeating every 100 ms, with the
 * given `ort` settings, and a gateway client that records its results, heartbeats and status.
 */
async function startSlowModelDevice(name: string, ortSettings: Record<string, unknown>) {
  const broker = await startLocalBroker()
  const gateway = await mqtt.connectAsync(broker.tcpUrl, { clientId: gatewayClientId(`${name}-test`) })
  const device = `${name}-device`
  const deviceResults = gatewayResultsTopic('test', device)
  const modelPath = join(temporaryDirectory('slow-model-'), 'slow.onnx')
  writeFileSync(modelPath, slowModel())
  const results = new Map<string, { at: number; frame: DecodedFrame }>()
  const heartbeats: number[] = []
  let status: DeviceStatus | undefined
  gateway.on('message', (topic, payload) => {
    if (topic === deviceResults) {
      for (const frame of decodeFrames(payload)) results.set(String(frame.header.jobId), { at: performance.now(), frame })
    } else if (topic === deviceStatusTopic(device)) {
      status = DeviceStatusSchema.parse(JSON.parse(payload.toString()))
    } else {
      heartbeats.push(performance.now())
    }
  })
  await gateway.subscribeAsync([deviceResults, deviceStatusTopic(device), deviceHeartbeatTopic(device)], { qos: 1 })
  const key = newDeviceKeyFile()
  const config = AgentConfigSchema.parse({
    deviceId: device,
    broker: { url: broker.tcpUrl },
    models: [{ name: 'slow', version: '1', path: modelPath }],
    heartbeatSec: 0.1,
    keyPath: key,
    ort: ortSettings,
  })
  const agent = await startAgent(config, () => {})
  return { broker, gateway, device, deviceResults, modelPath, results, heartbeats, status: () => status, config, agent }
}

describe('long runs', () => {
  it('ends at a second SIGINT as soon as the run holding its thread returns, without answering the jobs still queued', async () => {
    const broker = await startLocalBroker()
    const gateway = await mqtt.connectAsync(broker.tcpUrl, { clientId: gatewayClientId('second-signal-test') })
    const device = 'second-signal-device'
    const deviceResults = gatewayResultsTopic('test', device)
    const dir = temporaryDirectory('second-signal-')
    const modelPath = join(dir, 'slow.onnx')
    writeFileSync(modelPath, slowModel())
    const answered: string[] = []
    let status: DeviceStatus | undefined
    gateway.on('message', (topic, payload) => {
      if (topic === deviceResults) for (const frame of decodeFrames(payload)) answered.push(String(frame.header.jobId))
      else status = DeviceStatusSchema.parse(JSON.parse(payload.toString()))
    })
    await gateway.subscribeAsync([deviceResults, deviceStatusTopic(device)], { qos: 1 })
    // On the agent's own thread, one job per run: the queued jobs wait for the one running.
    const configPath = join(dir, 'agent.json')
    writeFileSync(
      configPath,
      JSON.stringify({ models: [{ name: 'slow', version: '1', path: modelPath }], batching: { maxBatch: 1 }, ort: { runIn: 'agent-thread' } }),
    )
    const agent = spawnAgent({ deviceId: device, brokerUrl: broker.tcpUrl, configPath, keyPath: join(dir, 'device.key') })
    try {
      await waitFor('the model ready', async () => (status?.models[0]?.state === 'ready' ? true : undefined), 30_000)
      const { direct, iterations } = await slowRunOf(modelPath, 1_500)
      await direct.release()
      const model = { name: 'slow', version: '1', sha256: sha256Hex(readFileSync(modelPath)) }
      const inputs = slowModelInputs(Number(iterations))
      for (const name of ['first', 'second', 'third']) {
        gateway.publish(deviceJobsTopic(device), jobFrame(name, inputs, { replyTo: deviceResults, model, deadlineMs: 30_000 }), { qos: 1 })
      }
      await new Promise((resolve) => setTimeout(resolve, 500)) // the first run under way
      const exited = new Promise<number | null>((resolve) => agent.child.once('exit', (code) => resolve(code)))
      agent.child.kill('SIGINT')
      await new Promise((resolve) => setTimeout(resolve, 300))
      agent.child.kill('SIGINT')
      expect(await exited, agent.output()).toBe(130)
      // A single SIGINT drains: all three would be answered (the drain test above).
      expect(answered.length, agent.output()).toBeLessThan(3)
      expect(agent.output()).toMatch(/SIGINT again: exiting without answering the jobs still held/)
    } finally {
      await agent.kill()
      await gateway.endAsync()
      await broker.close()
    }
  })

  it('goes on heartbeating through a long job once the model has moved to a worker thread (ort.runIn "auto")', async () => {
    const { agent, gateway, broker, device, deviceResults, modelPath, results, heartbeats, status } = await startSlowModelDevice('long-run', {})
    try {
      await agent.modelsSettled
      await waitFor('the model ready', async () => (status()?.models[0]?.state === 'ready' ? true : undefined))
      expect(status()!.models[0]!.thread).toBe('agent-thread')
      expect(status()!.runtime?.runIn).toBe('auto')

      const { direct, x, iterations } = await slowRunOf(modelPath, 2_000)
      const expected = await direct.run({ x, iterations: new ort.Tensor('int64', BigInt64Array.of(iterations), []) })
      await direct.release()

      const inputs: RawTensor[] = [
        { name: 'x', datatype: 'FP32', shape: [2, 64], data: bytesOf(x.data as Float32Array) },
        { name: 'iterations', datatype: 'INT64', shape: [], data: bytesOf(BigInt64Array.of(iterations)) },
      ]
      const model = { name: 'slow', version: '1', sha256: sha256Hex(readFileSync(modelPath)) }
      const send = (name: string, tensors = inputs) => {
        const sentAt = performance.now()
        gateway.publish(deviceJobsTopic(device), jobFrame(name, tensors, { replyTo: deviceResults, model }), { qos: 1 })
        return sentAt
      }
      // A model's first run is not judged (it also sets onnxruntime up): a short one here.
      send('short', [inputs[0]!, { ...inputs[1]!, data: bytesOf(BigInt64Array.of(1n)) }])
      await waitFor('the short result', async () => results.get(idOf('short')), 10_000, 10)
      // On the agent's thread, a long run moves the model...
      send('long-1')
      const first = await waitFor('the first long result', async () => results.get(idOf('long-1')), 30_000, 10)
      await waitFor('the model in a worker thread', async () => (status()?.models[0]?.thread === 'worker-thread' ? true : undefined), 10_000)
      // ...and through the next one the agent heartbeats every 100 ms as if idle.
      const sentAt = send('long-2')
      const second = await waitFor('the second long result', async () => results.get(idOf('long-2')), 30_000, 10)
      const during = heartbeats.filter((at) => at > sentAt && at < second.at)
      const runMs = second.at - sentAt
      expect(runMs).toBeGreaterThan(400)
      // Half the beats of an idle agent at least (a held thread sends none until the run ends).
      expect(during.length).toBeGreaterThanOrEqual(Math.floor(runMs / 100 / 2))
      for (const result of [first, second]) {
        expect(result.frame.header.error).toBeUndefined()
        expect(Buffer.from(result.frame.tensors[0]!.data).equals(Buffer.from(bytesOf(expected.y!.data as Float32Array)))).toBe(true)
      }
    } finally {
      await agent.stop()
      await gateway.endAsync()
      await broker.close()
    }
  })

  it('stops a run in a child process at its job\'s deadline, answers deadline_exceeded, heartbeats throughout, and serves the next job (ort.runIn "child-process")', async () => {
    const { agent, gateway, broker, device, deviceResults, modelPath, results, heartbeats, status, config } = await startSlowModelDevice('process-run', { runIn: 'child-process' })
    try {
      await agent.modelsSettled
      await waitFor('the model ready', async () => (status()?.models[0]?.state === 'ready' ? true : undefined))
      expect(status()!.models[0]!.thread).toBe('child-process')
      expect(status()!.runtime?.processMemoryLimitMb).toBe(config.ort.processMemoryLimitMb)
      const model = { name: 'slow', version: '1', sha256: sha256Hex(readFileSync(modelPath)) }

      // 10^9 iterations: minutes of work, with a 1.5 s deadline.
      const sentAt = performance.now()
      gateway.publish(deviceJobsTopic(device), jobFrame('stuck', slowModelInputs(1e9), { replyTo: deviceResults, model, deadlineMs: 1_500 }), { qos: 1 })
      const stuck = await waitFor('the stuck job\'s answer', async () => results.get(idOf('stuck')), 30_000, 10)
      expect(ResultHeaderSchema.parse(stuck.frame.header).error).toMatchObject({
        code: 'deadline_exceeded',
        message: expect.stringMatching(/still going at the job's deadline; its model's process was stopped/),
      })
      expect(stuck.at - sentAt).toBeGreaterThanOrEqual(1_500)
      expect(stuck.at - sentAt).toBeLessThan(6_000)
      // The agent's thread was free all along: half the beats of an idle agent at least.
      const during = heartbeats.filter((at) => at > sentAt && at < stuck.at)
      expect(during.length).toBeGreaterThanOrEqual(Math.floor((stuck.at - sentAt) / 100 / 2))

      // The model serves on, in a new process, with what onnxruntime computes.
      const inputs = slowModelInputs(200)
      gateway.publish(deviceJobsTopic(device), jobFrame('after', inputs, { replyTo: deviceResults, model }), { qos: 1 })
      const after = await waitFor('the next job\'s answer', async () => results.get(idOf('after')), 30_000, 10)
      expect(after.frame.header.error).toBeUndefined()
      const direct = await ort.InferenceSession.create(modelPath)
      const expected = await direct.run({
        x: new ort.Tensor('float32', new Float32Array(inputs[0]!.data.slice().buffer), [2, 64]),
        iterations: new ort.Tensor('int64', BigInt64Array.of(200n), []),
      })
      await direct.release()
      expect(Buffer.from(after.frame.tensors[0]!.data).equals(Buffer.from(bytesOf(expected.y!.data as Float32Array)))).toBe(true)
      expect(status()!.models[0]!.state).toBe('ready')
    } finally {
      await agent.stop()
      await gateway.endAsync()
      await broker.close()
    }
  })
})
