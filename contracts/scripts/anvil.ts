/**
 * Starts the anvil binary that npm installed (`@foundry-rs/anvil-<platform>`; nothing is
 * downloaded) on 127.0.0.1 and waits until it answers JSON-RPC.
 *
 *     const anvil = await startAnvil()
 *     try { ... anvil.rpcUrl ... } finally { await anvil.stop() }
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export interface AnvilInstance {
  rpcUrl: string
  port: number
  /** Terminates anvil (SIGTERM, then SIGKILL after a grace period); safe to call twice. */
  stop(): Promise<void>
}

export interface StartAnvilOptions {
  /** Fixed port; by default a free one is chosen. */
  port?: number
  /** Extra anvil CLI arguments. */
  args?: readonly string[]
  /** How long to wait for the RPC to answer (ms). */
  timeoutMs?: number
}

const PLATFORM_PACKAGES: Partial<Record<string, string>> = {
  'linux-x64': '@foundry-rs/anvil-linux-amd64',
  'linux-arm64': '@foundry-rs/anvil-linux-arm64',
  'darwin-x64': '@foundry-rs/anvil-darwin-amd64',
  'darwin-arm64': '@foundry-rs/anvil-darwin-arm64',
  'win32-x64': '@foundry-rs/anvil-win32-amd64',
}

const require = createRequire(join(dirname(fileURLToPath(import.meta.url)), '..', 'package.json'))

/** Path of the native anvil binary installed through npm. */
export function anvilBinaryPath(): string {
  const binary = process.platform === 'win32' ? 'anvil.exe' : 'anvil'
  const pkg = PLATFORM_PACKAGES[`${process.platform}-${process.arch}`]
  if (pkg) {
    try {
      return require.resolve(`${pkg}/bin/${binary}`)
    } catch {
      // fall through to the wrapper's download location
    }
  }
  // @foundry-rs/anvil's postinstall downloads the binary next to itself when the platform
  // package is missing (it is denied in the root allowScripts, so this only exists if run by hand).
  try {
    const fallback = join(dirname(require.resolve('@foundry-rs/anvil/package.json')), binary)
    if (existsSync(fallback)) return fallback
  } catch {
    // not installed
  }
  throw new Error(
    `no anvil binary for ${process.platform}-${process.arch}: expected ${pkg ?? 'a supported platform'} ` +
      '(an optional dependency of @foundry-rs/anvil) in node_modules',
  )
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address ? address.port : 0
      server.close(() => (port ? resolvePort(port) : reject(new Error('could not pick a free port'))))
    })
  })
}

async function chainIdAnswers(rpcUrl: string): Promise<boolean> {
  try {
    const response = await fetch(rpcUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
      signal: AbortSignal.timeout(1_000),
    })
    if (!response.ok) return false
    const body = (await response.json()) as { result?: unknown }
    return typeof body.result === 'string'
  } catch {
    return false
  }
}

function stopProcess(child: ChildProcess, graceMs = 2_000): Promise<void> {
  return new Promise((done) => {
    if (child.exitCode !== null || child.signalCode !== null) return done()
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    child.once('exit', () => {
      clearTimeout(timer)
      done()
    })
    child.kill('SIGTERM')
  })
}

async function startOnce(port: number, options: StartAnvilOptions): Promise<AnvilInstance> {
  const rpcUrl = `http://127.0.0.1:${port}`
  const child = spawn(anvilBinaryPath(), ['--host', '127.0.0.1', '--port', String(port), ...(options.args ?? [])], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-4_000)
  })
  // Never leave anvil behind if this process exits without calling stop().
  const killOnExit = (): void => {
    child.kill('SIGKILL')
  }
  process.once('exit', killOnExit)

  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopping ??= stopProcess(child).finally(() => process.removeListener('exit', killOnExit))
    return stopping
  }

  let exited = false
  let spawnError: Error | undefined
  child.once('exit', () => {
    exited = true
  })
  child.once('error', (error) => {
    spawnError = error
    exited = true
  })

  const deadline = Date.now() + (options.timeoutMs ?? 15_000)
  while (Date.now() < deadline) {
    if (exited) break
    if (await chainIdAnswers(rpcUrl)) return { rpcUrl, port, stop }
    await new Promise((r) => setTimeout(r, 25))
  }
  await stop()
  const reason = spawnError?.message ?? (exited ? `exited (code ${child.exitCode})` : 'did not answer eth_chainId in time')
  throw new AnvilStartError(`anvil on port ${port} ${reason}${stderr ? `:\n${stderr.trim()}` : ''}`, exited && !spawnError)
}

class AnvilStartError extends Error {
  constructor(message: string, readonly exitedEarly: boolean) {
    super(message)
    this.name = 'AnvilStartError'
  }
}

export async function startAnvil(options: StartAnvilOptions = {}): Promise<AnvilInstance> {
  if (options.port !== undefined) return startOnce(options.port, options)
  // A port picked by freePort() can be taken before anvil binds it: retry with another.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(await freePort(), options)
    } catch (error) {
      if (!(error instanceof AnvilStartError && error.exitedEarly) || attempt >= 3) throw error
    }
  }
}

const invokedDirectly = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]
if (invokedDirectly) {
  const port = process.argv[2] ? Number(process.argv[2]) : undefined
  const anvil = await startAnvil(port === undefined ? {} : { port })
  console.log(`anvil listening on ${anvil.rpcUrl} (Ctrl-C to stop)`)
  const shutdown = (): void => void anvil.stop().then(() => process.exit(0))
  process.once('SIGINT', shutdown)
  process.once('SIGTERM', shutdown)
}
