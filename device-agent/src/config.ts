/**
 * Agent configuration: a JSON file (`--config`), then environment variables on top, validated
 * once at start. Every field has a default, so `depinfer-agent start` alone serves the bundled
 * demo models to a broker on localhost.
 */
import { readFileSync } from 'node:fs'
import { homedir, hostname } from 'node:os'
import { join } from 'node:path'
import { ID_PATTERN } from '@depinfer/shared'
import { z } from 'zod'
import { BUNDLED_MODELS, BUNDLED_MODEL_VERSION, type BundledModelName } from './models/bundled.js'

const ModelSourceSchema = z.union([
  z.object({ bundled: z.enum(Object.keys(BUNDLED_MODELS) as [BundledModelName, ...BundledModelName[]]) }),
  z.object({
    name: z.string().regex(ID_PATTERN),
    version: z.string().regex(/^[A-Za-z0-9._-]{1,32}$/).default('1'),
    path: z.string().min(1),
  }),
])
export type ModelSource = z.infer<typeof ModelSourceSchema>

export const AgentConfigSchema = z.object({
  deviceId: z.string().regex(ID_PATTERN, 'deviceId must be 1-64 letters, digits, ".", "_" or "-"'),
  broker: z.object({
    url: z.string().regex(/^(mqtts?|wss?|tcp):\/\//, 'broker.url must start with mqtt://, mqtts://, ws:// or wss://'),
    username: z.string().optional(),
    password: z.string().optional(),
    /** MQTT keepalive, in seconds (§3.1.2.10); the broker declares us gone after 1.5×. */
    keepaliveSec: z.number().int().min(1).max(600).default(10),
  }),
  models: z.array(ModelSourceSchema).min(1),
  /** The device's secp256k1 signing key, created by `depinfer-agent init` (mode 0600). */
  keyPath: z.string().min(1),
  /** Interval between heartbeats, in seconds. */
  heartbeatSec: z.number().positive().default(2),
  reconnect: z
    .object({ minMs: z.number().int().positive().default(250), maxMs: z.number().int().positive().default(15_000) })
    .default({ minMs: 250, maxMs: 15_000 }),
  /** Dynamic batching per model (used only where dimension 0 of every input and output is dynamic). */
  batching: z
    .object({
      /** Most rows stacked into one run; 1 turns batching off. */
      maxBatch: z.number().int().positive().max(1024).default(8),
      /** How long a queued job may wait for others to batch with, in ms (0: never wait). */
      maxQueueDelayMs: z.number().nonnegative().max(1000).default(0),
    })
    .default({ maxBatch: 8, maxQueueDelayMs: 0 }),
  ort: z
    .object({
      /** Threads one model run may use; 0 lets onnxruntime choose (all cores). */
      intraOpThreads: z.number().int().nonnegative().default(0),
    })
    .default({ intraOpThreads: 0 }),
})
export type AgentConfig = z.infer<typeof AgentConfigSchema>

export class ConfigError extends Error {
  override name = 'ConfigError'
}

const DEFAULT_MODELS: ModelSource[] = (Object.keys(BUNDLED_MODELS) as BundledModelName[]).map((bundled) => ({ bundled }))

/** A device id from the host name, made safe as a topic level. */
function defaultDeviceId(): string {
  return hostname().replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 64) || 'device'
}

/**
 * Reads the config file (if any) and applies env overrides: DEPINFER_DEVICE_ID,
 * DEPINFER_BROKER_URL, DEPINFER_BROKER_USERNAME, DEPINFER_BROKER_PASSWORD, DEPINFER_KEY_PATH and
 * DEPINFER_MODELS (comma-separated bundled model names).
 */
export function loadConfig(path: string | undefined, env: NodeJS.ProcessEnv): AgentConfig {
  let fromFile: Record<string, unknown> = {}
  if (path) {
    try {
      fromFile = JSON.parse(readFileSync(path, 'utf8'))
    } catch (error) {
      throw new ConfigError(`cannot read config ${path}: ${(error as Error).message}`)
    }
  }
  const broker = { ...(fromFile.broker as object | undefined) } as Record<string, unknown>
  if (env.DEPINFER_BROKER_URL) broker.url = env.DEPINFER_BROKER_URL
  if (env.DEPINFER_BROKER_USERNAME) broker.username = env.DEPINFER_BROKER_USERNAME
  if (env.DEPINFER_BROKER_PASSWORD) broker.password = env.DEPINFER_BROKER_PASSWORD
  broker.url ??= 'mqtt://127.0.0.1:1883'
  const models = env.DEPINFER_MODELS
    ? env.DEPINFER_MODELS.split(',').map((name) => ({ bundled: name.trim() }))
    : (fromFile.models ?? DEFAULT_MODELS)
  const parsed = AgentConfigSchema.safeParse({
    ...fromFile,
    deviceId: env.DEPINFER_DEVICE_ID || (fromFile.deviceId ?? defaultDeviceId()),
    keyPath: env.DEPINFER_KEY_PATH || (fromFile.keyPath ?? join(homedir(), '.depinfer', 'device.key')),
    broker,
    models,
  })
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw new ConfigError(`invalid agent config at ${issue.path.join('.') || '(root)'}: ${issue.message}`)
  }
  return parsed.data
}

export function modelIdentity(source: ModelSource): { name: string; version: string } {
  return 'bundled' in source
    ? { name: source.bundled, version: BUNDLED_MODEL_VERSION }
    : { name: source.name, version: source.version }
}
