/** Shared pieces of the end-to-end suites: brokers to run against, an HTTP client, direct ORT. */
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import mqtt from 'mqtt'
import * as ort from 'onnxruntime-node'
import { gatewayClientId, parseDeviceTopic, type Attestation, type Hex } from '../../shared/src/index.js'
import { startLocalBroker, type LocalBroker } from '../../scripts/local/broker.js'
import { MOSQUITTO_BIN, startMosquitto } from '../../scripts/local/mosquitto.js'
import { waitFor } from '../../scripts/local/wait-for.js'
import { temporaryDirectory } from '../helpers/temporary-directory.js'

export interface BrokerKind {
  name: string
  start(ports?: { tcpPort: number; wsPort: number }): Promise<LocalBroker>
}

const mosquittoInstalled = existsSync(MOSQUITTO_BIN)
if (!mosquittoInstalled && process.env.CI) {
  throw new Error(`CI must test against Mosquitto, but ${MOSQUITTO_BIN} is missing (apt-get install mosquitto)`)
}
if (!mosquittoInstalled) console.warn(`mosquitto not installed at ${MOSQUITTO_BIN}: running e2e suites against aedes only`)

/** Every suite runs against the embedded broker and, where installed, a real Mosquitto. */
export const BROKERS: BrokerKind[] = [
  { name: 'aedes', start: (ports) => startLocalBroker(ports ?? {}) },
  ...(mosquittoInstalled ? [{ name: 'mosquitto', start: (ports?: { tcpPort: number; wsPort: number }) => startMosquitto(ports ?? {}) }] : []),
]

export interface ApiResponse {
  status: number
  headers: Headers
  body: Record<string, unknown> & { [key: string]: unknown }
  text: string
}

/**
 * A new connection for each request: workerd closes a keep-alive connection idle for 5 s without
 * saying so, and fetch keeps an idle one for 4 s, by a timer that a loaded machine runs late. A
 * request sent on a connection as workerd closes it fails (EPIPE, ECONNRESET) before reaching the
 * edge, and a test then waits for a job that never comes (failover, under load).
 */
const ONE_REQUEST_PER_CONNECTION = { Connection: 'close' }

export function apiClient(baseUrl: string, apiKey: string) {
  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<ApiResponse> => {
    const response = await fetch(`${baseUrl}${path}`, {
      method,
      headers: { ...ONE_REQUEST_PER_CONNECTION, Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json', ...headers },
      ...(body !== undefined && {
        body: typeof body === 'string' ? body : body instanceof Uint8Array ? new Uint8Array(body) : JSON.stringify(body),
      }),
    })
    const text = await response.text()
    let parsed: Record<string, unknown> = {}
    try {
      parsed = JSON.parse(text)
    } catch {
      // non-JSON bodies are asserted through `text`
    }
    return { status: response.status, headers: response.headers, body: parsed, text }
  }
  return {
    get: (path: string, headers?: Record<string, string>) => call('GET', path, undefined, headers),
    post: (path: string, body?: unknown, headers?: Record<string, string>) => call('POST', path, body, headers),
    /** Any method (DELETE, PUT…). */
    request: call,
  }
}
export type ApiClient = ReturnType<typeof apiClient>

/** Waits until the model is routable through the edge (its device online and loaded). */
export function waitForModelReady(api: ApiClient, model: string, timeoutMs = 60_000): Promise<true> {
  return waitFor(`model ${model} ready`, async () => ((await api.get(`/v2/models/${model}/ready`)).status === 200 ? true : undefined), timeoutMs)
}

/** How many devices the edge counts ready for the model (its metadata's `ready_devices`; 0 when absent). */
export async function readyDevices(api: ApiClient, model: string, version?: string): Promise<number> {
  const path = version === undefined ? `/v2/models/${model}` : `/v2/models/${model}/versions/${version}`
  return ((await api.get(path)).body.parameters as { ready_devices?: number } | undefined)?.ready_devices ?? 0
}

/** Runs a model directly with onnxruntime-node in this process: the reference for outputs. */
export async function runDirect(
  modelPath: string,
  feeds: Record<string, ort.Tensor>,
): Promise<Record<string, ort.Tensor>> {
  const session = await ort.InferenceSession.create(modelPath, { graphOptimizationLevel: 'all' })
  try {
    return await session.run(feeds)
  } finally {
    await session.release()
  }
}

/** The attestation and signature an infer answer carries, read back from its flattened `parameters`. */
export function answerAttestation(parameters: Record<string, unknown>): { attestation: Attestation; signature: Hex } {
  const p = parameters as Record<string, string>
  return {
    attestation: {
      jobId: p.job_id as Hex,
      modelHash: p.attestation_model_hash as Hex,
      inputHash: p.attestation_input_hash as Hex,
      outputHash: p.attestation_output_hash as Hex,
      device: p.attestation_device as Hex,
      price: BigInt(p.attestation_price_wei!),
      completedAt: BigInt(p.attestation_completed_at!),
    },
    signature: p.attestation_signature as Hex,
  }
}

/** A v2 response output's data as plain numbers/booleans/bigints-as-strings for comparison. */
export function outputByName(body: Record<string, unknown>, name: string): { datatype: string; shape: number[]; data: unknown[] } {
  const outputs = body.outputs as Array<{ name: string; datatype: string; shape: number[]; data: unknown[] }>
  const output = outputs.find((o) => o.name === name)
  if (!output) throw new Error(`no output ${name} in ${JSON.stringify(outputs.map((o) => o.name))}`)
  return output
}

export interface BinaryInput {
  name: string
  datatype: string
  shape: number[]
  bytes: Uint8Array
}

/**
 * Sends an inference request in the binary tensor data extension's form: JSON header (inputs
 * with `binary_data_size`), then the tensors' bytes; `extra` is merged into the header.
 */
export async function postBinaryInfer(
  baseUrl: string,
  apiKey: string,
  path: string,
  inputs: BinaryInput[],
  extra: Record<string, unknown> = {},
): Promise<{ status: number; headers: Headers; json: Record<string, unknown>; outputs: Map<string, Uint8Array> }> {
  const header = new TextEncoder().encode(
    JSON.stringify({
      ...extra,
      inputs: inputs.map(({ name, datatype, shape, bytes }) => ({ name, datatype, shape, parameters: { binary_data_size: bytes.byteLength } })),
    }),
  )
  const body = Buffer.concat([header, ...inputs.map((i) => i.bytes)])
  const response = await fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: {
      ...ONE_REQUEST_PER_CONNECTION,
      Authorization: `Bearer ${apiKey}`,
      'Content-Type': 'application/octet-stream',
      'Inference-Header-Content-Length': String(header.byteLength),
    },
    body,
  })
  return { status: response.status, headers: response.headers, ...parseBinaryResponse(response.headers, new Uint8Array(await response.arrayBuffer())) }
}

/** Splits a (possibly binary-extension) v2 response into its JSON and each binary output's bytes. */
export function parseBinaryResponse(headers: Headers, body: Uint8Array): { json: Record<string, unknown>; outputs: Map<string, Uint8Array> } {
  const headerLength = headers.get('inference-header-content-length')
  const jsonEnd = headerLength === null ? body.byteLength : Number(headerLength)
  const json = JSON.parse(new TextDecoder().decode(body.subarray(0, jsonEnd))) as Record<string, unknown>
  const outputs = new Map<string, Uint8Array>()
  let offset = jsonEnd
  for (const output of (json.outputs ?? []) as Array<{ name: string; parameters?: { binary_data_size?: number } }>) {
    const size = output.parameters?.binary_data_size
    if (size === undefined) continue
    outputs.set(output.name, body.slice(offset, offset + size))
    offset += size
  }
  if (offset !== body.byteLength) throw new Error(`binary response has ${body.byteLength - offset} unexplained bytes`)
  return { json, outputs }
}

/**
 * Watches the broker for jobs: `devices` lists the device each job was published to, in the
 * order the broker carried them. Connects as a gateway (the ACL lets gateways read job topics).
 */
export async function observeJobs(brokerUrl: string, name: string): Promise<{ devices: string[]; close: () => Promise<void> }> {
  const devices: string[] = []
  const observer = await mqtt.connectAsync(brokerUrl, { clientId: gatewayClientId(name), reconnectPeriod: 200 })
  observer.on('message', (topic) => {
    const parsed = parseDeviceTopic(topic)
    if (parsed?.kind === 'jobs') devices.push(parsed.deviceId)
  })
  await observer.subscribeAsync('depinfer/v1/devices/+/jobs', { qos: 1 })
  return { devices, close: () => observer.endAsync(true) }
}

/**
 * An agent config file (SpawnAgentOptions.configPath) setting the MQTT keepalive to its longest,
 * 600 s (the broker declares a client gone after 1.5 times it, MQTT 3.1.1 §3.1.2.10). A device a
 * test freezes (SIGSTOP) is then not declared gone after 15 s, which would send its job elsewhere
 * as a retry: a hedge, at twice the device's p95, must come first to be seen, and a loaded
 * machine's warm-up put that p95 past 7.5 s. A killed device is gone at once still (its socket closes).
 */
export function longKeepaliveConfig(): string {
  const path = join(temporaryDirectory('agent-config-'), 'agent.json')
  writeFileSync(path, JSON.stringify({ broker: { keepaliveSec: 600 } }))
  return path
}

/**
 * The edge's longest deadline (JOB_DEADLINE_MS) in the suites that size a job's deadline to the
 * machine (hedgeableDeadlineMs): on a loaded one, past the default 30 s.
 */
export const LONG_JOB_DEADLINE_MS = 300_000

/**
 * A deadline for a job whose first device freezes, when the warm-up's slowest job took
 * `slowestMs` (answerOnEvery): eight times that, from 30 s to LONG_JOB_DEADLINE_MS. The frozen
 * device's budget is half the deadline (four times the slowest job), its hedge comes at twice its
 * p95 (at most twice the slowest job), and another device's run takes about one more: a hedged
 * job is answered a whole job's time before a retry could even be sent.
 */
export const hedgeableDeadlineMs = (slowestMs: number): number => Math.min(LONG_JOB_DEADLINE_MS, Math.max(30_000, 8 * slowestMs))

/**
 * Sends `body` to `model`, two jobs per device at once, round after round, until the gateway
 * has seen each of `deviceIds` answer at least `atLeast` jobs (what it needs to hedge: a p95).
 * Two per device: the scheduler sends a job to the device expected to finish it first, and a
 * device whose first run was a cold one (several times a warm one) is expected to be slower
 * until its next answer; with one job per device it could be passed over round after round.
 *
 * Resolves to the slowest of these jobs' round trips as this client saw them (ms): no device's
 * p95 can be longer (the gateway times less of each job: from its publish to the answer), so a
 * test can size a deadline to the machine it runs on.
 */
export async function answerOnEvery(api: ApiClient, model: string, body: unknown, deviceIds: readonly string[], jobsSeen: readonly string[], atLeast = 9): Promise<number> {
  const seen = jobsSeen.length
  const sentTo = (deviceId: string) => jobsSeen.slice(seen).filter((d) => d === deviceId).length
  let slowestMs = 0
  const answer = async (): Promise<ApiResponse> => {
    const sentAt = Date.now()
    const response = await api.post(`/v2/models/${model}/infer`, body)
    slowestMs = Math.max(slowestMs, Date.now() - sentAt)
    return response
  }
  for (let round = 0; round < 20 && Math.min(...deviceIds.map(sentTo)) < atLeast; round++) {
    const answers = await Promise.all([...deviceIds, ...deviceIds].map(answer))
    for (const response of answers) if (response.status !== 200) throw new Error(`warming up ${model}: ${response.status} ${response.text}`)
  }
  if (Math.min(...deviceIds.map(sentTo)) < atLeast) throw new Error(`warming up ${model}: not every device got ${atLeast} jobs`)
  return slowestMs
}
