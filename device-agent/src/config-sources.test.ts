/** Model sources of every kind (bundled, file, published, URL), the edge, the model cache and their env overrides. */
import { writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from './config.js'
import { temporaryDirectory } from '../../test/helpers/temporary-directory.js'

const SHA = 'ab'.repeat(32)
const writeConfig = (content: unknown) => {
  const path = join(temporaryDirectory('agent-config-'), 'agent.json')
  writeFileSync(path, JSON.stringify(content))
  return path
}

describe('model sources and the edge', () => {
  it('takes published and URL sources with the edge from the file, with defaults for the rest', () => {
    const config = loadConfig(
      writeConfig({
        deviceId: 'd',
        models: [
          { bundled: 'ppocr-cls' },
          { published: 'resnet' },
          { published: 'yolo', version: '3' },
          { published: '*' },
          { url: 'https://models.example/m.onnx', sha256: SHA.toUpperCase(), name: 'm' },
        ],
        edge: { url: 'https://edge.example/', apiKey: 'k' },
      }),
      {},
    )
    expect(config.models).toEqual([
      { bundled: 'ppocr-cls' },
      { published: 'resnet' },
      { published: 'yolo', version: '3' },
      { published: '*' },
      { url: 'https://models.example/m.onnx', sha256: SHA, name: 'm', version: '1' },
    ])
    expect(config.edge).toEqual({ url: 'https://edge.example', apiKey: 'k', pollSec: 60 })
    expect(config).toMatchObject({ cacheDir: join(homedir(), '.depinfer', 'models'), maxModelBytes: 200_000_000, download: { attempts: 5, stallTimeoutSec: 30 } })
  })

  it('lets the environment set the edge, the cache, the size limit and published models', () => {
    const config = loadConfig(writeConfig({ deviceId: 'd', edge: { url: 'https://file.example', apiKey: 'file-key', pollSec: 0 }, cacheDir: '~/models' }), {
      DEPINFER_EDGE_URL: 'http://127.0.0.1:8787',
      DEPINFER_API_KEY: 'env-key',
      DEPINFER_MODELS: 'ppocr-det, published:*, published:resnet@2, published:yolo, published:vit@all',
      DEPINFER_MAX_MODEL_BYTES: '1000',
    })
    expect(config.edge).toEqual({ url: 'http://127.0.0.1:8787', apiKey: 'env-key', pollSec: 0 })
    expect(config.models).toEqual([
      { bundled: 'ppocr-det' },
      { published: '*' },
      { published: 'resnet', version: '2' },
      { published: 'yolo' },
      { published: 'vit', versions: 'all' },
    ])
    expect(config.cacheDir).toBe(join(homedir(), 'models'))
    expect(config.maxModelBytes).toBe(1000)
    expect(loadConfig(undefined, { DEPINFER_DEVICE_ID: 'd', DEPINFER_MODEL_CACHE: '/var/cache/depinfer' }).cacheDir).toBe('/var/cache/depinfer')
    const polling = { DEPINFER_DEVICE_ID: 'd', DEPINFER_MODELS: 'published:*', DEPINFER_EDGE_URL: 'http://e', DEPINFER_API_KEY: 'k' }
    expect(loadConfig(undefined, { ...polling, DEPINFER_EDGE_POLL_SEC: '5' }).edge?.pollSec).toBe(5)
    expect(() => loadConfig(undefined, { ...polling, DEPINFER_EDGE_POLL_SEC: 'often' })).toThrow(/at edge\.pollSec \(from DEPINFER_EDGE_POLL_SEC\)/)
    expect(() => loadConfig(undefined, { ...polling, DEPINFER_EDGE_POLL_SEC: '0.01' })).toThrow(/at edge\.pollSec \(from DEPINFER_EDGE_POLL_SEC\): must be 0 \(only at start\) or at least 1 second/)
    expect(loadConfig(undefined, { DEPINFER_DEVICE_ID: 'd', DEPINFER_MAX_MODEL_BYTES: '2e8' }).maxModelBytes).toBe(200_000_000)
  })

  it('takes how many names of one owner "*" serves from the file or the environment, 1 to 64, else 8', () => {
    expect(loadConfig(undefined, { DEPINFER_DEVICE_ID: 'd' }).maxNamesPerOwner).toBe(8)
    expect(loadConfig(writeConfig({ deviceId: 'd', maxNamesPerOwner: 20 }), {}).maxNamesPerOwner).toBe(20)
    expect(loadConfig(writeConfig({ deviceId: 'd', maxNamesPerOwner: 20 }), { DEPINFER_MAX_NAMES_PER_OWNER: '64' }).maxNamesPerOwner).toBe(64)
    expect(() => loadConfig(undefined, { DEPINFER_DEVICE_ID: 'd', DEPINFER_MAX_NAMES_PER_OWNER: '65' })).toThrow(/at maxNamesPerOwner \(from DEPINFER_MAX_NAMES_PER_OWNER\)/)
    expect(() => loadConfig(writeConfig({ deviceId: 'd', maxNamesPerOwner: 0 }), {})).toThrow(/at maxNamesPerOwner/)
  })

  it.each([
    ['a published model without an edge', { models: [{ published: 'resnet' }] }, {}, /at edge: models\.0 is published on the edge: set edge\.url and edge\.apiKey/],
    ['an edge without a URL', { models: [{ published: '*' }] }, { DEPINFER_API_KEY: 'k' }, /at edge\.url: the edge URL is required \(edge\.url or DEPINFER_EDGE_URL\)/],
    ['an edge URL of another scheme', { models: [{ bundled: 'ppocr-cls' }] }, { DEPINFER_EDGE_URL: 'ftp://x', DEPINFER_API_KEY: 'k' }, /at edge\.url \(from DEPINFER_EDGE_URL\): must be an http/],
    ['a URL source without its sha256', { models: [{ url: 'https://x/m.onnx', name: 'm' }] }, {}, /at models\.0\.sha256: /],
    ['a URL source with a short sha256', { models: [{ url: 'https://x/m.onnx', name: 'm', sha256: 'abc' }] }, {}, /at models\.0\.sha256: must be 64 hex digits/],
    ['a URL source of another scheme', { models: [{ url: 'file:///m.onnx', name: 'm', sha256: SHA }] }, {}, /at models\.0\.url: must be an http/],
    ['a version with published "*"', { models: [{ published: '*', version: '2' }], edge: { url: 'https://e', apiKey: 'k' } }, {}, /at models\.0\.version: a version cannot be combined with published "\*"/],
    ['a version with versions', { models: [{ published: 'a', version: '2', versions: 2 }], edge: { url: 'https://e', apiKey: 'k' } }, {}, /at models\.0\.versions: give either version \(that one\) or versions/],
    ['versions that are no count', { models: [{ published: '*', versions: 0 }], edge: { url: 'https://e', apiKey: 'k' } }, {}, /at models\.0\.versions: must be a number of versions \(1 to 1000\) or "all"/],
    ['a published name that is not one', { models: [{ published: 'a b' }], edge: { url: 'https://e', apiKey: 'k' } }, {}, /at models\.0\.published: must be a model name or "\*"/],
    ['an empty DEPINFER_MODELS published entry', {}, { DEPINFER_MODELS: 'published:' }, /at models\.0\.published \(from DEPINFER_MODELS\)/],
    ['two sources of one name and version', { models: [{ name: 'm', path: 'a.onnx' }, { bundled: 'ppocr-cls' }, { name: 'm', path: 'b.onnx' }] }, {}, /at models\.2: model m v1 is models\.0 already/],
    ['a URL source named as a bundled model', { models: [{ bundled: 'ppocr-cls' }, { url: 'https://x/m.onnx', name: 'ppocr-cls', sha256: SHA }] }, {}, /at models\.1: model ppocr-cls v1 is models\.0 already/],
    ['a file source without its path', { models: [{ name: 'm' }] }, {}, /at models\.0: a model source needs one of "bundled", "path", "published", "url"/],
  ])('rejects %s, naming the field', (_what, content, env, message) => {
    const path = writeConfig({ deviceId: 'd', ...content })
    expect(() => loadConfig(path, env)).toThrow(ConfigError)
    expect(() => loadConfig(path, env)).toThrow(message)
  })
})

describe('paths in the config file', () => {
  it("takes the file's relative paths from the file's directory, wherever the agent starts", () => {
    const path = writeConfig({
      keyPath: 'keys/device.key',
      cacheDir: './cache',
      models: [{ name: 'm', version: '1', path: '../models/m.onnx' }, { bundled: 'ppocr-cls' }],
    })
    const directory = dirname(path)
    const config = loadConfig(path, {})
    expect(config.keyPath).toBe(join(directory, 'keys/device.key'))
    expect(config.cacheDir).toBe(join(directory, 'cache'))
    expect(config.models[0]).toMatchObject({ path: join(directory, '../models/m.onnx') })
    expect(config.models[1]).toEqual({ bundled: 'ppocr-cls' })
  })

  it('leaves absolute and home paths alone, and the environment\'s relative to the working directory', () => {
    const path = writeConfig({ keyPath: '~/.depinfer/k.key', cacheDir: '/var/cache/depinfer', models: [{ bundled: 'ppocr-cls' }] })
    expect(loadConfig(path, {})).toMatchObject({ keyPath: join(homedir(), '.depinfer/k.key'), cacheDir: '/var/cache/depinfer' })
    expect(loadConfig(path, { DEPINFER_KEY_PATH: 'here.key', DEPINFER_MODEL_CACHE: 'cache' })).toMatchObject({ keyPath: 'here.key', cacheDir: 'cache' })
  })
})
