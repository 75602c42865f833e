/**
 * Agent configuration: a JSON file (`--config`), then environment variables on top, validated
 * once at start. Every field has a default, so `depinfer-agent start` alone serves the bundled
 * demo models to a broker on localhost.
 */
import { readFileSync } from 'node:fs'
import { homedir, hostname, totalmem } from 'node:os'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { DEFAULT_MAX_MODEL_BYTES, DEVICE_STALE_AFTER_MS, ID_PATTERN, VersionSchema, messageOf } from '@depinfer/shared'
import type { InferenceSession } from 'onnxruntime-node'
import { z } from 'zod'
import { BUNDLED_MODELS, BUNDLED_MODEL_VERSION, type BundledModelName } from './models/bundled.js'
import { MAX_STAR_MODELS, MAX_STAR_NAMES_PER_OWNER } from './models/published.js'

/** Upper case is accepted (sha256sum prints lower, some tools upper) and normalised, so it compares with what we compute. */
const Sha256Schema = z
  .string()
  .regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex digits (the sha256 of the file)')
  .transform((hex) => hex.toLowerCase())

/** The longest heartbeat interval: a third of the time after which gateways count a silent device gone. */
const MAX_HEARTBEAT_SEC = DEVICE_STALE_AFTER_MS / 3 / 1000

/** The message for a published source's `versions` that is neither a count nor "all". */
const VERSIONS_COUNT = 'must be a number of versions (1 to 1000) or "all"'

/**
 * Where a model comes from. Each kind is told apart by its key (bundled, path, published, url):
 * MODEL_SOURCE_KINDS lists them in the union's order so a config error can name the fields of
 * the kind the user meant (see reportedIssue).
 */
const ModelSourceSchema = z.union([
  z.object({ bundled: z.enum(Object.keys(BUNDLED_MODELS) as [BundledModelName, ...BundledModelName[]]) }),
  z.object({
    name: z.string().regex(ID_PATTERN),
    version: VersionSchema.default('1'),
    path: z.string().min(1),
  }),
  /**
   * A model published on the edge: one name (its newest version unless `version` is given), or
   * "*": every published model that fits this device (maxModelBytes and free disk space).
   * `versions`: how many of the newest versions of each name to serve (default 1), or "all";
   * callers pinned to an older version keep being served while the device serves it.
   */
  z
    .object({
      published: z.union([z.literal('*'), z.string().regex(ID_PATTERN, 'must be a model name or "*"')]),
      version: VersionSchema.optional(),
      versions: z.union([z.literal('all', { error: VERSIONS_COUNT }), z.number({ error: VERSIONS_COUNT }).int(VERSIONS_COUNT).min(1, VERSIONS_COUNT).max(1000, VERSIONS_COUNT)]).optional(),
    })
    .refine((source) => source.published !== '*' || source.version === undefined, {
      message: 'a version cannot be combined with published "*"',
      path: ['version'],
    })
    .refine((source) => source.version === undefined || source.versions === undefined, {
      message: 'give either version (that one) or versions (how many of the newest), not both',
      path: ['versions'],
    }),
  /**
   * Any HTTP(S) URL. The sha256 is mandatory: it is the model's identity and the only thing
   * that proves the bytes are the ones meant. Never sent the edge API key.
   */
  z.object({
    url: z.string().regex(/^https?:\/\/[^\s]+$/i, 'must be an http:// or https:// URL'),
    sha256: Sha256Schema,
    name: z.string().regex(ID_PATTERN),
    version: VersionSchema.default('1'),
  }),
])
const MODEL_SOURCE_KINDS = ['bundled', 'path', 'published', 'url'] as const
export type ModelSource = z.infer<typeof ModelSourceSchema>
export type BundledSource = Extract<ModelSource, { bundled: string }>
export type PathSource = Extract<ModelSource, { path: string }>
export type PublishedSource = Extract<ModelSource, { published: string }>
export type UrlSource = Extract<ModelSource, { url: string }>
/** Sources whose file is on this device already. */
export type LocalSource = BundledSource | PathSource

export const isPublishedSource = (source: ModelSource): source is PublishedSource => 'published' in source
export const isUrlSource = (source: ModelSource): source is UrlSource => 'url' in source
export const isLocalSource = (source: ModelSource): source is LocalSource => 'bundled' in source || 'path' in source

/** `~/…` in a configured path means the home directory, as it would in a shell. */
const inHome = (path: string) => path === '~' || path.startsWith('~/')
const expandHome = (path: string): string => (inHome(path) ? join(homedir(), path.slice(1)) : path)

/**
 * The execution provider names onnxruntime-node's session options accept
 * (js/node/src/session_options_helper.cc); which of them the installed build supports is only
 * known at run time (runtime/execution.ts).
 */
const EXECUTION_PROVIDERS = ['tensorrt', 'cuda', 'dml', 'coreml', 'qnn', 'webgpu', 'cpu'] as const
export type ExecutionProviderName = (typeof EXECUTION_PROVIDERS)[number]
export const GRAPH_OPTIMIZATION_LEVELS = ['disabled', 'basic', 'extended', 'layout', 'all'] as const satisfies readonly NonNullable<
  InferenceSession.SessionOptions['graphOptimizationLevel']
>[]
const EXECUTION_MODES = ['sequential', 'parallel'] as const satisfies readonly NonNullable<
  InferenceSession.SessionOptions['executionMode']
>[]

const threadCount = z.number().int().nonnegative().max(1024)

/** Where model sessions run (ort.runIn): see the schema below. */
const RUN_PLACES = ['auto', 'agent-thread', 'worker-thread', 'child-process'] as const
export type RunPlace = (typeof RUN_PLACES)[number]

/**
 * Which file of a published model version the agent runs: `int8-when-accepted`, the int8
 * variant published with the version where its publisher's report meets the publisher's
 * threshold (else the version's own file); `fp32`, always the version's own file.
 */
const PRECISIONS = ['int8-when-accepted', 'fp32'] as const
export type Precision = (typeof PRECISIONS)[number]

/** Whether log lines start with their time (logTimestamps): see the schema below. */
const LOG_TIMESTAMPS = ['auto', 'on', 'off'] as const
export type LogTimestamps = (typeof LOG_TIMESTAMPS)[number]

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

/** Whether `url` parses with a host, and a port of 1-65535 where it gives one. */
function isBrokerAddress(url: string): boolean {
  try {
    const { hostname, port } = new URL(url)
    return hostname !== '' && (port === '' || Number(port) >= 1)
  } catch {
    return false
  }
}

export const AgentConfigSchema = z.object({
  deviceId: z.string().regex(ID_PATTERN, 'deviceId must be 1-64 letters, digits, ".", "_" or "-"'),
  broker: z.object({
    url: z
      .string()
      .regex(/^(mqtts?|wss?|tcp):\/\//, 'broker.url must start with mqtt://, mqtts://, tcp://, ws:// or wss://')
      // mqtt.js throws a port out of range or an unparsable URL from inside the connection (a
      // stack trace at start), and connects to localhost:1883 for no host or port 0.
      .refine(isBrokerAddress, 'broker.url must name a host and, if it gives one, a port from 1 to 65535 (e.g. mqtts://broker.example.com:8883)'),
    username: z.string().optional(),
    password: z.string().optional(),
    /** MQTT keepalive, in seconds (§3.1.2.10); the broker declares us gone after 1.5×. */
    keepaliveSec: z.number().int().min(1).max(600).default(10),
    /**
     * TLS for mqtts:// and wss:// (PEM files, `~/` is the home directory): `caFile`, the CAs to trust
     * for the broker's certificate instead of Node's built-in ones; `certFile` and `keyFile`, this device's
     * client certificate for brokers that log devices in by certificate (broker/tls.ts).
     */
    tls: z
      .object({
        caFile: z.string().min(1).transform(expandHome).optional(),
        certFile: z.string().min(1).transform(expandHome).optional(),
        keyFile: z.string().min(1).transform(expandHome).optional(),
      })
      .superRefine((tls, context) => {
        if (tls.certFile && !tls.keyFile) context.addIssue({ code: 'custom', path: ['keyFile'], message: 'certFile needs its keyFile' })
        if (tls.keyFile && !tls.certFile) context.addIssue({ code: 'custom', path: ['certFile'], message: 'keyFile needs its certFile' })
      })
      .optional(),
  }).superRefine((broker, context) => {
    // Without TLS the files would be ignored, and the device would talk in clear believing otherwise.
    if (broker.tls && !/^(mqtts|wss):/.test(broker.url)) {
      context.addIssue({ code: 'custom', path: ['tls'], message: `needs a TLS broker.url (mqtts:// or wss://), not ${broker.url}` })
    }
  }),
  models: z.array(ModelSourceSchema).min(1),
  /**
   * The edge that publishes models (needed by `published` sources): its URL and this provider's
   * API key, sent as a bearer token to the edge only.
   */
  edge: z
    .object({
      url: z
        .string({ error: 'the edge URL is required (edge.url or DEPINFER_EDGE_URL)' })
        .regex(/^https?:\/\/[^\s]+$/i, 'must be an http:// or https:// URL')
        // The API paths are appended to it.
        .transform((url) => url.replace(/\/+$/, '')),
      apiKey: z.string({ error: 'the API key is required (edge.apiKey or DEPINFER_API_KEY)' }).min(1),
      /** How often published models are listed again, picking up new ones; 0: only at start. */
      pollSec: z
        .number()
        .nonnegative()
        // Listing the edge many times a second helps nobody and costs the edge.
        .refine((sec) => sec === 0 || sec >= 1, 'must be 0 (only at start) or at least 1 second')
        .default(60),
    })
    .optional(),
  /** Downloaded models, one `<sha256>.onnx` each; `~/` is the home directory. */
  cacheDir: z
    .string()
    .min(1)
    .transform(expandHome)
    .default(() => join(homedir(), '.depinfer', 'models')),
  /**
   * Keep the cached files of published versions this agent does not serve (superseded ones
   * among them): for a cacheDir shared with agents that serve them. By default they are deleted
   * (models/provision.ts #enqueueSweep), so that a device following new versions does not fill
   * its disk.
   */
  keepUnservedFiles: z.boolean().default(false),
  /** The largest model file `published: "*"` picks (bytes). */
  maxModelBytes: z.number().int().positive().default(DEFAULT_MAX_MODEL_BYTES),
  /**
   * The most names of one owner `published: "*"` picks (see MAX_STAR_NAMES_PER_OWNER): an operator
   * whose edge's publishers it trusts (its own, `npm start`'s) may take up to all of them.
   */
  maxNamesPerOwner: z.number().int().min(1).max(MAX_STAR_MODELS).default(MAX_STAR_NAMES_PER_OWNER),
  /** Which file of a published model to run (see PRECISIONS). */
  precision: z.enum(PRECISIONS, { error: `must be ${PRECISIONS.map((p) => `"${p}"`).join(' or ')}` }).default('int8-when-accepted'),
  /** How downloads retry: attempts in all (with back-off between them), and how long a connection may send nothing. */
  download: z
    .object({
      attempts: z.number().int().min(1).max(100).default(5),
      stallTimeoutSec: z.number().positive().max(3600).default(30),
    })
    .prefault({}),
  /** The device's secp256k1 signing key, created by `depinfer-agent init` (mode 0600); `~/` is the home directory. */
  keyPath: z.string().min(1).transform(expandHome),
  /**
   * Interval between heartbeats, in seconds. At most a third of the time after which gateways
   * count a silent device as gone (DEVICE_STALE_AFTER_MS, 15 s): a longer one made the device
   * flap between online and gone, without a word in its log.
   */
  heartbeatSec: z
    .number()
    .positive()
    .max(MAX_HEARTBEAT_SEC, `must be at most ${MAX_HEARTBEAT_SEC}: gateways count a device gone after ${DEVICE_STALE_AFTER_MS / 1000} s without a heartbeat`)
    .default(2),
  /**
   * How often the retained status is published again, unchanged, in seconds. A broker can lose
   * it (one without persistence restarted; a gateway clearing the status of a device it took for
   * gone at the moment the device came back), and gateways rebuild their device tables from
   * retained statuses whenever their link reconnects: a lost one would leave the device unseen
   * until it reconnected.
   */
  statusRefreshSec: z.number().positive().max(86_400).default(300),
  /**
   * Whether each log line starts with its UTC time. 'auto': unless systemd's journal takes the
   * output (it sets JOURNAL_STREAM and stamps every line itself); 'on' / 'off' regardless.
   */
  logTimestamps: z.enum(LOG_TIMESTAMPS, { error: `must be ${LOG_TIMESTAMPS.map((p) => `"${p}"`).join(', ')}` }).default('auto'),
  reconnect: z
    .object({ minMs: z.number().int().positive().default(250), maxMs: z.number().int().positive().default(15_000) })
    .refine((r) => r.minMs <= r.maxMs, { message: 'minMs must not be above maxMs', path: ['minMs'] })
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
      /** Threads one model run may use; 0 lets onnxruntime choose (its own choice per machine: one or two on our 2-vCPU VMs). */
      intraOpThreads: threadCount.default(0),
      /** Threads running independent graph branches at once; used only in 'parallel' mode. 0: onnxruntime's default. */
      interOpThreads: threadCount.default(0),
      /**
       * Let onnxruntime's pool threads spin while waiting for work (its own default: on). Off here:
       * a spinning thread holds a core the agent's own thread needs for the broker, decoding and
       * signing (bench/RESULTS.md, 2026-12-05 "onnxruntime's spinning threads").
       */
      allowSpinning: z.boolean().default(false),
      /**
       * Which thread runs each model's session. onnxruntime-node runs a session synchronously on
       * the thread that calls it: on the agent's own, a long run holds up heartbeats, the MQTT
       * keepalive, job intake and every other model until it ends (past ~15 s the broker and the
       * edge count the device as gone). 'worker-thread': every model in a worker thread of its
       * own (0.1–0.5 ms more per run, ~50 MB more memory); 'agent-thread': all on the agent's
       * thread; 'child-process': every model in a process of its own, stopped at its jobs'
       * deadline and at processMemoryLimitMb (runtime/process-session.ts); 'auto': models
       * published on the edge in a process of their own, the others on the agent's thread until a
       * run takes LONG_RUN_MS or more, then moved to a worker thread (runtime/model-session.ts).
       */
      runIn: z.enum(RUN_PLACES, { error: `must be ${RUN_PLACES.map((p) => `"${p}"`).join(', ')}` }).default('auto'),
      /**
       * Resident memory a model's process ('child-process' above) may hold, in MB: a run that
       * takes more ends with its process. Default: half of this machine's memory.
       */
      processMemoryLimitMb: z.number().int().min(64).max(1 << 30).default(() => Math.max(512, Math.floor(totalmem() / 2 / 2 ** 20))),
      /**
       * A model's process that ran nothing for this long is closed, and opened again for its next
       * run (~1 s), so that memory follows the models in use; 0: never closed.
       */
      processIdleSec: z.number().nonnegative().max(7 * 86_400).default(600),
      executionMode: z.enum(EXECUTION_MODES).default('sequential'),
      graphOptimizationLevel: z.enum(GRAPH_OPTIMIZATION_LEVELS).default('all'),
      /** Execution providers in order of preference, CPU always last; 'auto': TensorRT, CUDA where the build has them. */
      executionProviders: ExecutionProvidersSchema.default('auto'),
    })
    // prefault (not default): zod 4 returns a default as is, while a prefault is parsed, so the
    // field defaults above fill in an omitted `ort`.
    .prefault({}),
}).superRefine((config, context) => {
  // One file per name and version: the edge routes a model's jobs by them, so a second source
  // of the same would be loaded, advertised and never used (or used in place of the first).
  const seen = new Map<string, number>()
  config.models.forEach((source, j) => {
    if (isPublishedSource(source)) return
    const { name, version } = isUrlSource(source) ? source : modelIdentity(source)
    const first = seen.get(`${name}@${version}`)
    if (first === undefined) seen.set(`${name}@${version}`, j)
    else context.addIssue({ code: 'custom', path: ['models', j], message: `model ${name} v${version} is models.${first} already: give each source its own name or version` })
  })
  const index = config.models.findIndex(isPublishedSource)
  if (index >= 0 && !config.edge) {
    context.addIssue({
      code: 'custom',
      path: ['edge'],
      message: `models.${index} is published on the edge: set edge.url and edge.apiKey (or DEPINFER_EDGE_URL and DEPINFER_API_KEY)`,
    })
  }
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

/** A number from the environment (`2e8` too); anything else is passed on as is for the schema to reject. */
const envInteger = (value: string): number | string => (/^-?\d+(\.\d+)?(e\+?\d+)?$/i.test(value.trim()) ? Number(value) : value)
/** true/false or 1/0; anything else is passed on as is for the schema to reject. */
const ENV_BOOLEANS = new Map([['true', true], ['1', true], ['false', false], ['0', false]])
const envBoolean = (value: string): boolean | string => ENV_BOOLEANS.get(value.trim().toLowerCase()) ?? value
/** 'auto', or a comma-separated list of execution providers. */
const envList = (value: string): string | string[] => (value.trim() === 'auto' ? 'auto' : value.split(',').map((name) => name.trim()))

/** The env overrides of `broker.tls`: variable, field. */
const BROKER_TLS_ENV = [
  ['DEPINFER_BROKER_CA_FILE', 'caFile'],
  ['DEPINFER_BROKER_CERT_FILE', 'certFile'],
  ['DEPINFER_BROKER_KEY_FILE', 'keyFile'],
] as const

/** The env overrides of the `ort` section: variable, field, parser. */
const ORT_ENV: [variable: string, field: keyof AgentConfig['ort'], parse: (value: string) => unknown][] = [
  ['DEPINFER_ORT_THREADS', 'intraOpThreads', envInteger],
  ['DEPINFER_ORT_INTEROP_THREADS', 'interOpThreads', envInteger],
  ['DEPINFER_ORT_ALLOW_SPINNING', 'allowSpinning', envBoolean],
  ['DEPINFER_ORT_RUN_IN', 'runIn', (value) => value.trim()],
  ['DEPINFER_ORT_PROCESS_MEMORY_MB', 'processMemoryLimitMb', envInteger],
  ['DEPINFER_ORT_PROCESS_IDLE_SEC', 'processIdleSec', envInteger],
  ['DEPINFER_ORT_EXECUTION_MODE', 'executionMode', (value) => value.trim()],
  ['DEPINFER_ORT_GRAPH_OPT_LEVEL', 'graphOptimizationLevel', (value) => value.trim()],
  ['DEPINFER_ORT_EPS', 'executionProviders', envList],
]

/** The value at a config path, for telling which kind of model source an entry was meant to be. */
function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined
    value = (value as Record<PropertyKey, unknown>)[key]
  }
  return value
}

/**
 * The issue to report: for a union, the issue of the alternative the value was meant as, which
 * names the bad field, rather than zod's bare "Invalid input" for the union as a whole. A model
 * source is meant as the kind whose key it has (`{url, name}` lacks its sha256, not a `bundled`);
 * other unions (e.g. `executionProviders`, "auto" or a list) as the alternative it was shaped like.
 */
function reportedIssue(issue: z.core.$ZodIssue, input: unknown): { path: PropertyKey[]; message: string } {
  if (issue.code === 'invalid_union') {
    const value = valueAt(input, issue.path)
    const isModelSource = issue.path[0] === 'models' && issue.path.length === 2
    const kind = isModelSource && value !== null && typeof value === 'object' ? MODEL_SOURCE_KINDS.findIndex((key) => key in value) : -1
    if (isModelSource && kind < 0) {
      return { path: issue.path, message: `a model source needs one of ${MODEL_SOURCE_KINDS.map((key) => `"${key}"`).join(', ')}` }
    }
    const meant = kind >= 0 ? issue.errors[kind] : undefined
    const shaped =
      meant && meant.length > 0
        ? meant
        : issue.errors.find((issues) => issues.length > 0 && issues.every((inner) => inner.path.length > 0))
    if (shaped) {
      const inner = reportedIssue(shaped[0]!, value)
      return { path: [...issue.path, ...inner.path], message: inner.message }
    }
  }
  return { path: issue.path, message: issue.message }
}

type Schema = z.core.$ZodType

/** The schema a value is checked against once optional, default and transform wrappers are looked through. */
function unwrapped(schema: Schema): Schema {
  if (schema instanceof z.ZodOptional || schema instanceof z.ZodNullable || schema instanceof z.ZodDefault || schema instanceof z.ZodPrefault) {
    return unwrapped(schema.unwrap())
  }
  if (schema instanceof z.ZodPipe) return unwrapped(schema.in)
  return schema
}

const isPlainObject = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value)

/**
 * The keys an object may have where `schema` checks it: an object's own; for a union of objects
 * (model sources), those of the alternative the value is meant as, told by a key only that
 * alternative has (`url` makes a URL source; with keys of two kinds, the one knowing more of
 * them), else those of every alternative.
 */
function knownKeys(schema: Schema, value: Record<string, unknown>): Record<string, Schema> | undefined {
  if (schema instanceof z.ZodObject) return schema.shape
  if (!(schema instanceof z.ZodUnion)) return undefined
  const objects = (schema.options as readonly Schema[]).map(unwrapped).filter((option) => option instanceof z.ZodObject)
  if (objects.length === 0) return undefined
  const keys = Object.keys(value)
  const identified = objects.filter((option) =>
    keys.some((key) => Object.hasOwn(option.shape, key) && objects.every((other) => other === option || !Object.hasOwn(other.shape, key))),
  )
  const knownCount = (option: z.ZodObject) => keys.filter((key) => Object.hasOwn(option.shape, key)).length
  const meant = identified.reduce<z.ZodObject | undefined>((best, option) => (!best || knownCount(option) > knownCount(best) ? option : best), undefined)
  return Object.assign({}, ...(meant ? [meant] : objects).map((option) => option.shape)) as Record<string, Schema>
}

interface UnknownKey {
  /** Where the object holding it is (`models.0`), empty at the top level. */
  path: string
  key: string
  /** The keys allowed there. */
  known: string[]
}

/**
 * The first key of a config file's value that `schema` does not know. zod drops unknown keys
 * silently, so without this a typo (`"modelz"`) would quietly leave the default in place.
 */
function findUnknownKey(value: unknown, schema: Schema = AgentConfigSchema, path: string[] = []): UnknownKey | undefined {
  const inner = unwrapped(schema)
  if (Array.isArray(value)) {
    if (!(inner instanceof z.ZodArray)) return undefined
    for (const [index, element] of value.entries()) {
      const found = findUnknownKey(element, inner.element, [...path, String(index)])
      if (found) return found
    }
    return undefined
  }
  if (!isPlainObject(value)) return undefined
  const known = knownKeys(inner, value)
  if (!known) return undefined
  for (const [key, child] of Object.entries(value)) {
    // Own keys only: "constructor" is not a config key because every object inherits one.
    const childSchema = Object.hasOwn(known, key) ? known[key] : undefined
    if (!childSchema) return { path: path.join('.'), key, known: Object.keys(known) }
    const found = findUnknownKey(child, childSchema, [...path, key])
    if (found) return found
  }
  return undefined
}

/** Levenshtein distance, case-insensitive: how many letters to change to go from `a` to `b`. */
function editDistance(a: string, b: string): number {
  const [x, y] = [a.toLowerCase(), b.toLowerCase()]
  let previous = Array.from({ length: y.length + 1 }, (_, j) => j)
  for (let i = 1; i <= x.length; i++) {
    const row = [i]
    for (let j = 1; j <= y.length; j++) row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (x[i - 1] === y[j - 1] ? 0 : 1))
    previous = row
  }
  return previous[y.length]!
}

/**
 * The known key `key` was most likely meant as: within a third of its letters (at least 2) of
 * it; else the only known key that starts with the same word (`keyFile` → `keyPath`); else
 * undefined.
 */
function closestKey(key: string, known: readonly string[]): string | undefined {
  const limit = Math.max(2, Math.floor(key.length / 3))
  let best: { key: string; distance: number } | undefined
  for (const candidate of known) {
    const distance = editDistance(key, candidate)
    if (distance <= limit && (!best || distance < best.distance)) best = { key: candidate, distance }
  }
  if (best) return best.key
  const word = firstWord(key)
  const sameWord = word.length >= 3 ? known.filter((candidate) => firstWord(candidate) === word) : []
  return sameWord.length === 1 ? sameWord[0] : undefined
}

/** The first word of a camelCase or snake_case key, lowercased: `keyFile` → `key`. */
function firstWord(key: string): string {
  return (/^[a-z0-9]+|^[A-Z][a-z0-9]*/.exec(key)?.[0] ?? key).toLowerCase()
}

function unknownKeyError(unknown: UnknownKey, file: string): ConfigError {
  const closest = closestKey(unknown.key, unknown.known)
  const hint = closest ? `did you mean "${closest}"?` : `known keys: ${unknown.known.map((key) => `"${key}"`).join(', ')}`
  return new ConfigError(`unknown key "${unknown.key}"${unknown.path ? ` at ${unknown.path}` : ''} in agent config ${file} (${hint})`)
}

/**
 * One DEPINFER_MODELS entry: a bundled model name, `published:<name>[@<version>]`,
 * `published:*`, or `published:<name or *>@all` (every version; published versions are numbers,
 * so "all" names none).
 */
function envModelSource(entry: string): Record<string, string> {
  const item = entry.trim()
  if (!item.startsWith('published:')) return { bundled: item }
  const [published = '', version] = item.slice('published:'.length).split('@')
  if (version === undefined) return { published }
  return version === 'all' ? { published, versions: 'all' } : { published, version }
}

/** Whether unparsed `models` (from the file or DEPINFER_MODELS) name a published model. */
function servesPublished(models: unknown): boolean {
  return Array.isArray(models) && models.some((m: unknown) => typeof m === 'object' && m !== null && 'published' in m)
}

/**
 * The file's relative paths (keyPath, cacheDir, a model's path, broker.tls files) taken from the file's own
 * directory, as in other tools' config files: the agent is started from anywhere (a service
 * manager, another shell). `~/` stays the home directory; the environment's paths stay relative
 * to the working directory, as a shell user expects.
 */
function relativeToFile(json: Record<string, unknown>, directory: string): Record<string, unknown> {
  const fromFile = (value: unknown) => (typeof value === 'string' && value !== '' && !isAbsolute(value) && !inHome(value) ? resolve(directory, value) : value)
  const models = Array.isArray(json.models)
    ? json.models.map((source: unknown) => (isPlainObject(source) && 'path' in source ? { ...source, path: fromFile(source.path) } : source))
    : json.models
  return {
    ...json,
    ...('keyPath' in json && { keyPath: fromFile(json.keyPath) }),
    ...('cacheDir' in json && { cacheDir: fromFile(json.cacheDir) }),
    ...('models' in json && { models }),
    ...(isPlainObject(json.broker) && isPlainObject(json.broker.tls) && {
      broker: { ...json.broker, tls: Object.fromEntries(Object.entries(json.broker.tls).map(([key, value]) => [key, fromFile(value)])) },
    }),
  }
}

/**
 * Reads the config file (if any) and applies env overrides: DEPINFER_DEVICE_ID,
 * DEPINFER_BROKER_URL, DEPINFER_BROKER_USERNAME, DEPINFER_BROKER_PASSWORD, DEPINFER_BROKER_CA_FILE /
 * _CERT_FILE / _KEY_FILE, DEPINFER_KEY_PATH,
 * DEPINFER_MODELS (comma-separated, see envModelSource), DEPINFER_EDGE_URL, DEPINFER_API_KEY, DEPINFER_EDGE_POLL_SEC,
 * DEPINFER_MODEL_CACHE, DEPINFER_MAX_MODEL_BYTES, DEPINFER_MAX_NAMES_PER_OWNER, DEPINFER_PRECISION and
 * the `ort` ones (ORT_ENV).
 */
export function loadConfig(path: string | undefined, env: NodeJS.ProcessEnv): AgentConfig {
  let fromFile: Record<string, unknown> = {}
  if (path) {
    let json: unknown
    try {
      json = JSON.parse(readFileSync(path, 'utf8'))
    } catch (error) {
      throw new ConfigError(`cannot read config ${path}: ${messageOf(error)}`)
    }
    if (!isPlainObject(json)) throw new ConfigError(`agent config ${path} must be a JSON object ({ "deviceId": …, "models": [ … ] })`)
    const unknown = findUnknownKey(json)
    if (unknown) throw unknownKeyError(unknown, path)
    fromFile = relativeToFile(json, dirname(resolve(path)))
  }
  /** Config paths set from the environment, so an error names the variable to fix. */
  const envOrigin = new Map<string, string>()
  const fromEnv = (variable: string, field: string): string | undefined => {
    const value = env[variable]
    if (value) envOrigin.set(field, variable)
    return value || undefined
  }
  const broker = { ...(fromFile.broker as object | undefined) } as Record<string, unknown>
  const brokerUrl = fromEnv('DEPINFER_BROKER_URL', 'broker.url')
  if (brokerUrl) broker.url = brokerUrl
  const brokerUsername = fromEnv('DEPINFER_BROKER_USERNAME', 'broker.username')
  if (brokerUsername) broker.username = brokerUsername
  const brokerPassword = fromEnv('DEPINFER_BROKER_PASSWORD', 'broker.password')
  if (brokerPassword) broker.password = brokerPassword
  const brokerTls = { ...(broker.tls as object | undefined) } as Record<string, unknown>
  for (const [variable, name] of BROKER_TLS_ENV) {
    const value = fromEnv(variable, `broker.tls.${name}`)
    if (value) brokerTls[name] = value
  }
  if (Object.keys(brokerTls).length > 0) broker.tls = brokerTls
  broker.url ??= 'mqtt://127.0.0.1:1883'
  const envModels = fromEnv('DEPINFER_MODELS', 'models')
  const models = envModels ? envModels.split(',').map(envModelSource) : (fromFile.models ?? DEFAULT_MODELS)
  const edge = { ...(fromFile.edge as object | undefined) } as Record<string, unknown>
  const edgeUrl = fromEnv('DEPINFER_EDGE_URL', 'edge.url')
  if (edgeUrl) edge.url = edgeUrl
  const apiKey = fromEnv('DEPINFER_API_KEY', 'edge.apiKey')
  if (apiKey) edge.apiKey = apiKey
  const pollSec = fromEnv('DEPINFER_EDGE_POLL_SEC', 'edge.pollSec')
  if (pollSec) edge.pollSec = envInteger(pollSec)
  const cacheDir = fromEnv('DEPINFER_MODEL_CACHE', 'cacheDir') ?? fromFile.cacheDir
  const maxModelBytes = fromEnv('DEPINFER_MAX_MODEL_BYTES', 'maxModelBytes')
  const maxNamesPerOwner = fromEnv('DEPINFER_MAX_NAMES_PER_OWNER', 'maxNamesPerOwner')
  const precision = fromEnv('DEPINFER_PRECISION', 'precision')?.trim() ?? fromFile.precision
  const logTimestamps = fromEnv('DEPINFER_LOG_TIMESTAMPS', 'logTimestamps')?.trim() ?? fromFile.logTimestamps
  const ort = { ...(fromFile.ort as object | undefined) } as Record<string, unknown>
  for (const [variable, field, parse] of ORT_ENV) {
    const value = fromEnv(variable, `ort.${field}`)
    if (value) ort[field] = parse(value)
  }
  const input = {
    ...fromFile,
    deviceId: fromEnv('DEPINFER_DEVICE_ID', 'deviceId') ?? fromFile.deviceId ?? defaultDeviceId(),
    keyPath: fromEnv('DEPINFER_KEY_PATH', 'keyPath') ?? fromFile.keyPath ?? join(homedir(), '.depinfer', 'device.key'),
    broker,
    models,
    // No edge section at all is valid (no published models); a partial one is reported. But an
    // edge made of environment variables alone, partial, for an agent serving nothing published,
    // is ignored: DEPINFER_API_KEY is the depinfer CLI's variable too, and exported for it, it
    // must not stop an agent that never talks to the edge (nor hide the config's real mistake).
    edge: Object.keys(edge).length === 0 || (fromFile.edge === undefined && !(edge.url && edge.apiKey) && !servesPublished(models)) ? undefined : edge,
    cacheDir,
    maxModelBytes: maxModelBytes ? envInteger(maxModelBytes) : fromFile.maxModelBytes,
    maxNamesPerOwner: maxNamesPerOwner ? envInteger(maxNamesPerOwner) : fromFile.maxNamesPerOwner,
    precision,
    logTimestamps,
    ort,
  }
  const parsed = AgentConfigSchema.safeParse(input)
  if (!parsed.success) {
    const issue = reportedIssue(parsed.error.issues[0]!, input)
    const path = issue.path.join('.')
    const variable = [...envOrigin].find(([field]) => path === field || path.startsWith(`${field}.`))?.[1]
    throw new ConfigError(`invalid agent config at ${path || '(root)'}${variable ? ` (from ${variable})` : ''}: ${issue.message}`)
  }
  return parsed.data
}

/** The name and version a model on this device is served as. */
export function modelIdentity(source: LocalSource): { name: string; version: string } {
  return 'bundled' in source
    ? { name: source.bundled, version: BUNDLED_MODEL_VERSION }
    : { name: source.name, version: source.version }
}
