/** The `depinfer-agent` command as a provider runs it: its bin, in its own process. */
import { spawnSync } from 'node:child_process'
import { closeSync, existsSync, fstatSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { AGENT_BIN } from '../../scripts/local/agent-process.js'
import { bundledModelPath } from './models/bundled.js'
import { cachedModelPath } from './models/download.js'
import { FakeEdge, sha256Of } from './models/testing/fake-edge.js'
import { runNode } from '../../test/helpers/run-node.js'
import { temporaryDirectory } from '../../test/helpers/temporary-directory.js'

const USAGE = /^usage: depinfer-agent <init\|start\|status>/m
const run = (args: string[]) => runNode(AGENT_BIN, args, {}, { withoutDepinferEnv: true })

describe('depinfer-agent', () => {
  it('answers an unknown flag or command with one line and the usage, exit 2', async () => {
    const flag = await run(['start', '--bogus'])
    expect(flag.code).toBe(2)
    expect(flag.stderr).toMatch(/^Unknown option '--bogus'/)
    expect(flag.stderr).toMatch(USAGE)
    expect(flag.stderr).not.toMatch(/\n\s+at /)
    const command = await run(['frob'])
    expect(command.code).toBe(2)
    expect(command.stderr).toMatch(/^unknown command "frob"\n/)
    expect(command.stderr).toMatch(USAGE)
  })

  it('prints its version (and onnxruntime\'s) with --version or -v, without a config', async () => {
    const agentPackage = JSON.parse(readFileSync(join(import.meta.dirname, '../package.json'), 'utf8')) as { version: string }
    for (const flag of ['--version', '-v']) {
      const version = await run([flag])
      expect(version.code, version.output).toBe(0)
      expect(version.stdout).toMatch(new RegExp(`^depinfer-agent ${agentPackage.version.replaceAll('.', '\\.')} \\(onnxruntime-node \\d+\\.\\d+\\.\\d+, node \\d+\\.\\d+\\.\\d+\\)\n$`))
    }
  })

  it('status exits 1 when a configured model cannot be loaded or the device has no key, 0 when every one is ready', async () => {
    const dir = temporaryDirectory('agent-cli-')
    const write = (name: string, models: unknown[]) => {
      const path = join(dir, name)
      writeFileSync(path, JSON.stringify({ deviceId: 'cli-test', keyPath: join(dir, 'device.key'), models }))
      return path
    }
    const keyless = await run(['status', '--config', write('good.json', [{ bundled: 'ppocr-cls' }])])
    expect(keyless.code, keyless.output).toBe(1)
    expect(keyless.stderr).toMatch(/device\.key.*: the edge routes nothing to a device without its key/)
    expect((await run(['init', '--config', join(dir, 'good.json')])).code).toBe(0)
    const good = await run(['status', '--config', write('good.json', [{ bundled: 'ppocr-cls' }])])
    expect(good.code, good.output).toBe(0)
    expect(JSON.parse(good.stdout)).not.toHaveProperty('online')
    expect(JSON.parse(good.stdout)).toMatchObject({ models: [{ name: 'ppocr-cls', state: 'ready' }], failed: [], keyProof: expect.stringMatching(/^0x[0-9a-f]{130}$/) })
    const bad = await run(['status', '--config', write('bad.json', [{ bundled: 'ppocr-cls' }, { name: 'gone', version: '1', path: join(dir, 'missing.onnx') }])])
    expect(bad.code, bad.output).toBe(1)
    expect(JSON.parse(bad.stdout)).toMatchObject({ failed: [{ name: 'gone', version: '1', error: expect.stringContaining('missing.onnx') }] })
  })

  it("starts each log line with its UTC time, except where systemd's journal stamps them (or as logTimestamps says)", async () => {
    const dir = temporaryDirectory('agent-cli-')
    const config = join(dir, 'agent.json')
    writeFileSync(config, JSON.stringify({ deviceId: 'stamped', keyPath: join(dir, 'no.key'), models: [{ bundled: 'ppocr-cls' }] }))
    let runs = 0
    /** Runs `status` with its output to a file, JOURNAL_STREAM naming that file (as systemd names the journal's stream) or another one. */
    const logged = (journal: 'this output' | 'another stream' | 'none', env: Record<string, string> = {}) => {
      const path = join(dir, `out-${runs++}.log`)
      const out = openSync(path, 'w')
      const { dev, ino } = fstatSync(out)
      const stream = journal === 'this output' ? `${dev}:${ino}` : journal === 'another stream' ? `${dev}:${ino + 1}` : ''
      const base = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('DEPINFER_')))
      spawnSync(process.execPath, [AGENT_BIN, 'status', '--config', config], { env: { ...base, JOURNAL_STREAM: stream, ...env }, stdio: ['ignore', out, out] })
      closeSync(out)
      const line = readFileSync(path, 'utf8').split('\n').find((text) => text.includes('the edge routes nothing'))!
      return /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[agent stamped\] /.test(line) ? 'stamped' : line.startsWith('[agent stamped] ') ? 'bare' : line
    }
    expect(logged('none')).toBe('stamped')
    expect(logged('this output')).toBe('bare')
    // Inherited by a process whose output goes elsewhere: not the journal's stream.
    expect(logged('another stream')).toBe('stamped')
    expect(logged('this output', { DEPINFER_LOG_TIMESTAMPS: 'on' })).toBe('stamped')
    expect(logged('none', { DEPINFER_LOG_TIMESTAMPS: 'off' })).toBe('bare')
    const wrong = await runNode(AGENT_BIN, ['status', '--config', config], { DEPINFER_LOG_TIMESTAMPS: 'yes' }, { withoutDepinferEnv: true })
    expect(wrong.stderr).toMatch(/^invalid agent config at logTimestamps \(from DEPINFER_LOG_TIMESTAMPS\): must be "auto", "on", "off"/)
  })

  it('init says a keyPath that is a directory is one, rather than a key to remove', async () => {
    const dir = temporaryDirectory('agent-cli-')
    const init = await runNode(AGENT_BIN, ['init'], { DEPINFER_DEVICE_ID: 'd', DEPINFER_KEY_PATH: dir }, { withoutDepinferEnv: true })
    expect(init.code).toBe(1)
    expect(init.stderr.trim()).toBe(`keyPath ${dir} is a directory: name the key file itself, e.g. ${join(dir, 'device.key')}`)
    const status = await runNode(AGENT_BIN, ['status'], { DEPINFER_DEVICE_ID: 'd', DEPINFER_KEY_PATH: dir, DEPINFER_MODELS: 'ppocr-cls' }, { withoutDepinferEnv: true })
    expect(status.stderr).toContain(`keyPath ${dir} is a directory: name the key file itself`)
    const slash = await runNode(AGENT_BIN, ['init'], { DEPINFER_DEVICE_ID: 'd', DEPINFER_KEY_PATH: `${join(dir, 'new')}/` }, { withoutDepinferEnv: true })
    expect(slash.stderr.trim()).toBe(`keyPath ${join(dir, 'new')}/ ends with a slash: name the key file itself, e.g. ${join(dir, 'new', 'device.key')}`)
  })

  it('warns when broker.username is not the deviceId (a per-device ACL would drop everything it publishes)', async () => {
    const dir = temporaryDirectory('agent-cli-')
    const status = async (username: string) => {
      const config = join(dir, `${username}.json`)
      writeFileSync(config, JSON.stringify({ deviceId: 'pi-garage', keyPath: join(dir, 'no.key'), broker: { username, password: 'x' }, models: [{ bundled: 'ppocr-cls' }] }))
      return (await run(['status', '--config', config])).stderr
    }
    expect(await status('pi-kitchen')).toMatch(/WARNING: broker\.username "pi-kitchen" is not the deviceId "pi-garage": a broker that grants each device its own topics by its login/)
    expect(await status('pi-garage')).not.toMatch(/WARNING/)
  })

  it('status deletes no file from the cache: a running agent sharing it may serve a version status does not select', async () => {
    const cls = readFileSync(bundledModelPath('ppocr-cls'))
    // Another file that loads: the classifier with a letter of its producer name changed.
    const newer = Buffer.from(cls)
    newer[newer.indexOf('PaddlePaddle')] = 'Q'.charCodeAt(0)
    const tensors = { inputs: [{ name: 'x', datatype: 'FP32' as const, shape: [-1, 3, -1, -1] }], outputs: [{ name: 'softmax_0.tmp_0', datatype: 'FP32' as const, shape: [-1, 2] }] }
    const edge = await FakeEdge.start('provider-key', [
      { name: 'cls', version: '1', bytes: cls, ...tensors },
      { name: 'cls', version: '2', bytes: newer, ...tensors },
    ])
    try {
      const dir = temporaryDirectory('agent-cli-cache-')
      const cacheDir = join(dir, 'cache')
      const write = (name: string, models: unknown[]) => {
        const path = join(dir, name)
        writeFileSync(path, JSON.stringify({ deviceId: 'cli-cache', keyPath: join(dir, 'device.key'), cacheDir, edge: { url: edge.url, apiKey: 'provider-key' }, models }))
        return path
      }
      // The service's config: v1, downloaded into the cache.
      expect((await run(['init', '--config', write('v1.json', [{ published: 'cls', version: '1' }])])).code).toBe(0)
      const served = await run(['status', '--config', join(dir, 'v1.json')])
      expect(served.code, served.output).toBe(0)
      expect(existsSync(cachedModelPath(cacheDir, sha256Of(cls)))).toBe(true)
      // A check of another config (the newest version) while the service runs.
      const check = await run(['status', '--config', write('newest.json', [{ published: 'cls' }])])
      expect(check.code, check.output).toBe(0)
      expect(JSON.parse(check.stdout)).toMatchObject({ models: [{ name: 'cls', version: '2', state: 'ready' }] })
      expect(check.stderr).not.toMatch(/deleted/)
      expect(existsSync(cachedModelPath(cacheDir, sha256Of(cls)))).toBe(true)
    } finally {
      await edge.close()
    }
  })

  it('status passes a device whose "*" leaves out what does not fit, and fails one missing a model it names', async () => {
    const edge = await FakeEdge.start('provider-key', [
      { name: 'big', version: '1', bytes: Buffer.from('never downloaded'), listedSize: 10 ** 12, inputs: [{ name: 'x', datatype: 'FP32', shape: [-1] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1] }] },
    ])
    try {
      const dir = temporaryDirectory('agent-cli-star-')
      const keyPath = join(dir, 'device.key')
      const write = (name: string, models: unknown[]) => {
        const path = join(dir, name)
        writeFileSync(path, JSON.stringify({ deviceId: 'cli-star', keyPath, cacheDir: join(dir, 'cache'), edge: { url: edge.url, apiKey: 'provider-key' }, models }))
        return path
      }
      expect((await run(['init', '--config', write('star.json', [{ published: '*' }])])).code).toBe(0)
      const star = await run(['status', '--config', write('star.json', [{ bundled: 'ppocr-cls' }, { published: '*' }])])
      expect(star.code, star.output).toBe(0)
      expect(JSON.parse(star.stdout)).toMatchObject({ failed: [], passedOver: [{ name: 'big', version: '1', reason: expect.stringMatching(/over maxModelBytes/) }] })
      // Published failures in the shape of a loaded model's ({name, version, error}), for health checks.
      const named = await run(['status', '--config', write('named.json', [{ bundled: 'ppocr-cls' }, { published: 'absent' }, { published: 'big', version: '3' }])])
      expect(named.code, named.output).toBe(1)
      expect(JSON.parse(named.stdout)).toMatchObject({
        failed: [
          { name: 'absent', error: 'not published on the edge' },
          { name: 'big', version: '3', error: 'not published on the edge' },
        ],
        passedOver: [],
      })
    } finally {
      await edge.close()
    }
  })
})
