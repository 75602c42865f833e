/**
 * `npm start` refuses what would fail later, before it starts anything: a port another process
 * holds (workerd would die ~15 s in, after the broker and the chain, with a stack trace) and a
 * port that is no port.
 */
import { spawn } from 'node:child_process'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from '../scripts/local/mosquitto.js'
import { REPO_ROOT } from '../scripts/local/paths.js'

function runStart(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'scripts/start.ts')], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk))
    // Should it start after all, it must not stay behind.
    const guard = setTimeout(() => child.kill('SIGINT'), 20_000)
    child.once('exit', (code) => {
      clearTimeout(guard)
      resolve({ code, stderr })
    })
  })
}

describe('npm start checks its settings first', () => {
  let held: Server
  let heldPort = 0
  beforeAll(async () => {
    held = createServer()
    await new Promise<void>((resolve) => held.listen(0, '127.0.0.1', resolve))
    heldPort = (held.address() as { port: number }).port
  })
  afterAll(() => new Promise<void>((resolve) => held.close(() => resolve())))

  it.each(['DEPINFER_PORT', 'DEPINFER_MQTT_PORT', 'DEPINFER_MQTT_WS_PORT'])('names %s when its port is taken, and starts nothing', async (variable) => {
    const env: Record<string, string> = {
      DEPINFER_PORT: String(await freePort()),
      DEPINFER_MQTT_PORT: String(await freePort()),
      DEPINFER_MQTT_WS_PORT: String(await freePort()),
      [variable]: String(heldPort),
    }
    const { code, stderr } = await runStart(env)
    expect(code, stderr).toBe(1)
    expect(stderr.trim()).toBe(`depinfer: port ${heldPort} is in use (another npm start?): stop what holds it, or set ${variable} to another port`)
  })

  it('names two variables given the same port', async () => {
    const port = String(await freePort())
    const { code, stderr } = await runStart({ DEPINFER_PORT: port, DEPINFER_MQTT_PORT: port, DEPINFER_MQTT_WS_PORT: String(await freePort()) })
    expect(code).toBe(2)
    expect(stderr.trim()).toBe(`depinfer: DEPINFER_MQTT_PORT and DEPINFER_PORT are both ${port}: each needs a port of its own`)
  })

  it('names a provider fee that is no amount of wei', async () => {
    const { code, stderr } = await runStart({ DEPINFER_PROVIDER_FEE_WEI: '7e3' })
    expect(code).toBe(2)
    expect(stderr.trim()).toBe('depinfer: DEPINFER_PROVIDER_FEE_WEI must be an amount of wei (a decimal integer below 2^256, no leading zeros), got "7e3"')
  })

  it('names a port variable that is no port', async () => {
    const { code, stderr } = await runStart({ DEPINFER_MQTT_PORT: '18a3' })
    expect(code).toBe(2)
    expect(stderr.trim()).toBe('depinfer: DEPINFER_MQTT_PORT must be a TCP port from 1 to 65535, got "18a3"')
  })
})
