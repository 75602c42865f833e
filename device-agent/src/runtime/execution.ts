/**
 * Execution tuning: the onnxruntime session options every model session is created with (threads,
 * graph optimization level, execution mode) and the execution provider (EP) each one runs on.
 *
 * EPs are tried in the configured order of preference, CPU last. onnxruntime-node's
 * `listSupportedBackends()` says which EPs the installed build was compiled with; being listed is
 * not enough (the npm linux/x64 build lists cuda and tensorrt but ships without their provider
 * libraries), so each listed EP is also tried once on a one-node model before any real model is
 * loaded. A model whose session still fails on an EP falls back to the next one.
 */
import { existsSync } from 'node:fs'
import * as ort from 'onnxruntime-node'
import { cutToLength, type DeviceStatus, messageOf } from '@depinfer/shared'
import type { AgentConfig, ExecutionProviderName } from '../config.js'
import { ORT_VERSION } from '../version.js'
import { AgentThreadSession, AutoPlacedSession, type ModelSession } from './model-session.js'
import { keepOrtTelemetryOff } from './ort-telemetry.js'
import { ProcessSession } from './process-session.js'
import { WorkerSession } from './worker-session.js'

// Before any session of this process (ort-telemetry.ts): every session is created through here or the quantizer.
keepOrtTelemetryOff()

type SessionOptions = ort.InferenceSession.SessionOptions

/** What `executionProviders: "auto"` tries before CPU: the NVIDIA EPs (Jetson, x64 with a GPU). */
const AUTO_EXECUTION_PROVIDERS = ['tensorrt', 'cuda'] as const satisfies readonly ExecutionProviderName[]

export type OrtSettings = AgentConfig['ort']
export type RuntimeStatus = NonNullable<DeviceStatus['runtime']>

/** An EP that was asked for but is not used, and why. */
export interface SkippedProvider {
  name: ExecutionProviderName
  reason: string
}

export interface ProviderAvailability {
  /** EPs that can create a session here, in order of preference; always ends with 'cpu'. */
  usable: ExecutionProviderName[]
  skipped: SkippedProvider[]
}

/**
 * How sessions on the agent's thread are created; onnxruntime's own `InferenceSession.create`
 * unless a test observes it. (A worker thread creates its own with the same options.)
 */
export type CreateSession = (model: Uint8Array, options: SessionOptions) => Promise<ort.InferenceSession>

export interface RuntimeHooks {
  create?: CreateSession
  /**
   * A model's session moved to a worker thread (ort.runIn 'auto'), or lost its worker thread or
   * process for good: the status should say so.
   */
  sessionsChanged?: () => void
}

const ortCreate: CreateSession = (model, options) => ort.InferenceSession.create(model, options)

/**
 * Device nodes of an NVIDIA GPU: desktop/server drivers, and Jetson's (Tegra) nvhost/nvmap.
 * Without one, 'auto' does not even try the NVIDIA EPs: each failed attempt prints an
 * unsuppressible onnxruntime error on every start of every CPU-only agent.
 */
const NVIDIA_DEVICE_NODES = ['/dev/nvidia0', '/dev/nvidiactl', '/dev/nvhost-ctrl', '/dev/nvmap']

function nvidiaGpuVisible(): boolean {
  return NVIDIA_DEVICE_NODES.some((path) => existsSync(path))
}

/**
 * The configured preference as the EPs to try, in order. 'auto' is TensorRT then CUDA where the
 * build lists them and an NVIDIA GPU is visible; CPU always comes last, so a device without its
 * accelerator still serves.
 */
export function preferredProviders(
  preference: OrtSettings['executionProviders'],
  listed: readonly string[],
  gpuVisible: boolean,
): ExecutionProviderName[] {
  const wanted: ExecutionProviderName[] =
    preference === 'auto'
      ? gpuVisible
        ? AUTO_EXECUTION_PROVIDERS.filter((name) => listed.includes(name))
        : []
      : [...preference]
  return [...wanted.filter((name) => name !== 'cpu'), 'cpu']
}

/**
 * Session config entries for thread spinning: onnxruntime's session_options_config_keys, which
 * onnxruntime-node's binding flattens from `extra` (IterateExtraOptions in its
 * session_options_helper.cc: `session.intra_op.allow_spinning`; onnxruntime-common's typing still
 * calls `extra` WebAssembly-only). Values are the strings "0" and "1".
 */
export function spinningEntries(allowSpinning: boolean): SessionOptions['extra'] {
  const allow = allowSpinning ? '1' : '0'
  return { session: { intra_op: { allow_spinning: allow }, inter_op: { allow_spinning: allow } } }
}

/** Whether session options let the intra-op threads spin (onnxruntime's default when no entry says otherwise). */
export function spinningAllowed(options: SessionOptions): boolean {
  const extra = options.extra as { session?: { intra_op?: { allow_spinning?: unknown } } } | undefined
  return extra?.session?.intra_op?.allow_spinning !== '0'
}

/** onnxruntime's session options for the settings, with `providers` registered in this order. */
export function sessionOptions(settings: OrtSettings, providers: readonly ExecutionProviderName[]): SessionOptions {
  return {
    executionProviders: [...providers],
    graphOptimizationLevel: settings.graphOptimizationLevel,
    executionMode: settings.executionMode,
    // 0 means "onnxruntime's default" (its own choice per machine): leave the option unset.
    ...(settings.intraOpThreads > 0 && { intraOpNumThreads: settings.intraOpThreads }),
    ...(settings.interOpThreads > 0 && { interOpNumThreads: settings.interOpThreads }),
    extra: spinningEntries(settings.allowSpinning),
  }
}

/** One line of an onnxruntime error, short enough for a log line and the device status. */
function reasonOf(error: unknown): string {
  const message = messageOf(error)
  const line = message.trim().split('\n')[0] ?? ''
  return cutToLength(line, 300)
}

/**
 * The session factory of one agent: finds the usable EPs once (memoized, so the fallback is
 * logged once however many models load), creates every model's session with the configured
 * options and reports what it chose for the device status.
 */
export class OrtRuntime {
  readonly #settings: OrtSettings
  readonly #log: (message: string) => void
  readonly #create: CreateSession
  readonly #sessionsChanged: () => void
  #probing: Promise<ProviderAvailability> | undefined
  #availability: ProviderAvailability | undefined

  constructor(settings: OrtSettings, log: (message: string) => void, hooks: RuntimeHooks = {}) {
    this.#settings = settings
    this.#log = log
    this.#create = hooks.create ?? ortCreate
    this.#sessionsChanged = hooks.sessionsChanged ?? (() => {})
  }

  /** Which preferred EPs can create a session on this device (tried once, then remembered). */
  availability(): Promise<ProviderAvailability> {
    return (this.#probing ??= this.#probe())
  }

  async #probe(): Promise<ProviderAvailability> {
    const listed = new Map(ort.listSupportedBackends().map((backend) => [backend.name, backend]))
    const usable: ExecutionProviderName[] = []
    const skipped: SkippedProvider[] = []
    for (const name of preferredProviders(this.#settings.executionProviders, [...listed.keys()], nvidiaGpuVisible())) {
      const backend = listed.get(name)
      if (name === 'cpu') {
        usable.push(name)
      } else if (!backend) {
        // Not even attempted: onnxruntime-common would drop an unregistered EP with a console
        // warning and silently run on the next one, so the status could not say what was used.
        skipped.push({ name, reason: `not in this onnxruntime-node build (it has ${[...listed.keys()].join(', ')})` })
      } else {
        try {
          const session = await this.#create(IDENTITY_MODEL, sessionOptions(this.#settings, [name]))
          await session.release()
          usable.push(name)
        } catch (error) {
          // `bundled: false`: the build has the EP but its provider libraries are a separate
          // install (onnxruntime-node's postinstall, skipped in this repository).
          const hint = backend.bundled ? '' : ' (its provider libraries are not bundled with onnxruntime-node: see the README)'
          skipped.push({ name, reason: `${reasonOf(error)}${hint}` })
        }
      }
    }
    for (const { name, reason } of skipped) this.#log(`execution provider ${name} unavailable: ${reason}`)
    this.#log(`execution providers: ${usable.join(' → ')}`)
    this.#availability = { usable, skipped }
    return this.#availability
  }

  /**
   * A session for the model on the most preferred usable EP; the EPs after it stay registered
   * behind it (e.g. CUDA takes the nodes TensorRT cannot), and if the session cannot be created
   * the next EP is tried. Throws what onnxruntime threw on CPU, the last resort. It runs where
   * ort.runIn says; `reread` gives the model's bytes again (verified) when an 'auto' session
   * moves to a worker thread or a stopped process opens the model again, so they need not be
   * held meanwhile. `lost` is told when a worker
   * thread running the session ends unasked, or when a stopped process cannot open the model
   * again (every run fails from then on). `untrusted`: a model anyone with an API key may have
   * published, which 'auto' opens in a process of its own, stopped at its jobs' deadline and at
   * the memory limit. Its cost is set by its graph and by input values as much as by input
   * sizes: a graph of 100,000 nodes held the agent's thread 18.6 s while onnxruntime opened it
   * (its create is synchronous), and a Loop whose trip count is an input held it for as long as
   * the caller asked, either way past the 15 s after which the broker and the edge count the
   * device as gone, with every other model it serves; in a worker thread, the Loop still held a
   * core for as long as asked, and a ConstantOfShape sized by an input took the agent from 1 to
   * 2.8 GB (audits).
   */
  async createSession(
    model: Uint8Array,
    modelName: string,
    reread: () => Promise<Uint8Array>,
    lost: (reason: Error) => void,
    untrusted = false,
  ): Promise<{ session: ModelSession; executionProvider: ExecutionProviderName }> {
    const { usable } = await this.availability()
    const label = `model ${modelName}`
    const sessionLost = (reason: Error) => {
      lost(reason)
      this.#sessionsChanged()
    }
    for (let i = 0; ; i++) {
      const providers = usable.slice(i)
      const executionProvider = providers[0]!
      const options = sessionOptions(this.#settings, providers)
      try {
        if (this.#settings.runIn === 'child-process' || (untrusted && this.#settings.runIn === 'auto')) {
          const { processMemoryLimitMb, processIdleSec } = this.#settings
          const host = { label, memoryLimitBytes: processMemoryLimitMb * 2 ** 20, idleCloseMs: processIdleSec * 1000, reread, lost: sessionLost, log: this.#log }
          return { session: await ProcessSession.open(model, options, host), executionProvider }
        }
        if (this.#settings.runIn === 'worker-thread') {
          return { session: await WorkerSession.open(model, options, label, sessionLost), executionProvider }
        }
        const session = new AgentThreadSession(await this.#create(model, options))
        if (this.#settings.runIn === 'agent-thread') return { session, executionProvider }
        const openInWorker = async () => WorkerSession.open(await reread(), options, label, sessionLost)
        return { session: new AutoPlacedSession(session, openInWorker, label, { log: this.#log, moved: this.#sessionsChanged }), executionProvider }
      } catch (error) {
        if (providers.length === 1) throw error
        this.#log(`model ${modelName}: ${executionProvider} could not create its session (${reasonOf(error)}); trying ${providers[1]}`)
      }
    }
  }

  /** The runtime part of the device status; `executionProviders` is empty until the EPs are known. */
  status(): RuntimeStatus {
    const { intraOpThreads, interOpThreads, allowSpinning, graphOptimizationLevel, executionMode, runIn, processMemoryLimitMb } = this.#settings
    const skipped = this.#availability?.skipped ?? []
    return {
      name: 'onnxruntime-node',
      version: ORT_VERSION,
      executionProviders: this.#availability?.usable ?? [],
      threads: { intraOp: intraOpThreads, interOp: interOpThreads, allowSpinning },
      graphOptimizationLevel,
      executionMode,
      runIn,
      processMemoryLimitMb,
      ...(skipped.length > 0 && { skippedExecutionProviders: skipped }),
    }
  }
}

/**
 * y = Identity(x), x and y float[1]: the smallest ONNX model (IR 8, opset 13), hand-encoded so
 * probing an EP needs no model file and no protobuf library.
 */
const IDENTITY_MODEL: Uint8Array = (() => {
  const varint = (value: number): number[] => {
    const bytes: number[] = []
    for (; value > 127; value >>>= 7) bytes.push((value & 127) | 128)
    return [...bytes, value]
  }
  const int = (field: number, value: number) => [...varint(field << 3), ...varint(value)]
  const message = (field: number, ...parts: number[][]) => {
    const body = parts.flat()
    return [...varint((field << 3) | 2), ...varint(body.length), ...body]
  }
  const text = (field: number, value: string) => message(field, [...new TextEncoder().encode(value)])
  // ValueInfoProto { name, type: TypeProto { tensor_type { elem_type: FLOAT, shape { dim { dim_value: 1 } } } } }
  const floatVector = (field: number, name: string) =>
    message(field, text(1, name), message(2, message(1, int(1, 1), message(2, message(1, int(1, 1))))))
  const node = message(1, text(1, 'x'), text(2, 'y'), text(4, 'Identity'))
  const graph = message(7, node, text(2, 'ep-probe'), floatVector(11, 'x'), floatVector(12, 'y'))
  return Uint8Array.from([...int(1, 8), ...graph, ...message(8, int(2, 13))])
})()
