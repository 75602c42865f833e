/**
 * Starts a device agent as its own OS process (as on a real device), through the same
 * `depinfer-agent` bin a user runs, so tests can kill, freeze or restart it for real.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { messageOf } from '@depinfer/shared'
import { initDeviceKey } from '../../device-agent/src/keys/device-key.js'
import { REPO_ROOT } from './paths.js'

export interface AgentProcess {
  deviceId: string
  /** The OS process; throws AgentNotStartedError while a `beforeStart` step is still running. */
  readonly child: ChildProcess
  /**
   * Resolves once the process is spawned; rejects when the `beforeStart` step failed (then the
   * agent never runs, and `output()` says why).
   */
  started: Promise<void>
  /** What the agent printed so far: all of it, or at least its last OUTPUT_KEPT_CHARS. */
  output(): string
  /** SIGTERM and wait for a clean exit (publishes offline status). */
  stop(): Promise<void>
  /** SIGKILL: the device vanishes without a word; the broker publishes its last will. */
  kill(): Promise<void>
}

export interface SpawnAgentOptions {
  deviceId: string
  brokerUrl: string
  /** Comma-separated bundled model names (DEPINFER_MODELS); default: all bundled models. */
  models?: string
  configPath?: string
  /** The device's signing key; default `.depinfer/keys/<deviceId>.key`, created if missing. */
  keyPath?: string
  /** More environment for the agent (e.g. DEPINFER_EDGE_URL for published models). */
  env?: Record<string, string>
  echo?: boolean
  /** The `depinfer-agent` bin to run; default this repository's (AGENT_BIN), e.g. an installed package's. */
  bin?: string
}

/** How much of an agent's output `output()` keeps at least (the latest part). */
const OUTPUT_KEPT_CHARS = 1 << 20

/** `child` was read before the process exists (its `beforeStart` step is still running or failed). */
export class AgentNotStartedError extends Error {
  override name = 'AgentNotStartedError'
}

/** Where the local network keeps each simulated device's key, so its address is stable. */
export const localDeviceKeyPath = (deviceId: string) => join(REPO_ROOT, '.depinfer', 'keys', `${deviceId}.key`)

/** Creates the key file unless one exists (what `depinfer-agent init` does on a real device). */
function ensureDeviceKey(path: string): void {
  if (existsSync(path)) return
  try {
    initDeviceKey(path)
  } catch (error) {
    if (!existsSync(path)) throw error // else another process created it first: use that one
  }
}

export const AGENT_BIN = join(REPO_ROOT, 'device-agent', 'bin', 'depinfer-agent.js')

/**
 * Spawns the agent; with `beforeStart`, only once it has resolved (e.g. the device's key is
 * registered on-chain, so the agent is routable from its first status). The key file exists
 * before `beforeStart` runs.
 */
export function spawnAgent(options: SpawnAgentOptions, beforeStart?: (keyPath: string) => Promise<unknown>): AgentProcess {
  const args = [options.bin ?? AGENT_BIN, 'start', ...(options.configPath ? ['--config', options.configPath] : [])]
  const keyPath = options.keyPath ?? localDeviceKeyPath(options.deviceId)
  ensureDeviceKey(keyPath)
  let output = ''
  const collect = (chunk: Buffer | string) => {
    output += chunk
    // The latest part only: `npm start` runs for days, and onnxruntime prints ~0.4 KB for every
    // input a model refuses (a soak run's npm start grew with it).
    if (output.length > OUTPUT_KEPT_CHARS * 2) output = output.slice(-OUTPUT_KEPT_CHARS)
    if (options.echo) process.stdout.write(chunk)
  }
  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()
  /** Set by stop/kill before the spawn: the pending start then never spawns. */
  let cancelled = false
  const launch = () => {
    if (cancelled) return
    // A config file named in the caller's environment is some device's, not this agent's.
    const { DEPINFER_AGENT_CONFIG: _callersConfig, ...callersEnv } = process.env
    const spawned = spawn(process.execPath, args, {
      cwd: REPO_ROOT,
      env: {
        ...callersEnv,
        DEPINFER_DEVICE_ID: options.deviceId,
        DEPINFER_BROKER_URL: options.brokerUrl,
        DEPINFER_KEY_PATH: keyPath,
        // This checkout's own cache, not the device default ~/.depinfer/models: an agent deletes
        // cached files it does not serve, and another checkout's network shared that directory
        // (an audit's second clone deleted a file the first one's agent had just downloaded).
        DEPINFER_MODEL_CACHE: join(REPO_ROOT, '.depinfer', 'models'),
        ...options.env,
        ...(options.models && { DEPINFER_MODELS: options.models }),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    spawned.stdout!.on('data', collect)
    spawned.stderr!.on('data', collect)
    exited = new Promise<void>((resolve) => {
      if (spawned.exitCode !== null || spawned.signalCode !== null) resolve()
      else spawned.once('exit', () => resolve())
    })
    child = spawned
  }
  let started: Promise<void>
  if (beforeStart) {
    started = beforeStart(keyPath).then(launch)
    // Recorded where a test looks for the agent's story; callers that await `started` still see it.
    started.catch((error: unknown) => collect(`depinfer-agent not started: ${messageOf(error)}\n`))
  } else {
    launch()
    started = Promise.resolve()
  }
  const signal = async (name: NodeJS.Signals) => {
    if (!child) {
      cancelled = true
      await started.catch(() => {})
    }
    if (child && child.exitCode === null && child.signalCode === null) child.kill(name)
    await exited
  }
  return {
    deviceId: options.deviceId,
    get child(): ChildProcess {
      if (!child) throw new AgentNotStartedError(`agent ${options.deviceId} has not been spawned (yet)`)
      return child
    },
    started,
    output: () => output,
    stop: () => signal('SIGTERM'),
    kill: () => signal('SIGKILL'),
  }
}
