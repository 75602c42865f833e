import { writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from './config.js'
import { temporaryDirectory } from '../../test/helpers/temporary-directory.js'

const writeConfig = (content: unknown) => {
  const path = join(temporaryDirectory('agent-config-'), 'agent.json')
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content))
  return path
}

describe('agent config', () => {
  it('serves every bundled model on a local broker when nothing is configured', () => {
    const config = loadConfig(undefined, { DEPINFER_DEVICE_ID: 'pi-1' })
    expect(config).toMatchObject({ deviceId: 'pi-1', broker: { url: 'mqtt://127.0.0.1:1883', keepaliveSec: 10 }, heartbeatSec: 2 })
    expect(config.models).toEqual([{ bundled: 'ppocr-cls' }, { bundled: 'ppocr-det' }, { bundled: 'ppocr-rec' }])
  })

  it('takes the file, then lets the environment override it', () => {
    const path = writeConfig({
      deviceId: 'from-file',
      broker: { url: 'mqtt://file:1883', username: 'u' },
      models: [{ name: 'mine', version: '3', path: '/m.onnx' }],
    })
    const config = loadConfig(path, { DEPINFER_BROKER_URL: 'mqtts://env:8883', DEPINFER_BROKER_PASSWORD: 'p' })
    expect(config.deviceId).toBe('from-file')
    expect(config.broker).toMatchObject({ url: 'mqtts://env:8883', username: 'u', password: 'p' })
    expect(config.models).toEqual([{ name: 'mine', version: '3', path: '/m.onnx' }])
    expect(loadConfig(path, { DEPINFER_MODELS: 'ppocr-det' }).models).toEqual([{ bundled: 'ppocr-det' }])
  })

  it.each([
    ['a device id that is not one topic level', { deviceId: 'a/b' }, /deviceId/],
    ['an unknown bundled model', { deviceId: 'd', models: [{ bundled: 'gpt-5' }] }, /models\.0/],
    ['a broker URL of another scheme', { deviceId: 'd', broker: { url: 'http://x' } }, /broker\.url/],
    ['a zero heartbeat', { deviceId: 'd', heartbeatSec: 0 }, /heartbeatSec/],
  ])('rejects %s with a message naming the field', (_what, content, message) => {
    const path = writeConfig(content)
    expect(() => loadConfig(path, {})).toThrow(ConfigError)
    expect(() => loadConfig(path, {})).toThrow(message)
  })

  it('runs accepted int8 variants unless told fp32, from the file or DEPINFER_PRECISION', () => {
    expect(loadConfig(undefined, { DEPINFER_DEVICE_ID: 'd' }).precision).toBe('int8-when-accepted')
    const path = writeConfig({ deviceId: 'd', precision: 'fp32' })
    expect(loadConfig(path, {}).precision).toBe('fp32')
    expect(loadConfig(path, { DEPINFER_PRECISION: 'int8-when-accepted' }).precision).toBe('int8-when-accepted')
    expect(() => loadConfig(path, { DEPINFER_PRECISION: 'int8' })).toThrow(
      'invalid agent config at precision (from DEPINFER_PRECISION): must be "int8-when-accepted" or "fp32"',
    )
    expect(() => loadConfig(writeConfig({ deviceId: 'd', precision: 'fp16' }), {})).toThrow(/at precision: must be/)
  })

  it.each([
    ['a misspelt top-level key', { modelz: [{ bundled: 'ppocr-det' }] }, 'unknown key "modelz" in agent config PATH (did you mean "models"?)'],
    ['a key in a section', { broker: { url: 'mqtt://x:1883', keepalive: 10 } }, 'unknown key "keepalive" at broker in agent config PATH (did you mean "keepaliveSec"?)'],
    ['a misspelt key of a model source', { models: [{ name: 'm', nmae: 'n', path: '/m.onnx' }] }, 'unknown key "nmae" at models.0 in agent config PATH (did you mean "name"?)'],
    ['a misspelt kind of model source', { models: [{ bundled: 'ppocr-cls' }, { bundeld: 'ppocr-det' }] }, 'unknown key "bundeld" at models.1 in agent config PATH (did you mean "bundled"?)'],
    ['a key another kind of model source has', { models: [{ bundled: 'ppocr-cls', version: '2' }] }, 'unknown key "version" at models.0 in agent config PATH (known keys: "bundled")'],
    ['keys of two kinds of model source', { models: [{ url: 'https://x/m.onnx', sha256: 'ab'.repeat(32), name: 'm', path: '/m.onnx' }] }, 'unknown key "path" at models.0 in agent config PATH (known keys: "url", "sha256", "name", "version")'],
    ['a key whose first word only one known key has', { keyFile: '/k' }, 'unknown key "keyFile" in agent config PATH (did you mean "keyPath"?)'],
    ['a key like no other', { ort: { threads: 2 } }, 'unknown key "threads" at ort in agent config PATH (known keys: "intraOpThreads", "interOpThreads", "allowSpinning", "runIn", "processMemoryLimitMb", "processIdleSec", "executionMode", "graphOptimizationLevel", "executionProviders")'],
  ])('refuses %s, naming the key and the file, instead of ignoring it', (_what, content, message) => {
    const path = writeConfig({ deviceId: 'd', ...content })
    expect(() => loadConfig(path, {})).toThrow(ConfigError)
    expect(() => loadConfig(path, {})).toThrow(message.replace('PATH', path))
  })

  it('checks the keys of the file only: every documented section is known', () => {
    const path = writeConfig({
      deviceId: 'd',
      broker: { url: 'mqtt://x:1883', username: 'u', password: 'p', keepaliveSec: 5 },
      models: [{ bundled: 'ppocr-cls' }, { name: 'm', version: '2', path: '/m.onnx' }, { published: 'r', version: '1' }, { url: 'https://x/m.onnx', sha256: 'ab'.repeat(32), name: 'u', version: '1' }],
      edge: { url: 'https://e', apiKey: 'k', pollSec: 0 },
      cacheDir: '/tmp/models',
      maxModelBytes: 1000,
      precision: 'fp32',
      download: { attempts: 2, stallTimeoutSec: 5 },
      keyPath: '/tmp/device.key',
      heartbeatSec: 1,
      batching: { maxBatch: 2, maxQueueDelayMs: 1 },
      reconnect: { minMs: 100, maxMs: 1000 },
      ort: { intraOpThreads: 1, interOpThreads: 1, allowSpinning: false, runIn: 'worker-thread', executionMode: 'parallel', graphOptimizationLevel: 'basic', executionProviders: ['cuda', 'cpu'] },
    })
    expect(loadConfig(path, {}).models).toHaveLength(4)
  })

  it('names the environment variable a bad value came from', () => {
    const refused = (env: Record<string, string>, message: RegExp) => expect(() => loadConfig(undefined, { DEPINFER_DEVICE_ID: 'd', ...env })).toThrow(message)
    refused({ DEPINFER_BROKER_URL: 'localhost:1883' }, /^invalid agent config at broker\.url \(from DEPINFER_BROKER_URL\): /)
    // mqtt.js threw these from inside the connection (a stack trace at start, where status passed),
    // or took no host as localhost and port 0 as 1883.
    for (const url of ['mqtt://broker.example.com:99999', 'mqtt://[::1', 'mqtt://', 'mqtts://:8883', 'mqtt://127.0.0.1:0']) {
      refused({ DEPINFER_BROKER_URL: url }, /^invalid agent config at broker\.url \(from DEPINFER_BROKER_URL\): broker\.url must name a host and, if it gives one, a port from 1 to 65535/)
    }
    for (const url of ['mqtt://[::1]:1883', 'wss://broker.example.com/mqtt', 'tcp://broker:65535']) {
      expect(loadConfig(undefined, { DEPINFER_DEVICE_ID: 'd', DEPINFER_BROKER_URL: url }).broker.url).toBe(url)
    }
    refused({ DEPINFER_DEVICE_ID: 'a b' }, /^invalid agent config at deviceId \(from DEPINFER_DEVICE_ID\): /)
    // A number that is out of range, not "expected number, received string".
    refused({ DEPINFER_ORT_THREADS: '-2' }, /^invalid agent config at ort\.intraOpThreads \(from DEPINFER_ORT_THREADS\): .*>=\s*0/)
    refused({ DEPINFER_ORT_INTEROP_THREADS: '2.5' }, /^invalid agent config at ort\.interOpThreads \(from DEPINFER_ORT_INTEROP_THREADS\): .*int/i)
  })

  it('ignores DEPINFER_API_KEY alone (the depinfer CLI exports it) when nothing published is served', () => {
    const path = writeConfig({ deviceId: 'd', models: [{ bundled: 'ppocr-cls' }] })
    expect(loadConfig(path, { DEPINFER_API_KEY: 'dpi_for-the-cli' }).edge).toBeUndefined()
    // …so the config's own mistake is what is reported.
    const wrong = writeConfig({ deviceId: 'd', heartbeatSec: -1, models: [{ bundled: 'ppocr-cls' }] })
    expect(() => loadConfig(wrong, { DEPINFER_API_KEY: 'dpi_for-the-cli' })).toThrow(/^invalid agent config at heartbeatSec: /)
    // Serving a published model, the missing URL is reported, naming the variables.
    expect(() => loadConfig(undefined, { DEPINFER_DEVICE_ID: 'd', DEPINFER_MODELS: 'published:mine', DEPINFER_API_KEY: 'dpi_k' })).toThrow(/edge\.url.*DEPINFER_EDGE_URL/)
    // An edge section the file writes is still checked, used or not.
    const partial = writeConfig({ deviceId: 'd', models: [{ bundled: 'ppocr-cls' }], edge: { apiKey: 'dpi_k' } })
    expect(() => loadConfig(partial, {})).toThrow(/edge\.url/)
  })

  it('refuses timings that would misbehave, and expands ~ in keyPath', () => {
    // Gateways count a device gone after 15 s of silence: a slower heartbeat made it flap.
    expect(() => loadConfig(writeConfig({ deviceId: 'd', heartbeatSec: 30 }), {})).toThrow(
      /at heartbeatSec: must be at most 5: gateways count a device gone after 15 s without a heartbeat/,
    )
    expect(loadConfig(writeConfig({ deviceId: 'd', heartbeatSec: 5 }), {}).heartbeatSec).toBe(5)
    expect(() => loadConfig(writeConfig({ deviceId: 'd', reconnect: { minMs: 20_000, maxMs: 1_000 } }), {})).toThrow(/at reconnect\.minMs: minMs must not be above maxMs/)
    expect(loadConfig(writeConfig({ deviceId: 'd', keyPath: '~/keys/device.key' }), {}).keyPath).toBe(join(homedir(), 'keys', 'device.key'))
  })

  it('refuses a file that is not a JSON object', () => {
    const path = writeConfig([{ bundled: 'ppocr-cls' }])
    expect(() => loadConfig(path, {})).toThrow(`agent config ${path} must be a JSON object`)
  })

  it('says which file it could not read', () => {
    expect(() => loadConfig('/nonexistent/agent.json', {})).toThrow(/cannot read config \/nonexistent\/agent\.json/)
    expect(() => loadConfig(writeConfig('{not json'), {})).toThrow(ConfigError)
  })
})
