/**
 * A dishonest device for the attestation tests — a deliberate fake, because a real agent never
 * produces these faults: it speaks the real protocol (shared/ frames, topics, schemas) over the
 * real broker and advertises a real key, but answers each job with an attestation that is wrong
 * in one chosen way. It does not run the model (its outputs are zeros of the right shape): the
 * edge must refuse it on the attestation alone.
 */
import mqtt, { type MqttClient } from 'mqtt'
import {
  addressOf,
  attestationToWire,
  decodeFrames,
  type DecodedFrame,
  deviceClientId,
  deviceHeartbeatTopic,
  deviceJobsTopic,
  deviceStatusTopic,
  encodeFrame,
  inputCommitment,
  JobHeaderSchema,
  outputHash,
  PROTOCOL_VERSION,
  publicKeyOf,
  signAttestation,
  signDeviceKeyProof,
  type Attestation,
  type DeviceStatus,
  type Hex,
  type ModelDescriptor,
  type RawTensor,
  type ResultHeader,
} from '@depinfer/shared'
import { bytesToHex, hexToBytes } from 'viem'
import { generatePrivateKey } from 'viem/accounts'

export type RogueMode =
  /** Advertises key A, signs with key B. */
  | 'forged-signature'
  /** Signs honestly with its own key but names another device's address in the attestation. */
  | 'wrong-device'
  /** Signs the real outputs' hash, then changes an output value before sending. */
  | 'tampered-output'
  /** Sends its result without any attestation. */
  | 'missing'
  /**
   * Says it runs a file of its own under the model's name and version (`model.runs`, e.g. an
   * int8 file never published for that version) and attests that file honestly.
   */
  | 'unpublished-file'
  /** Advertises its key without the proof that it holds it (keyProof), and answers honestly. */
  | 'unproven-key'
  /** Answers every job with invalid_input, in words of its own. */
  | 'refuse-input'
  /** Answers every job with deadline_exceeded, as a busy device does when a job's budget is tiny. */
  | 'deadline-exceeded'
  /** Signs honestly, over outputs that are not the model's (an extra INT64 tensor). */
  | 'wrong-outputs'
  /** Signs honestly over outputs it never computed (zeros of the right shape): only a re-run (spot check) shows it. */
  | 'lazy'
  /**
   * Fails each of its jobs as overloaded (so the edge retries it elsewhere under the same job
   * id), then keeps sending results for that job in the name of `victimId` for a while.
   */
  | 'impersonate'

export interface RogueDevice {
  deviceId: string
  address: Hex
  privateKey: Hex
  /** Jobs it has received (and answered badly). */
  jobsReceived(): number
  close(): Promise<void>
}

const keyBytes = (hex: Hex) => hexToBytes(hex)

export async function startRogueDevice(options: {
  brokerUrl: string
  deviceId: string
  model: ModelDescriptor
  /** More models it lists (and answers the same way). */
  alsoServes?: ModelDescriptor[]
  mode: RogueMode
  /** The device 'impersonate' answers in the name of. */
  victimId?: string
  /** Its signing key (default: a fresh one), e.g. another rogue's `privateKey` under a new id. */
  privateKey?: Hex
}): Promise<RogueDevice> {
  const { deviceId, model, mode } = options
  const privateKey = options.privateKey ?? generatePrivateKey()
  const ownKey = keyBytes(privateKey)
  const otherKey = keyBytes(generatePrivateKey())
  const publicKey = publicKeyOf(ownKey)
  const address = addressOf(publicKey)
  let jobs = 0

  const client: MqttClient = await mqtt.connectAsync(options.brokerUrl, {
    protocolVersion: 4,
    clientId: deviceClientId(deviceId),
    clean: true,
    reconnectPeriod: 0,
  })
  const status: DeviceStatus = {
    protocol: PROTOCOL_VERSION,
    deviceId,
    online: true,
    publicKey: bytesToHex(publicKey),
    address,
    ...(mode !== 'unproven-key' && { keyProof: signDeviceKeyProof(ownKey, deviceId) }),
    models: [model, ...(options.alsoServes ?? [])],
  }
  await client.subscribeAsync(deviceJobsTopic(deviceId), { qos: 1 })
  await client.publishAsync(deviceStatusTopic(deviceId), JSON.stringify(status), { qos: 1, retain: true })
  // Claims to be very fast, so the gateway's scheduler prefers it over an honest device.
  const beat = () => client.publishAsync(deviceHeartbeatTopic(deviceId), JSON.stringify({ inflight: 0, queued: 0, ewmaMs: 0.01, ts: Date.now() }), { qos: 1 })
  // The first one QoS 1 and after the status's PUBACK, like the status: the broker passes both on
  // in that order, so the gateway knows the device (a heartbeat before its status is ignored)
  // and already believes it fast by the time it is listed as ready.
  await beat()
  const heartbeat = setInterval(() => void beat().catch(() => {}), 1_000)

  client.on('message', (_topic, payload) => {
    for (const frame of decodeFrames(payload)) answer(frame)
  })

  function answer(frame: DecodedFrame): void {
    const header = JobHeaderSchema.parse(frame.header)
    jobs++
    if (mode === 'impersonate') return impersonate(header.jobId, header.attempt, header.replyTo)
    if (mode === 'refuse-input') return refuse(header.jobId, header.attempt, header.replyTo)
    if (mode === 'deadline-exceeded') return missDeadline(header.jobId, header.attempt, header.replyTo, header.deadlineMs)
    const rows = frame.tensors[0]!.shape[0]!
    const outputs: RawTensor[] = model.outputs.map((spec) => {
      const shape = spec.shape.map((d, i) => (d >= 0 ? d : i === 0 ? rows : 1))
      const elements = shape.reduce((a, b) => a * b, 1)
      return { name: spec.name, datatype: spec.datatype, shape, data: new Uint8Array(4 * elements) }
    })
    if (mode === 'wrong-outputs') outputs.push({ name: 'pwned', datatype: 'INT64', shape: [3], data: new Uint8Array(24) })
    const attestation: Attestation = {
      jobId: header.jobId as Hex,
      modelHash: `0x${mode === 'unpublished-file' && model.runs ? model.runs.sha256 : header.model.sha256}`,
      inputHash: inputCommitment(hexToBytes(header.attest.salt as Hex), frame.tensors),
      outputHash: outputHash(outputs),
      device: mode === 'wrong-device' ? addressOf(publicKeyOf(otherKey)) : address,
      price: BigInt(header.attest.priceWei),
      completedAt: BigInt(Date.now()),
    }
    const domain = { chainId: BigInt(header.attest.chainId), verifyingContract: header.attest.verifyingContract as Hex }
    const signingKey = mode === 'forged-signature' ? otherKey : ownKey
    const signature = signAttestation(signingKey, domain, attestation)
    if (mode === 'tampered-output') outputs[0]!.data[0] = 0x3f // after signing
    const result: ResultHeader = {
      protocol: PROTOCOL_VERSION,
      jobId: header.jobId,
      deviceId,
      attempt: header.attempt,
      timings: { queueMs: 0, inferMs: 0.1, totalMs: 0.1, batchJobs: 1 },
      ...(mode !== 'missing' && { attestation: attestationToWire(attestation, signature) }),
    }
    client.publish(header.replyTo, Buffer.from(encodeFrame(result, outputs)), { qos: 1 })
  }

  const resultHeader = (jobId: string, attempt: number, from: string, error?: ResultHeader['error']): ResultHeader => ({
    protocol: PROTOCOL_VERSION,
    jobId,
    deviceId: from,
    attempt,
    timings: { queueMs: 0, inferMs: 0.1, totalMs: 0.1, batchJobs: 1 },
    ...(error && { error }),
  })

  function refuse(jobId: string, attempt: number, replyTo: string): void {
    const error = { code: 'invalid_input' as const, message: 'ROGUE: your input was rejected', field: 'inputs' }
    client.publish(replyTo, Buffer.from(encodeFrame(resultHeader(jobId, attempt, deviceId, error), [])), { qos: 1 })
  }

  function missDeadline(jobId: string, attempt: number, replyTo: string, deadlineMs: number): void {
    const error = { code: 'deadline_exceeded' as const, message: `queued past the job's deadline (${deadlineMs} ms)` }
    client.publish(replyTo, Buffer.from(encodeFrame(resultHeader(jobId, attempt, deviceId, error), [])), { qos: 1 })
  }

  function impersonate(jobId: string, attempt: number, replyTo: string): void {
    const result = (from: string, error?: ResultHeader['error']) => resultHeader(jobId, attempt, from, error)
    client.publish(replyTo, Buffer.from(encodeFrame(result(deviceId, { code: 'overloaded', message: 'busy' }), [])), { qos: 1 })
    // While the retry runs on the victim: a result without attestation in its name, every 2 ms.
    const forged = Buffer.from(encodeFrame(result(options.victimId!), []))
    const flood = setInterval(() => client.publish(replyTo, forged, { qos: 0 }), 2)
    setTimeout(() => clearInterval(flood), 500)
  }

  return {
    deviceId,
    address,
    privateKey,
    jobsReceived: () => jobs,
    async close() {
      clearInterval(heartbeat)
      await client.publishAsync(
        deviceStatusTopic(deviceId),
        JSON.stringify({ protocol: PROTOCOL_VERSION, deviceId, online: false, models: [] }),
        { qos: 1, retain: true },
      )
      await client.endAsync()
    },
  }
}
