/**
 * Starts a device agent as its own OS process (as on a real device), through the same
 * `depinfer-agent` bin a user runs, so tests can kill, freeze or restart it for real.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { initDeviceKey } from '../../device-agent/src/keys/device-key.js'
import { REPO_ROOT } from './paths.js'

export interface AgentProcess {
  deviceId: string
  child: ChildProcess
  /** Everything the agent printed so far. */
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

export function spawnAgent(options: SpawnAgentOptions): AgentProcess {
  const args = [AGENT_BIN, 'start', ...(options.configPath ? ['--config', options.configPath] : [])]
  const keyPath = options.keyPath ?? localDeviceKeyPath(options.deviceId)
  ensureDeviceKey(keyPath)
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      DEPINFER_DEVICE_ID: options.deviceId,
      DEPINFER_BROKER_URL: options.brokerUrl,
      DEPINFER_KEY_PATH: keyPath,
      ...options.env,
      ...(options.models && { DEPINFER_MODELS: options.models }),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  const collect = (chunk: Buffer) => {
    output += chunk
    if (options.echo) process.stdout.write(chunk)
  }
  child.stdout!.on('data', collect)
  child.stderr!.on('data', collect)
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve()
    else child.once('exit', () => resolve())
  })
  const signal = async (name: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(name)
    await exited
  }
  return {
    deviceId: options.deviceId,
    child,
    output: () => output,
    stop: () => signal('SIGTERM'),
    kill: () => signal('SIGKILL'),
  }
}
