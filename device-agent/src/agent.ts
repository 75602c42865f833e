/**
 * The device agent: advertises what this device serves (retained status, last-will presence,
 * heartbeats with load), runs the jobs sent to it, and answers each one exactly once.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { performance } from 'node:perf_hooks'
import {
  attestationToWire,
  decodeFrames,
  inputCommitment,
  outputHash,
  prepareSigning,
  type Attestation,
  type AttestationWire,
  type Hex,
  deviceClientId,
  deviceHeartbeatTopic,
  deviceJobsTopic,
  deviceStatusTopic,
  encodeFrame,
  type DecodedFrame,
  isGatewayResultsTopic,
  JobHeaderSchema,
  MAX_TENSOR_BYTES,
  PROTOCOL_VERSION,
  type Heartbeat,
  type JobErrorCode,
  type JobHeader,
  type RawTensor,
  type ResultHeader,
  messageOf,
  stackOf,
} from '@depinfer/shared'
import type { MqttClient } from 'mqtt'
import { connectBroker } from './broker/connect.js'
import { brokerWarnings } from './broker/warnings.js'
import { FrameOutbox } from './broker/frame-outbox.js'
import type { AgentConfig } from './config.js'
import { deviceStatus, identityOf } from './device-status.js'
import { AttestationSigner } from './keys/attestation-signer.js'
import { loadDeviceKey } from './keys/device-key.js'
import type { ProgressFactory } from './models/progress.js'
import { ModelProvisioner } from './models/provision.js'
import { Batcher, DeadlineExceededError } from './runtime/batcher.js'
import { OrtRuntime } from './runtime/execution.js'
import { loadModel, modelsFromConfig, modelSha256, type LoadedModel } from './runtime/loaded-model.js'
import { ModelProcessError } from './runtime/process-session.js'
import { checkJobTensors, InvalidJobInputError } from './runtime/run-job.js'

const EWMA_WEIGHT = 0.2
/** How long a stop waits for the broker to acknowledge the offline status. */
const STOP_PUBLISH_WAIT_MS = 2_000
/**
 * How long a stop waits for the jobs already received to be answered before it says offline
 * (the edge fails a job whose device goes offline, even one about to be answered). Covers the
 * edge's default job deadline (30 s). Supervisors kill sooner or later (`docker stop` after 10 s
 * unless given `--time`, systemd after 90 s); a second Ctrl-C ends the process as soon as this
 * thread is free (a run on the agent's thread holds it until the run returns).
 */
const STOP_DRAIN_WAIT_MS = 30_000
/**
 * How long a stop keeps listening once it holds no job: jobs the edge sent before it saw the
 * draining status are still on their way (or unread in the socket while a run held the thread).
 */
const DRAIN_QUIET_MS = 300
const DRAIN_POLL_MS = 20

/** Waits until `promise` settles or `ms` pass, whichever is first; never rejects. */
async function waitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms)
  })
  try {
    await Promise.race([promise.then(() => {}, () => {}), timeout])
  } finally {
    clearTimeout(timer)
  }
}

export interface RunningAgent {
  deviceId: string
  /**
   * Resolves once every configured model has finished loading (or failed to), downloads
   * included; published models found by a later listing come after it.
   */
  modelsSettled: Promise<void>
  stop(): Promise<void>
}

export interface AgentOptions {
  /** How download progress is shown (cli.ts: a bar on a terminal); default: none. */
  progress?: ProgressFactory
}

interface ServedModel {
  loaded: LoadedModel
  batcher: Batcher
}

/** Starts serving: loads the device key (throws DeviceKeyError without one), connects, loads models. */
export async function startAgent(config: AgentConfig, log: (message: string) => void, options: AgentOptions = {}): Promise<RunningAgent> {
  const { deviceId } = config
  const key = await loadDeviceKey(config.keyPath)
  for (const warning of brokerWarnings(config.broker, deviceId)) log(`WARNING: ${warning}`)
  prepareSigning()
  const signer = new AttestationSigner(key.privateKey)
  const runtime = new OrtRuntime(config.ort, log, { sessionsChanged: () => publishStatus() })
  const serve = (loaded: LoadedModel): ServedModel => ({
    loaded,
    // maxBatch is read per batch: it is only known (and only > 1) once the model has loaded.
    batcher: new Batcher((inputs, outputs, limits) => loaded.session!.run(inputs, outputs, limits), {
      get maxBatch() {
        return loaded.maxBatch
      },
      maxQueueDelayMs: config.batching.maxQueueDelayMs,
    }),
  })
  const served: ServedModel[] = modelsFromConfig(config).map(serve)
  const sessionSettings = { runtime, maxBatch: config.batching.maxBatch, log }
  let inflight = 0
  let ewmaMs = 0
  /** Set by stop(): the status says so (the edge routes nothing new here), and jobs still arriving are answered. */
  let draining = false
  /** Set once the stop has drained: a job arriving after that is turned away (the edge retries it elsewhere). */
  let closing = false
  /** When the last job arrived (performance.now()): the drain waits for a quiet spell. */
  let lastJobAt = 0

  const identity = identityOf(key, deviceId)
  const status = (online = true) => deviceStatus(deviceId, served.map(({ loaded }) => loaded), online, identity, runtime.status(), draining)

  const publishStatus = () => {
    if (client.connected) {
      client.publish(deviceStatusTopic(deviceId), JSON.stringify(status()), { qos: 1, retain: true })
    }
  }

  const client: MqttClient = connectBroker({
    url: config.broker.url,
    clientId: deviceClientId(deviceId),
    username: config.broker.username,
    password: config.broker.password,
    tls: config.broker.tls,
    keepaliveSec: config.broker.keepaliveSec,
    // The broker publishes this when we vanish (MQTT §3.1.2.5); the gateway keeps the models it
    // already knew for a will that lists none.
    will: { topic: deviceStatusTopic(deviceId), payload: JSON.stringify({ protocol: PROTOCOL_VERSION, deviceId, online: false, models: [] }) },
    reconnect: config.reconnect,
    log,
    onConnect: (connected) => {
      connected.subscribe(deviceJobsTopic(deviceId), { qos: 1 })
      publishStatus()
    },
    onMessage: (topic, payload) => {
      if (topic === deviceJobsTopic(deviceId)) handleJobs(payload)
    },
  })
  const results = new FrameOutbox((topic, message) => client.publish(topic, message, { qos: 1 }))

  // Downloaded models (URL and published sources) go through the provisioner: into the cache,
  // verified, then loaded; the status is published at each step.
  const provisioner = new ModelProvisioner({
    config,
    models: () => served.map(({ loaded }) => loaded),
    load: (loaded) => loadModel(loaded, sessionSettings),
    added: (loaded) => {
      served.push(serve(loaded))
      publishStatus()
    },
    changed: publishStatus,
    retired: (loaded) => {
      const index = served.findIndex((model) => model.loaded === loaded)
      if (index < 0) return
      const [{ batcher }] = served.splice(index, 1) as [ServedModel]
      // Off the status first (the edge routes no more of its jobs here; one already on its way
      // is answered model_unavailable and retried elsewhere), then released once its queue is done.
      publishStatus()
      void batcher
        .idle()
        .then(() => loaded.session?.release())
        // A release that fails leaves a session behind, not a reason to end the agent.
        .catch((error: unknown) => log(`releasing ${loaded.name} v${loaded.version}: ${messageOf(error)}`))
    },
    log,
    ...(options.progress && { progress: options.progress }),
  })
  const modelsSettled = Promise.all([
    ...served
      .filter(({ loaded }) => !loaded.remote)
      .map(async ({ loaded }) => {
        await loadModel(loaded, sessionSettings)
        if (loaded.state === 'failed') log(`model ${loaded.name} failed to load: ${loaded.error}`)
        else log(`model ${loaded.name} v${loaded.version} ready (sha256 ${loaded.sha256?.slice(0, 12)}…)`)
        publishStatus()
      }),
    provisioner.start(
      served.filter(({ loaded }) => loaded.remote).map(({ loaded }) => loaded),
      { poll: true },
    ),
  ]).then(() => undefined)

  const heartbeat = setInterval(() => {
    if (!client.connected) return
    const queued = served.reduce((sum, { batcher }) => sum + batcher.queued, 0)
    const beat: Heartbeat = {
      // `inflight` counts every job received and not answered, queued ones included.
      inflight: inflight - queued,
      queued,
      ewmaMs,
      ts: Date.now(),
    }
    client.publish(deviceHeartbeatTopic(deviceId), JSON.stringify(beat), { qos: 0 })
  }, config.heartbeatSec * 1000)
  // The retained status again, unchanged (config.statusRefreshSec says why).
  const statusRefresh = setInterval(publishStatus, config.statusRefreshSec * 1000)

  /** A message on the jobs topic: one or more job frames (shared/frame.ts). */
  function handleJobs(payload: Buffer): void {
    try {
      for (const frame of decodeFrames(payload)) void handleJob(frame)
    } catch (error) {
      // Without a valid header there is no trustworthy reply topic: log and drop; the edge's
      // timeout answers the caller (the frames before the malformed one are being run).
      log(`dropping undecodable job: ${messageOf(error)}`)
    }
  }

  async function handleJob(frame: DecodedFrame): Promise<void> {
    const receivedAt = performance.now()
    lastJobAt = receivedAt
    const parsed = JobHeaderSchema.safeParse(frame.header)
    if (!parsed.success) {
      log(`dropping undecodable job: ${parsed.error.issues[0]!.message}`)
      return
    }
    const header: JobHeader = parsed.data
    const inputs: RawTensor[] = frame.tensors
    if (!isGatewayResultsTopic(header.replyTo, deviceId)) {
      log(`dropping job ${header.jobId}: reply topic ${header.replyTo} is not a gateway's results topic for this device`)
      return
    }
    inflight++
    let queueMs = 0
    let inferMs = 0
    let batchJobs = 1
    /** Set by the first reply: a job is answered once, and counted out of `inflight` once. */
    let answered = false
    const reply = (
      outputs: RawTensor[],
      error?: { code: JobErrorCode; message: string; field?: string },
      attestation?: AttestationWire,
    ) => {
      if (answered) return
      answered = true
      inflight--
      const result: ResultHeader = {
        protocol: PROTOCOL_VERSION,
        jobId: header.jobId,
        deviceId,
        attempt: header.attempt,
        ...(error && { error }),
        ...(attestation && { attestation }),
        timings: { queueMs, inferMs, totalMs: performance.now() - receivedAt, batchJobs },
      }
      let frame: Uint8Array
      try {
        frame = encodeFrame(result, outputs)
      } catch (encodeError) {
        // Outputs the frame cannot carry (FrameError): answered as the device's failure, not left
        // unanswered until the edge's timeout.
        log(`job ${header.jobId}: cannot encode its result: ${messageOf(encodeError)}`)
        frame = encodeFrame({ ...result, attestation: undefined, error: { code: 'internal', message: `the result could not be encoded: ${messageOf(encodeError)}` } }, [])
      }
      results.send(header.replyTo, frame)
    }

    if (closing) {
      // Not `model_unavailable`: a device's fault all the same, and the edge retries elsewhere at once.
      return reply([], { code: 'overloaded', message: `device ${deviceId} is shutting down` })
    }
    const model = served.find(
      ({ loaded }) => loaded.name === header.model.name && loaded.version === header.model.version,
    )
    if (!model || modelSha256(model.loaded) !== header.model.sha256 || model.loaded.state !== 'ready') {
      return reply([], {
        code: 'model_unavailable',
        message: `model ${header.model.name} v${header.model.version} (${header.model.sha256.slice(0, 12)}…) is not ready here`,
      })
    }
    try {
      checkJobTensors(model.loaded, inputs, header.outputs)
      // A downloaded model may be hostile (a row answered with another's input): it batches only
      // the jobs of one caller; the bundled and local files the provider chose batch all.
      const group = model.loaded.remote ? (header.batchGroup ?? header.jobId) : undefined
      const result = await model.batcher.submit({ inputs, outputs: header.outputs, group }, header.deadlineMs)
      ;({ queueMs, inferMs, batchJobs } = result)
      const outputBytes = result.outputs.reduce((sum, t) => sum + t.data.byteLength, 0)
      if (outputBytes > MAX_TENSOR_BYTES) {
        // The answer could not reach the caller (the edge's Durable Object call carries 32 MiB
        // at most, see MAX_TENSOR_BYTES): the same on every device, so the caller's to fix by
        // asking for fewer outputs.
        // Only one output, or asked for one already: a smaller input is the only way left.
        const fewer = result.outputs.length > 1 ? 'ask for fewer with `outputs`, or send a smaller input' : 'send a smaller input (a smaller batch or image)'
        return reply([], {
          code: 'invalid_input',
          message: `the outputs are ${outputBytes} bytes, more than the ${MAX_TENSOR_BYTES} one result may carry: ${fewer}`,
          field: 'outputs',
        })
      }
      // Service time per job: a batch of n shares one run.
      const perJobMs = inferMs / batchJobs
      ewmaMs = ewmaMs === 0 ? perJobMs : ewmaMs * (1 - EWMA_WEIGHT) + perJobMs * EWMA_WEIGHT
      // Hashed after the run, not alongside it: a run on the agent's thread holds it (nothing to
      // overlap with), and one in a worker thread is long (ort.runIn) next to the SHA-256 (~0.08 ms
      // for a 48×192 image).
      const inputHash = inputCommitment(Buffer.from(header.attest.salt.slice(2), 'hex'), inputs)
      // Attested with the file that ran (a variant's own sha256 when it is one), not the model's identity.
      reply(result.outputs, undefined, await attest(header, model.loaded.sha256!, inputHash, result.outputs))
    } catch (error) {
      if (error instanceof DeadlineExceededError) {
        return reply([], { code: 'deadline_exceeded', message: `${error.message} (${header.deadlineMs} ms)` })
      }
      if (error instanceof InvalidJobInputError) {
        return reply([], { code: 'invalid_input', message: error.message, field: error.field })
      }
      if (error instanceof ModelProcessError) {
        log(`job ${header.jobId}: ${error.message}`)
        return reply([], { code: 'model_failed', message: error.message })
      }
      log(`job ${header.jobId} failed: ${stackOf(error)}`)
      reply([], { code: 'internal', message: messageOf(error) })
    }
  }

  /**
   * Signs what this device did for the job (EIP-712, see shared/attestation), in one signature
   * with the other jobs of its batch.
   */
  async function attest(header: JobHeader, modelSha256: string, inputHash: Hex, outputs: RawTensor[]): Promise<AttestationWire> {
    const attestation: Attestation = {
      jobId: header.jobId as Hex,
      modelHash: `0x${modelSha256}`,
      inputHash,
      outputHash: outputHash(outputs),
      device: key.address,
      price: BigInt(header.attest.priceWei),
      completedAt: BigInt(Date.now()),
    }
    const domain = { chainId: BigInt(header.attest.chainId), verifyingContract: header.attest.verifyingContract as Hex }
    return attestationToWire(attestation, await signer.sign(domain, attestation))
  }

  let stopped: Promise<void> | undefined
  return {
    deviceId,
    modelsSettled,
    stop: () => (stopped ??= stop()),
  }

  async function stop(): Promise<void> {
    const deadline = performance.now() + STOP_DRAIN_WAIT_MS
    draining = true
    // First the edge hears that the device is draining: it routes nothing new here but still
    // awaits the jobs it sent. Those are answered before the device says it is offline (the
    // edge would fail them otherwise, or run them again elsewhere), including the ones still on
    // their way, until a quiet spell with nothing in hand (or the deadline).
    if (client.connected) {
      await waitAtMost(client.publishAsync(deviceStatusTopic(deviceId), JSON.stringify(status()), { qos: 1, retain: true }), STOP_PUBLISH_WAIT_MS)
    }
    if (inflight > 0) log(`finishing ${inflight} job(s) before stopping`)
    while (performance.now() < deadline && (inflight > 0 || performance.now() - lastJobAt < DRAIN_QUIET_MS)) {
      await sleep(DRAIN_POLL_MS)
    }
    closing = true
    clearInterval(heartbeat)
    clearInterval(statusRefresh)
    // Before the sessions are released: no download or load may finish after that.
    await provisioner.stop()
    // Answers still in the outbox leave before the offline status.
    results.flush()
    // A clean stop publishes the offline status itself: the broker sends the will only when a
    // client vanishes without DISCONNECT (MQTT §3.1.2.5). Waited for briefly, not forever: the
    // connection can drop meanwhile (a broker restart, a twin with our client id).
    if (client.connected) {
      const published = client.publishAsync(deviceStatusTopic(deviceId), JSON.stringify(status(false)), { qos: 1, retain: true })
      await waitAtMost(published, STOP_PUBLISH_WAIT_MS)
    }
    // mqtt.js's graceful end waits for every unacknowledged message, and once ending it never
    // reconnects to get them acknowledged: with any left (or no connection) that wait would never
    // end, so the stop is forced. The broker then sends the will, which also says offline.
    const graceful = client.connected && Object.keys(client.outgoing).length === 0
    await client.endAsync(!graceful)
    await Promise.all(served.map(({ loaded }) => loaded.session?.release()))
  }
}
