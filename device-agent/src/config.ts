/**
 * Agent configuration: a JSON file (`--config`), then environment variables on top, validated
 * once at start. Every field has a default, so `depinfer-agent start` alone serves the bundled
 * demo models to a broker on localhost.
 */
import { readFileSync } from 'node:fs'
import { homedir, hostname } from 'node:os'
import { join } from 'node:path'
import { ID_PATTERN } from '@depinfer/shared'
import type { InferenceSession } from 'onnxruntime-node'
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

/**
 * The execution provider names onnxruntime-node's session options accept
 * (js/node/src/session_options_helper.cc); which of them the installed build supports is only
 * known at run time (runtime/execution.ts).
 */
export const EXECUTION_PROVIDERS = ['tensorrt', 'cuda', 'dml', 'coreml', 'qnn', 'webgpu', 'cpu'] as const
export type ExecutionProviderName = (typeof EXECUTION_PROVIDERS)[number]
export const GRAPH_OPTIMIZATION_LEVELS = ['disabled', 'basic', 'extended', 'layout', 'all'] as const satisfies readonly NonNullable<
  InferenceSession.SessionOptions['graphOptimizationLevel']
>[]
export const EXECUTION_MODES = ['sequential', 'parallel'] as const satisfies readonly NonNullable<
  InferenceSession.SessionOptions['executionMode']
>[]

const threadCount = z.number().int().nonnegative().max(1024)

const ExecutionProvidersSchema = z.union(
  [
    z.literal('auto'),
    z
      .array(z.enum(EXECUTION_PROVIDERS))
      .min(1)
      .refine((list) => new Set(list).size === list.length, 'must not list an execution provider twice')
      // CPU always succeeds, so anything after it would never be tried.
      .refine((list) => !list.includes('cpu') || list.at(-1) === 'cpu', 'cpu must come last'),
  ],
  { error: `must be "auto" or a list of execution providers (${EXECUTION_PROVIDERS.join(', ')})` },
)

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
  /** onnxruntime session options, the same for every model (see runtime/execution.ts). */
  ort: z
    .object({
      /** Threads one model run may use; 0 lets onnxruntime choose (one per physical core). */
      intraOpThreads: threadCount.default(0),
      /** Threads running independent graph branches at once; used only in 'parallel' mode. 0: onnxruntime's default. */
      interOpThreads: threadCount.default(0),
      executionMode: z.enum(EXECUTION_MODES).default('sequential'),
      graphOptimizationLevel: z.enum(GRAPH_OPTIMIZATION_LEVELS).default('all'),
      /** Execution providers in order of preference, CPU always last; 'auto': TensorRT, CUDA where the build has them. */
      executionProviders: ExecutionProvidersSchema.default('auto'),
    })
    // prefault (not default): zod 4 returns a default as is, while a prefault is parsed, so the
    // field defaults above fill in an omitted `ort`.
    .prefault({}),
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

/** An integer from the environment; anything else is passed on as is for the schema to reject. */
const envInteger = (value: string): number | string => (/^\d+$/.test(value) ? Number(value) : value)
/** 'auto', or a comma-separated list of execution providers. */
const envList = (value: string): string | string[] => (value.trim() === 'auto' ? 'auto' : value.split(',').map((name) => name.trim()))

/** The env overrides of the `ort` section: variable, field, parser. */
const ORT_ENV: [variable: string, field: keyof AgentConfig['ort'], parse: (value: string) => unknown][] = [
  ['DEPINFER_ORT_THREADS', 'intraOpThreads', envInteger],
  ['DEPINFER_ORT_INTEROP_THREADS', 'interOpThreads', envInteger],
  ['DEPINFER_ORT_EXECUTION_MODE', 'executionMode', (value) => value.trim()],
  ['DEPINFER_ORT_GRAPH_OPT_LEVEL', 'graphOptimizationLevel', (value) => value.trim()],
  ['DEPINFER_ORT_EPS', 'executionProviders', envList],
]

/**
 * The issue to report: for a union (e.g. `executionProviders`, "auto" or a list), the issue of the
 * alternative the value was shaped like, which names the bad element, rather than zod's bare
 * "Invalid input" for the union as a whole.
 */
function reportedIssue(issue: z.core.$ZodIssue): { path: PropertyKey[]; message: string } {
  if (issue.code === 'invalid_union') {
    const shaped = issue.errors.find((issues) => issues.length > 0 && issues.every((inner) => inner.path.length > 0))
    if (shaped) {
      const inner = reportedIssue(shaped[0]!)
      return { path: [...issue.path, ...inner.path], message: inner.message }
    }
  }
  return { path: issue.path, message: issue.message }
}

/**
 * Reads the config file (if any) and applies env overrides: DEPINFER_DEVICE_ID,
 * DEPINFER_BROKER_URL, DEPINFER_BROKER_USERNAME, DEPINFER_BROKER_PASSWORD, DEPINFER_KEY_PATH,
 * DEPINFER_MODELS (comma-separated bundled model names) and the `ort` ones (ORT_ENV).
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
  const ort = { ...(fromFile.ort as object | undefined) } as Record<string, unknown>
  /** Config paths set from the environment, so an error names the variable to fix. */
  const envOrigin = new Map<string, string>()
  for (const [variable, field, parse] of ORT_ENV) {
    const value = env[variable]
    if (value) {
      ort[field] = parse(value)
      envOrigin.set(`ort.${field}`, variable)
    }
  }
  const parsed = AgentConfigSchema.safeParse({
    ...fromFile,
    deviceId: env.DEPINFER_DEVICE_ID || (fromFile.deviceId ?? defaultDeviceId()),
    keyPath: env.DEPINFER_KEY_PATH || (fromFile.keyPath ?? join(homedir(), '.depinfer', 'device.key')),
    broker,
    models,
    ort,
  })
  if (!parsed.success) {
    const issue = reportedIssue(parsed.error.issues[0]!)
    const path = issue.path.join('.')
    const variable = [...envOrigin].find(([field]) => path === field || path.startsWith(`${field}.`))?.[1]
    throw new ConfigError(`invalid agent config at ${path || '(root)'}${variable ? ` (from ${variable})` : ''}: ${issue.message}`)
  }
  return parsed.data
}

export function modelIdentity(source: ModelSource): { name: string; version: string } {
  return 'bundled' in source
    ? { name: source.bundled, version: BUNDLED_MODEL_VERSION }
    : { name: source.name, version: source.version }
}
