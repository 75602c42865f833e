/**
 * Runs a real Mosquitto (Debian package `mosquitto`) with a TCP listener for agents and a
 * WebSocket listener for the edge, for end-to-end tests against the production-grade broker.
 * Returns the same shape as the embedded broker, so every suite runs against either.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { LocalBroker } from './broker.js'
import { waitFor } from './wait-for.js'

export const MOSQUITTO_BIN = process.env.MOSQUITTO_BIN ?? '/usr/sbin/mosquitto'

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => (socket.destroy(), resolve(true)))
    socket.once('error', () => resolve(false))
  })

export interface MosquittoOptions {
  /** Reuse ports (to restart "the same" broker). */
  tcpPort?: number
  wsPort?: number
  /**
   * Logins and topic ACL as README "Production" configures them (`password_file`, `acl_file`,
   * `use_username_as_clientid`), instead of anonymous access.
   */
  secured?: { passwordFile: string; aclFile: string }
}

export async function startMosquitto(options: MosquittoOptions = {}): Promise<LocalBroker & { process: ChildProcess }> {
  const tcpPort = options.tcpPort ?? (await freePort())
  const wsPort = options.wsPort ?? (await freePort())
  const mosquitto = await spawnMosquitto(
    [
      `listener ${tcpPort} 127.0.0.1`,
      'protocol mqtt',
      `listener ${wsPort} 127.0.0.1`,
      'protocol websockets',
      ...(options.secured
        ? ['allow_anonymous false', `password_file ${options.secured.passwordFile}`, `acl_file ${options.secured.aclFile}`, 'use_username_as_clientid true']
        : ['allow_anonymous true']),
      // Mosquitto 2.0 leaves Nagle's algorithm on by default: a job's frame then waits ~40 ms
      // for a delayed ACK (measured 48 ms vs 6 ms dispatch to result; README "Production").
      'set_tcp_nodelay true',
      // The protocol's MAX_MESSAGE_BYTES plus 1 KiB for the topic, as README "Production" advises.
      'max_packet_size 41944064',
    ],
    [tcpPort, wsPort],
  )
  return {
    ...mosquitto,
    tcpPort,
    wsPort,
    tcpUrl: `mqtt://127.0.0.1:${tcpPort}`,
    wsUrl: `ws://127.0.0.1:${wsPort}/mqtt`,
  }
}

export interface RunningMosquitto {
  process: ChildProcess
  close(): Promise<void>
}

/**
 * Runs Mosquitto with `config` (mosquitto.conf lines; persistence off and error logging are
 * added) and waits until each of `ports` takes connections.
 */
export async function spawnMosquitto(config: string[], ports: number[]): Promise<RunningMosquitto> {
  const dir = await mkdtemp(join(tmpdir(), 'depinfer-mosquitto-'))
  const configPath = join(dir, 'mosquitto.conf')
  await writeFile(configPath, [...config, 'persistence false', 'log_type error'].join('\n'))
  const child = spawn(MOSQUITTO_BIN, ['-c', configPath], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  try {
    await waitFor('mosquitto to listen', async () => {
      if (child.exitCode !== null) throw new Error(`mosquitto exited: ${stderr}`)
      for (const port of ports) if (!(await portOpen(port))) return undefined
      return true
    }, 10_000, 50)
  } catch (error) {
    child.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
    throw error
  }
  return {
    process: child,
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      await exited
      await rm(dir, { recursive: true, force: true })
    },
  }
}
