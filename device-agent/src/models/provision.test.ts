/**
 * Published models: the edge's listing, which models a device's sources select, and the
 * provisioner downloading, verifying and loading them (real onnxruntime) against the fake edge.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { waitFor } from '../../../scripts/local/wait-for.js'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { AgentConfigSchema, type AgentConfig } from '../config.js'
import { OrtRuntime } from '../runtime/execution.js'
import { quantizeModel } from '../quantize/index.js'
import { describe as describeModel, loadModel, modelsFromConfig, modelSha256, type LoadedModel } from '../runtime/loaded-model.js'
import { bundledModelPath } from './bundled.js'
import { cachedModelPath } from './download.js'
import { ChecksumMismatchError, DownloadError, HttpStatusError, ModelTooLargeError } from './errors.js'
import { ModelProvisioner, retryableFailure } from './provision.js'
import { freePort } from '../../../scripts/local/mosquitto.js'
import { fileToRun, listPublishedModels, MAX_STAR_MODELS, MAX_STAR_NAMES_PER_OWNER, selectPublished, type PublishedModel } from './published.js'
import { FakeEdge, sha256Of, type FakeModel, type FakeVariant } from './testing/fake-edge.js'
import { temporaryDirectory } from '../../../test/helpers/temporary-directory.js'

const CLS = readFileSync(bundledModelPath('ppocr-cls'))
const CLS_SHA = sha256Of(CLS)
const KEY = 'provider-key'
const INPUTS = [{ name: 'x', datatype: 'FP32' as const, shape: [-1, 3, -1, -1] }]
const OUTPUTS = [{ name: 'softmax_0.tmp_0', datatype: 'FP32' as const, shape: [-1, 2] }]
/** Another file that loads: the classifier with the first letter of its producer name changed. */
const clsFile = (letter: string): Buffer => {
  const file = Buffer.from(CLS)
  file[file.indexOf('PaddlePaddle')] = letter.charCodeAt(0)
  return file
}
const cached = (cacheDir: string, sha256: string) => existsSync(cachedModelPath(cacheDir, sha256))
const published = (name: string, version: string, overrides: Partial<FakeModel> = {}): FakeModel => ({
  name,
  version,
  bytes: CLS,
  inputs: INPUTS,
  outputs: OUTPUTS,
  ...overrides,
})

describe('selecting published models', () => {
  const listed = (name: string, version: string, size: number, sha256 = name.padEnd(64, '0').slice(0, 64)): PublishedModel => ({
    name,
    version,
    sha256: sha256.replace(/[^0-9a-f]/g, 'a'),
    size,
    variants: [],
  })
  const listing = [listed('a', '1', 10), listed('a', '2', 10), listed('a', '10', 10), listed('b', '1', 500), listed('c', '1', 50)]
  const limits = { maxModelBytes: 100, freeBytes: 1_000, cachedBytes: () => 0 }

  it(`serves at most MAX_STAR_MODELS versions for "*", the newest of each name first; a named one beyond them still`, () => {
    const many = Array.from({ length: 50 }, (_, i) => [listed(`m${i}`, '1', 1), listed(`m${i}`, '2', 1)]).flat()
    const roomy = { maxModelBytes: 100, freeBytes: 1e9, cachedBytes: () => 0 }
    const star = selectPublished([{ published: '*', versions: 'all' }], many, roomy)
    expect(star.selected).toHaveLength(MAX_STAR_MODELS)
    // Every name's newest (v2) before any older one.
    expect(star.selected.filter((m) => m.version === '2')).toHaveLength(50)
    expect(star.problems).toHaveLength(100 - MAX_STAR_MODELS)
    expect(star.problems[0]).toMatchObject({ passedOver: true, reason: `"*" serves at most ${MAX_STAR_MODELS} published versions in all; name the model to serve it` })
    const named = selectPublished([{ published: 'm49', version: '1' }, { published: '*', versions: 'all' }], many, roomy)
    expect(named.selected.map((m) => `${m.name} v${m.version}`)).toContain('m49 v1')
    expect(named.selected).toHaveLength(MAX_STAR_MODELS)
  })

  it('gives "*" the names published longest ago first, at most MAX_STAR_NAMES_PER_OWNER of one owner: a flood of tiny new names does not push out a model', () => {
    const roomy = { maxModelBytes: 1e9, freeBytes: 1e12, cachedBytes: () => 0 }
    const real = { ...listed('detector', '1', 2_400_000), owner: 'key:alice', publishedAt: 1_000 }
    const flood = Array.from({ length: 70 }, (_, i) => ({ ...listed(`junk${i}`, '1', 106), owner: 'key:mallory', publishedAt: 2_000 + i }))
    const { selected, problems } = selectPublished([{ published: '*' }], [...flood, real], roomy)
    expect(selected.map((m) => m.name).sort()).toEqual(['detector', ...Array.from({ length: MAX_STAR_NAMES_PER_OWNER }, (_, i) => `junk${i}`)].sort())
    expect(problems.filter((p) => /at most 8 names of one owner \(key:mallory\); name the model to serve it, or raise maxNamesPerOwner$/.test(p.reason))).toHaveLength(70 - MAX_STAR_NAMES_PER_OWNER)
    // An operator who trusts the edge's publishers (npm start's agent) takes more of each.
    const trusting = selectPublished([{ published: '*' }], [...flood, real], { ...roomy, maxNamesPerOwner: 30 })
    expect(trusting.selected.map((m) => m.name).sort()).toEqual(['detector', ...Array.from({ length: 30 }, (_, i) => `junk${i}`)].sort())
    expect(trusting.problems.filter((p) => /at most 30 names of one owner \(key:mallory\)/.test(p.reason))).toHaveLength(40)
    // Of 100 owners with one name each, the 64 published longest ago.
    const many = Array.from({ length: 100 }, (_, i) => ({ ...listed(`m${i}`, '1', 1), owner: `key:${i}`, publishedAt: 10_000 - i }))
    const star = selectPublished([{ published: '*' }], many, roomy)
    expect(star.selected.map((m) => m.name).sort()).toEqual(Array.from({ length: MAX_STAR_MODELS }, (_, i) => `m${99 - i}`).sort())
  })

  it('takes a named model at its newest version (numerically, as the edge orders them) or the version given', () => {
    expect(selectPublished([{ published: 'a' }], listing, limits).selected.map((m) => m.version)).toEqual(['10'])
    expect(selectPublished([{ published: 'a', version: '2' }], listing, limits).selected.map((m) => m.version)).toEqual(['2'])
  })

  it('takes the newest `versions` of a named model, or of every model for "*", or all of them', () => {
    const names = (sources: Parameters<typeof selectPublished>[0]) => selectPublished(sources, listing, limits).selected.map((m) => `${m.name} v${m.version}`)
    expect(names([{ published: 'a', versions: 2 }])).toEqual(['a v10', 'a v2'])
    expect(names([{ published: 'a', versions: 'all' }])).toEqual(['a v10', 'a v2', 'a v1'])
    expect(names([{ published: 'a', versions: 5 }])).toEqual(['a v10', 'a v2', 'a v1'])
    expect(names([{ published: '*', versions: 'all' }]).sort()).toEqual(['a v1', 'a v10', 'a v2', 'c v1'])
    // Short of space, the newest version of every name comes before older ones, however small.
    const tight = selectPublished([{ published: '*', versions: 'all' }], listing, { ...limits, freeBytes: 65 })
    expect(tight.selected.map((m) => `${m.name} v${m.version}`)).toEqual(['a v10', 'c v1'])
    expect(tight.problems).toContainEqual({ model: 'a v2', name: 'a', version: '2', reason: '10 bytes, more than the 5 left free in the cache', passedOver: true })
  })

  it('does not hold a named model to maxModelBytes, and reports one that is not published', () => {
    const { selected, problems } = selectPublished([{ published: 'b' }, { published: 'zzz' }, { published: 'a', version: '7' }], listing, limits)
    expect(selected.map((m) => m.name)).toEqual(['b'])
    expect(problems).toEqual([
      { model: 'zzz', name: 'zzz', reason: 'not published on the edge' },
      { model: 'a v7', name: 'a', version: '7', reason: 'not published on the edge' },
    ])
  })

  it('"*" takes the newest version of every model that fits: size limit, then free space after the ones before', () => {
    const star = selectPublished([{ published: '*' }], listing, limits)
    expect(star.selected.map((m) => `${m.name} v${m.version}`)).toEqual(['a v10', 'c v1'])
    // Left out as "*" means to (passedOver), unlike a named model that is not published.
    expect(star.problems).toEqual([{ model: 'b v1', name: 'b', version: '1', reason: '500 bytes, over maxModelBytes (100)', passedOver: true }])
    const tight = selectPublished([{ published: '*' }], listing, { ...limits, freeBytes: 55 })
    expect(tight.selected.map((m) => m.name)).toEqual(['a'])
    expect(tight.problems).toContainEqual({ model: 'c v1', name: 'c', version: '1', reason: '50 bytes, more than the 45 left free in the cache', passedOver: true })
    // A cached file needs no space.
    const cached = selectPublished([{ published: '*' }], listing, { ...limits, freeBytes: 0, cachedBytes: (sha) => listing.find((m) => m.sha256 === sha)!.size })
    expect(cached.selected.map((m) => m.name)).toEqual(['a', 'c'])
    // An interrupted download needs only the rest: c's 50 bytes with 40 in its .part fit in 45.
    const resumed = selectPublished([{ published: '*' }], listing, { ...limits, freeBytes: 55, cachedBytes: (sha) => (sha === listing[4]!.sha256 ? 40 : 0) })
    expect(resumed.selected.map((m) => m.name)).toEqual(['a', 'c'])
    const short = selectPublished([{ published: '*' }], listing, { ...limits, freeBytes: 15, cachedBytes: (sha) => (sha === listing[4]!.sha256 ? 40 : 0) })
    expect(short.problems).toContainEqual({ model: 'c v1', name: 'c', version: '1', reason: '50 bytes (10 still to download), more than the 5 left free in the cache', passedOver: true })
  })

  it('"*" serves the newest version that fits when a newer one does not (too large, or no room), and counts that toward `versions`', () => {
    const detector = [listed('d', '3', 500, 'd3'), listed('d', '2', 60, 'd2'), listed('d', '1', 40, 'd1'), listed('e', '1', 5, 'e1')]
    const names = (selection: ReturnType<typeof selectPublished>) => selection.selected.map((m) => `${m.name} v${m.version}`).sort()
    const tooLarge = selectPublished([{ published: '*' }], detector, limits)
    // v3 is over maxModelBytes (100): v2, not nothing (a restarted agent used to serve no d at all).
    expect(names(tooLarge)).toEqual(['d v2', 'e v1'])
    expect(tooLarge.problems).toEqual([{ model: 'd v3', name: 'd', version: '3', reason: '500 bytes, over maxModelBytes (100)', passedOver: true }])
    expect(names(selectPublished([{ published: '*', versions: 2 }], detector, limits))).toEqual(['d v1', 'd v2', 'e v1'])
    // No room for v2's 60 bytes after e: v1's 40 fit.
    const tight = selectPublished([{ published: '*' }], detector, { ...limits, freeBytes: 50 })
    expect(names(tight)).toEqual(['d v1', 'e v1'])
    expect(tight.problems).toContainEqual({ model: 'd v2', name: 'd', version: '2', reason: '60 bytes, more than the 45 left free in the cache', passedOver: true })
    // Once there is room, the newest that fits again (the agent then retires v1 when v2 is ready).
    expect(names(selectPublished([{ published: '*' }], detector, { ...limits, freeBytes: 70 }))).toEqual(['d v2', 'e v1'])
    // A version a named source took counts toward "*"'s versions of that name.
    expect(names(selectPublished([{ published: 'd', version: '2' }, { published: '*' }], detector, limits))).toEqual(['d v2', 'e v1'])
    expect(names(selectPublished([{ published: 'd', version: '1' }, { published: '*' }], detector, limits))).toEqual(['d v1', 'd v2', 'e v1'])
  })
})

describe('which failed downloads are tried again at the next listing', () => {
  const errno = (code: string) => Object.assign(new Error(`${code}: something about the cache`), { code })
  it('a network failure, and a cache the provider can fix (full, read-only, not permitted); not a wrong file', () => {
    for (const code of ['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM']) expect(retryableFailure(errno(code)), code).toBe(true)
    expect(retryableFailure(new HttpStatusError(503, 'HTTP 503 Service Unavailable'))).toBe(true)
    expect(retryableFailure(new ChecksumMismatchError('a'.repeat(64), 'b'.repeat(64), 'm'))).toBe(false)
    expect(retryableFailure(errno('ENOTDIR'))).toBe(false)
    // A download whose write failed on a full disk (its error carries the errno as its cause).
    expect(retryableFailure(new DownloadError('m: cannot write m.part: ENOSPC', false, { cause: errno('ENOSPC') }))).toBe(true)
    // No room for the file in the cache now: the provider may free some.
    expect(retryableFailure(new ModelTooLargeError('m: needs 10.0 MB more, 1.0 MB free in /cache'))).toBe(true)
    expect(retryableFailure(new Error('something else'))).toBe(false)
  })
})

describe('which file of a published version runs', () => {
  const edge = { url: 'https://edge.example', apiKey: 'k', pollSec: 0 }
  const int8 = (top1Agreement: number, minAgreement: number, size = 30) => ({
    kind: 'int8' as const,
    sha256: 'b'.repeat(64),
    size,
    report: { top1Agreement, maxAbsError: 0.2, samples: 200 },
    minAgreement,
  })
  const model = (variants: PublishedModel['variants']): PublishedModel => ({ name: 'm', version: '2', sha256: 'a'.repeat(64), size: 100, variants })

  it('runs the int8 variant where its report meets its threshold, with the default precision only', () => {
    expect(fileToRun(edge, model([int8(0.99, 0.99)]), 'int8-when-accepted')).toEqual({
      variant: 'int8',
      sha256: 'b'.repeat(64),
      size: 30,
      url: 'https://edge.example/api/models/m/versions/2/variants/int8/file',
    })
    const fp32 = { variant: 'fp32', sha256: 'a'.repeat(64), size: 100, url: 'https://edge.example/api/models/m/versions/2/file' }
    expect(fileToRun(edge, model([int8(0.98, 0.99)]), 'int8-when-accepted')).toEqual(fp32)
    expect(fileToRun(edge, model([]), 'int8-when-accepted')).toEqual(fp32)
    expect(fileToRun(edge, model([int8(1, 0.5)]), 'fp32')).toEqual(fp32)
  })

  it('"*" judges the size of the file it would run', () => {
    const limits = { maxModelBytes: 50, freeBytes: 1_000, cachedBytes: () => 0 }
    const listing = [model([int8(1, 0.99)])]
    expect(selectPublished([{ published: '*' }], listing, limits).selected).toEqual([])
    expect(selectPublished([{ published: '*' }], listing, limits, (m) => fileToRun(edge, m, 'int8-when-accepted')).selected).toEqual(listing)
  })
})

describe('published models from the edge', () => {
  let edge: FakeEdge
  let logs: string[]
  const runtime = new OrtRuntime(
    AgentConfigSchema.parse({ deviceId: 'd', broker: { url: 'mqtt://x' }, models: [{ bundled: 'ppocr-cls' }], keyPath: '/k' }).ort,
    () => {},
  )
  const configWith = (models: unknown[], extra: Record<string, unknown> = {}): AgentConfig =>
    AgentConfigSchema.parse({
      deviceId: 'd',
      broker: { url: 'mqtt://x' },
      keyPath: '/k',
      models,
      edge: { url: edge.url, apiKey: KEY, pollSec: 0 },
      cacheDir: temporaryDirectory('model-cache-'),
      download: { attempts: 2, stallTimeoutSec: 5 },
      ...extra,
    })

  /** A provisioner as the agent runs it, with its models, the ones it loaded and the changes it reported. */
  function provisionerFor(config: AgentConfig, sessionRuntime = runtime) {
    const models: LoadedModel[] = modelsFromConfig(config)
    const loaded: string[] = []
    const changes: string[] = []
    const retired: string[] = []
    const provisioner = new ModelProvisioner({
      config,
      models: () => models,
      load: (model) => {
        loaded.push(`${model.name} v${model.version}`)
        return loadModel(model, { runtime: sessionRuntime, maxBatch: 8 })
      },
      added: (model) => models.push(model),
      changed: (model) => changes.push(`${model.name} v${model.version} ${model.state}`),
      retired: (model) => {
        retired.push(`${model.name} v${model.version}`)
        models.splice(models.indexOf(model), 1)
        void model.session?.release()
      },
      log: (message) => logs.push(message),
      backoff: { minMs: 1, maxMs: 5 },
    })
    const start = (poll = false) => provisioner.start(models.filter((m) => m.remote), { poll })
    return { models, loaded, changes, retired, provisioner, start }
  }

  beforeAll(async () => {
    edge = await FakeEdge.start(KEY)
  })
  afterAll(() => edge.close())
  afterEach(() => {
    edge.models.length = 0
    edge.faults.clear()
    edge.fileRequests.length = 0
    logs = []
  })
  logs = []

  it('lists every version of every model, leaving out invalid entries', async () => {
    edge.models.push(published('cls', '1'), published('bad name!', '1'), published('nospec', '1', { inputs: [], outputs: [] }))
    const models = await listPublishedModels({ url: edge.url, apiKey: KEY, pollSec: 0 }, { timeoutMs: 5_000, log: (m) => logs.push(m) })
    expect(models).toEqual([
      { name: 'cls', version: '1', sha256: CLS_SHA, size: CLS.byteLength, priceWei: '1000', description: 'test model cls', inputs: INPUTS, outputs: OUTPUTS, variants: [] },
      { name: 'nospec', version: '1', sha256: CLS_SHA, size: CLS.byteLength, priceWei: '1000', description: 'test model nospec', variants: [] },
    ])
    expect(logs).toEqual([expect.stringMatching(/^ignoring published model #1: name: /)])
    const refused = await listPublishedModels({ url: edge.url, apiKey: 'wrong', pollSec: 0 }, { timeoutMs: 5_000 }).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(HttpStatusError)
    expect((refused as Error).message).toMatch(/HTTP 401 Unauthorized: invalid API key \(check edge.apiKey/)
    // An edge nobody listens for: why, not undici's bare "fetch failed".
    const port = await freePort()
    const closed = await listPublishedModels({ url: `http://127.0.0.1:${port}`, apiKey: KEY, pollSec: 0 }, { timeoutMs: 5_000 }).catch((e: unknown) => e)
    expect((closed as Error).message).toBe(`cannot list published models at http://127.0.0.1:${port}/api/models: fetch failed (ECONNREFUSED)`)
  })

  it('"*" downloads and loads the newest version of each listed model that fits, and nothing else', async () => {
    edge.models.push(
      published('cls-a', '1', { bytes: Buffer.from('an old version that must not be fetched') }),
      published('cls-a', '2'),
      published('cls-b', '1'), // the same file: fetched once, found in the cache for the second
      published('huge', '1', { listedSize: 10 ** 12 }),
    )
    const { models, loaded, start, provisioner } = provisionerFor(configWith([{ published: '*' }]))
    await start()
    expect(models.map((m) => [m.name, m.version, m.state, m.sha256])).toEqual([
      ['cls-a', '2', 'ready', CLS_SHA],
      ['cls-b', '1', 'ready', CLS_SHA],
    ])
    expect(loaded).toEqual(['cls-a v2', 'cls-b v1'])
    expect(edge.fileRequests.map((r) => r.model)).toEqual(['cls-a@2'])
    expect(provisioner.problems).toEqual([{ model: 'huge v1', name: 'huge', version: '1', reason: expect.stringMatching(/over maxModelBytes/), passedOver: true }])
    expect(describeModel(models[0]!)).toMatchObject({ name: 'cls-a', version: '2', sha256: CLS_SHA, state: 'ready', inputs: INPUTS, outputs: OUTPUTS })
    await Promise.all(models.map((m) => m.session?.release()))
  })

  it('"*" serves as many names of one owner as maxNamesPerOwner says', async () => {
    edge.models.push(...['n1', 'n2', 'n3'].map((name) => published(name, '1', { owner: 'key:dev' })))
    const { models, start, provisioner } = provisionerFor(configWith([{ published: '*' }], { maxNamesPerOwner: 2 }))
    await start()
    expect(models.map((m) => [m.name, m.state])).toEqual([
      ['n1', 'ready'],
      ['n2', 'ready'],
    ])
    expect(provisioner.problems).toEqual([{ model: 'n3', name: 'n3', reason: expect.stringMatching(/at most 2 names of one owner \(key:dev\)/), passedOver: true }])
    await Promise.all(models.map((m) => m.session?.release()))
  })

  it('serves a local model that is also published from its own file: without a word when it is the same file, saying so once when it is not', async () => {
    edge.models.push(published('ppocr-cls', '1'), published('ppocr-det', '1'))
    const { models, loaded, start, provisioner } = provisionerFor(configWith([{ bundled: 'ppocr-cls' }, { bundled: 'ppocr-det' }, { published: '*' }]))
    // Listed before the local files have loaded (as at an agent's start), then twice after.
    await start()
    await Promise.all(models.map((model) => loadModel(model, { runtime, maxBatch: 8 })))
    await provisioner.refresh()
    await provisioner.refresh()
    expect(models.map((m) => [m.name, m.path])).toEqual([
      ['ppocr-cls', bundledModelPath('ppocr-cls')],
      ['ppocr-det', bundledModelPath('ppocr-det')],
    ])
    expect(loaded).toEqual([]) // (loaded above, as the agent loads its local models, not by the provisioner)
    expect(edge.fileRequests).toEqual([])
    // Published ppocr-det v1 is the classifier's file, not the bundled detector's.
    expect(logs).toEqual([`published ppocr-det v1 is not downloaded: this device serves ppocr-det v1 from ${bundledModelPath('ppocr-det')}`])
    await Promise.all(models.map((m) => m.session?.release()))
  })

  it('retires a version its source no longer selects once the newer one is ready; keeps one a source names', async () => {
    edge.models.push(published('cls', '1'), published('other', '1'))
    const { models, retired, provisioner, start } = provisionerFor(configWith([{ published: 'cls' }, { published: 'other' }, { published: 'other', version: '1' }]))
    await start()
    expect(models.map((m) => `${m.name} v${m.version} ${m.state}`)).toEqual(['cls v1 ready', 'other v1 ready'])
    edge.models.push(published('cls', '2', { bytes: Buffer.concat([CLS, Buffer.alloc(0)]) }), published('other', '2'))
    await provisioner.refresh()
    await provisioner.idle()
    expect(models.map((m) => `${m.name} v${m.version} ${m.state}`)).toEqual(['other v1 ready', 'cls v2 ready', 'other v2 ready'])
    expect(retired).toEqual(['cls v1'])
    expect(logs).toContain('model cls v1: superseded by a newer version; serving it no more')
    await Promise.all(models.map((m) => m.session?.release()))
  })

  it("deletes a superseded version's cached file, not one a model served here still runs; keepUnservedFiles keeps them", async () => {
    const otherFile = clsFile('Q')
    const otherSha = sha256Of(otherFile)

    edge.models.push(published('cls', '1'), published('same', '1'))
    const config = configWith([{ published: 'cls' }, { published: 'same' }])
    const { models, provisioner, start } = provisionerFor(config)
    await start()
    // cls v2 is another file, same v2 the same file as before: only cls v1's file goes.
    writeFileSync(`${cachedModelPath(config.cacheDir, CLS_SHA)}.etag`, 'stale')
    edge.models.push(published('cls', '2', { bytes: otherFile }), published('same', '2'))
    await provisioner.refresh()
    await provisioner.idle()
    expect(models.map((m) => `${m.name} v${m.version} ${m.state}`)).toEqual(['cls v2 ready', 'same v2 ready'])
    expect(cached(config.cacheDir, otherSha)).toBe(true)
    expect(cached(config.cacheDir, CLS_SHA)).toBe(true) // same v2 runs it
    expect(logs.some((line) => line.includes('from the cache'))).toBe(false)
    // same v3 is the other file too: now nothing runs CLS_SHA, and it goes, with its .etag.
    edge.models.push(published('same', '3', { bytes: otherFile }))
    await provisioner.refresh()
    await provisioner.idle()
    expect(cached(config.cacheDir, CLS_SHA)).toBe(false)
    expect(existsSync(`${cachedModelPath(config.cacheDir, CLS_SHA)}.etag`)).toBe(false)
    expect(cached(config.cacheDir, otherSha)).toBe(true)
    expect(logs).toContain(`deleted ${CLS_SHA.slice(0, 12)}… (cls v1, same v1, same v2) from the cache, not served here: ${((CLS.length + 'stale'.length) / 1e6).toFixed(1)} MB freed`)
    await Promise.all(models.map((m) => m.session?.release()))

    // The same steps with keepUnservedFiles: every file stays.
    const keeping = configWith([{ published: 'cls' }], { keepUnservedFiles: true })
    edge.models.splice(0, edge.models.length, published('cls', '1'))
    const second = provisionerFor(keeping)
    await second.start()
    edge.models.push(published('cls', '2', { bytes: otherFile }))
    await second.provisioner.refresh()
    await second.provisioner.idle()
    expect(second.models.map((m) => `${m.name} v${m.version} ${m.state}`)).toEqual(['cls v2 ready'])
    expect(cached(keeping.cacheDir, CLS_SHA)).toBe(true)
    await Promise.all(second.models.map((m) => m.session?.release()))
  })

  it('at start, deletes the files of versions superseded while it was down and what their downloads left, never a file the edge does not list', async () => {
    edge.models.push(published('cls', '1'))
    const config = configWith([{ published: 'cls' }])
    const first = provisionerFor(config)
    await first.start()
    await Promise.all(first.models.map((m) => m.session?.release()))
    // While the agent is down: cls v2 is published, and 'gone' (not configured) left a .part.
    const newer = clsFile('R')
    const gone = clsFile('S')
    edge.models.push(published('cls', '2', { bytes: newer }), published('gone', '1', { bytes: gone }))
    const part = `${cachedModelPath(config.cacheDir, sha256Of(gone))}.part`
    writeFileSync(part, gone.subarray(0, 1_000))
    const stranger = join(config.cacheDir, `${'e'.repeat(64)}.onnx`)
    writeFileSync(stranger, 'a file some other tool put here')

    const second = provisionerFor(config)
    await second.start()
    await second.provisioner.idle()
    expect(second.models.map((m) => `${m.name} v${m.version} ${m.state}`)).toEqual(['cls v2 ready'])
    expect(cached(config.cacheDir, CLS_SHA)).toBe(false)
    expect(existsSync(part)).toBe(false)
    expect(cached(config.cacheDir, sha256Of(newer))).toBe(true)
    expect(existsSync(stranger)).toBe(true)
    await Promise.all(second.models.map((m) => m.session?.release()))
  })

  it('keeps serving the older versions `versions` selects when a new one is published', async () => {
    edge.models.push(published('cls', '1'))
    const { models, retired, provisioner, start } = provisionerFor(configWith([{ published: '*', versions: 2 }]))
    await start()
    edge.models.push(published('cls', '2'))
    await provisioner.refresh()
    await provisioner.idle()
    expect(models.map((m) => `${m.name} v${m.version} ${m.state}`)).toEqual(['cls v1 ready', 'cls v2 ready'])
    edge.models.push(published('cls', '3'))
    await provisioner.refresh()
    await provisioner.idle()
    expect(models.map((m) => `${m.name} v${m.version} ${m.state}`)).toEqual(['cls v2 ready', 'cls v3 ready'])
    expect(retired).toEqual(['cls v1'])
    // v4 never becomes ready (its download does not verify): v2, which it would replace, stays.
    edge.models.push(published('cls', '4', { listedSha256: 'f'.repeat(64) }))
    await provisioner.refresh()
    await provisioner.idle()
    expect(models.map((m) => `${m.name} v${m.version} ${m.state}`)).toEqual(['cls v2 ready', 'cls v3 ready', 'cls v4 failed'])
    expect(retired).toEqual(['cls v1'])
    await Promise.all(models.map((m) => m.session?.release()))
  })

  it('says a failing listing once while it lasts, says when it works again, and says the next failure again', async () => {
    const { provisioner } = provisionerFor(configWith([{ published: '*' }]))
    edge.listingDown = true
    try {
      await provisioner.refresh()
      await provisioner.refresh()
      edge.listingDown = false
      await provisioner.refresh()
      await provisioner.refresh()
      edge.listingDown = true
      await provisioner.refresh()
    } finally {
      edge.listingDown = false
    }
    const failure = expect.stringMatching(/HTTP 503 Service Unavailable/)
    expect(logs).toEqual([failure, 'listing published models works again', failure])
  })

  it('says once per model why it does not serve it, however its figures change, until it does', async () => {
    edge.models.push(published('huge', '1', { listedSize: 10 ** 12 }))
    const { provisioner } = provisionerFor(configWith([{ published: '*' }]))
    await provisioner.refresh()
    edge.models[0]!.listedSize = 10 ** 12 + 1
    await provisioner.refresh()
    expect(logs).toEqual([expect.stringMatching(/^not serving published huge v1: 1000000000000 bytes, over maxModelBytes/)])
    edge.models.length = 0
    await provisioner.refresh()
    edge.models.push(published('huge', '1', { listedSize: 10 ** 12 }))
    await provisioner.refresh()
    expect(logs).toHaveLength(2)
  })

  it("advertises a failed model's error in one line of at most 300 characters, without this device's paths", () => {
    const error = [
      'Load model from /home/pi/.depinfer/cache/' + 'ab'.repeat(32) + '.onnx failed: /onnxruntime_src/onnxruntime/core/graph/model.cc:180 ',
      "Unsupported model IR version: 99 (provider '/opt/depinfer/node_modules/onnxruntime-node/bin/libonnxruntime_providers_shared.so')",
      'while reading https://edge.example/api/models/cls/versions/1/file',
    ].join('\n')
    const model: LoadedModel = {
      name: 'cls',
      version: '1',
      path: `/home/pi/.depinfer/cache/${CLS_SHA}.onnx`,
      remote: { url: 'https://edge.example/api/models/cls/versions/1/file', sha256: CLS_SHA, inputs: INPUTS, outputs: OUTPUTS },
      state: 'failed',
      error,
      maxBatch: 1,
    }
    expect(describeModel(model)!.error).toBe(
      `Load model from ${'ab'.repeat(32)}.onnx failed: Unsupported model IR version: 99 (provider 'libonnxruntime_providers_shared.so') while reading https://edge.example/api/models/cls/versions/1/file`,
    )
    expect(describeModel({ ...model, error: 'x'.repeat(1_000) })!.error).toBe(`${'x'.repeat(299)}…`)
  })

  it('never loads a corrupted download: the model is failed with the reason, advertised by its listed sha256', async () => {
    edge.models.push(published('cls', '1'))
    edge.faults.set('cls@1', { corruptAt: 5000 })
    const config = configWith([{ published: 'cls' }])
    const { models, loaded, changes, start } = provisionerFor(config)
    await start()
    expect(loaded).toEqual([])
    expect(models).toMatchObject([{ name: 'cls', state: 'failed', error: expect.stringMatching(/downloaded file is corrupt: sha256 is [0-9a-f]{64}, expected/) }])
    expect(models[0]!.session).toBeUndefined()
    expect(changes).toEqual(['cls v1 failed'])
    expect(existsSync(cachedModelPath(config.cacheDir, CLS_SHA))).toBe(false)
    expect(describeModel(models[0]!)).toMatchObject({ sha256: CLS_SHA, state: 'failed' })
    // The status says why: the edge passes it on to callers and its index.
    expect(describeModel(models[0]!)!.error).toMatch(/downloaded file is corrupt: sha256 is [0-9a-f]{64}, expected/)
  })

  it('fails a model truncated on every try after its attempts, loads nothing, and tries again at the next listing', async () => {
    edge.models.push(published('cls', '1'))
    edge.faults.set('cls@1', { truncateFraction: 0.3 })
    const { models, loaded, provisioner, start } = provisionerFor(configWith([{ published: 'cls' }]))
    await start()
    expect(models).toMatchObject([{ state: 'failed', error: expect.stringMatching(/download failed after 2 attempts/) }])
    expect(loaded).toEqual([])
    expect(edge.requestsFor('cls', '1')).toHaveLength(2)
    // Tried again at the next listing, failing the same way: said once while it lasts.
    await provisioner.refresh()
    await provisioner.idle()
    expect(edge.requestsFor('cls', '1')).toHaveLength(4)
    expect(logs.filter((line) => line.startsWith('model cls v1 failed:')), logs.join('\n')).toHaveLength(1)
    edge.faults.clear()
    await provisioner.refresh()
    await provisioner.idle()
    expect(models).toMatchObject([{ state: 'ready', sha256: CLS_SHA }])
    expect(loaded).toEqual(['cls v1'])
    await models[0]!.session?.release()
  })

  it('tries a named model that did not fit in the free space again at every listing, saying so once', async () => {
    // Listed and announced at 1 PB, more than any disk here has free: what a device whose disk
    // is full sees (its provider may free space at any time, and the next try must be made).
    const huge = 10 ** 15
    edge.models.push(published('cls', '1', { listedSize: huge }))
    edge.faults.set('cls@1', { claimedSize: huge })
    const { models, loaded, provisioner, start } = provisionerFor(configWith([{ published: 'cls' }]))
    await start()
    expect(models).toMatchObject([{ state: 'failed', error: expect.stringMatching(/^cls v1: needs 1000000000\.0 MB more, [\d.]+ MB free in /) }])
    expect(edge.requestsFor('cls', '1')).toHaveLength(1)
    for (const listing of [2, 3]) {
      await provisioner.refresh()
      await provisioner.idle()
      expect(edge.requestsFor('cls', '1')).toHaveLength(listing)
    }
    expect(models).toMatchObject([{ state: 'failed' }])
    expect(loaded).toEqual([])
    expect(logs.filter((line) => line.startsWith('model cls v1 failed:')), logs.join('\n')).toHaveLength(1)
  })

  it('downloads a model again whose file was deleted from the cache while its process was closed, and serves it again', async () => {
    edge.models.push(published('cls', '1'))
    const config = configWith([{ published: 'cls' }], { ort: { executionProviders: ['cpu'], processIdleSec: 1 } })
    // Published models open in a process of their own (ort.runIn auto), closed after processIdleSec without a run.
    const idleClosing = new OrtRuntime(config.ort, (line) => logs.push(line))
    const { models, provisioner, start } = provisionerFor(config, idleClosing)
    await start()
    const [model] = models
    expect(model).toMatchObject({ state: 'ready', sha256: CLS_SHA })
    await waitFor('the idle process to close', async () => (logs.some((l) => l.includes('without a run')) ? true : undefined), 10_000, 50)
    // README: "Delete files freely: a missing one is downloaded again."
    rmSync(cachedModelPath(config.cacheDir, CLS_SHA))
    const input = { name: 'x', datatype: 'FP32' as const, shape: [1, 3, 48, 192], data: new Uint8Array(4 * 3 * 48 * 192) }
    await expect(model!.session!.run([input], [])).rejects.toThrow(/could not be opened again after its process was stopped: ENOENT/)
    expect(model).toMatchObject({ state: 'failed' })
    await provisioner.refresh()
    await provisioner.idle()
    expect(edge.requestsFor('cls', '1')).toHaveLength(2)
    expect(model).toMatchObject({ state: 'ready', sha256: CLS_SHA })
    const [output] = await model!.session!.run([input], [])
    expect(output!.shape).toEqual([1, 2])
    await model!.session!.release()
  })

  it('reports a wrong API key and an unpublished name without loading anything', async () => {
    edge.models.push(published('cls', '1'))
    const wrongKey = provisionerFor(configWith([{ published: 'cls' }], { edge: { url: edge.url, apiKey: 'wrong', pollSec: 0 } }))
    await wrongKey.start()
    expect(wrongKey.models).toEqual([])
    expect(wrongKey.provisioner.problems).toEqual([{ model: 'edge', reason: expect.stringMatching(/HTTP 401 .*check edge.apiKey/) }])
    // The edge's own 404 for a listing asked at the wrong path: its URL is at fault, not a model.
    const withPath = provisionerFor(configWith([{ published: 'cls' }], { edge: { url: `${edge.url}/api`, apiKey: KEY, pollSec: 0 } }))
    await withPath.start()
    expect(withPath.provisioner.problems).toEqual([
      { model: 'edge', reason: expect.stringMatching(/\/api\/api\/models: HTTP 404 .*\(set edge\.url to the edge's address without a path: the agent adds \/api\/models\)$/) },
    ])
    const unknown = provisionerFor(configWith([{ published: 'nope' }]))
    await unknown.start()
    expect(unknown.provisioner.problems).toEqual([{ model: 'nope', name: 'nope', reason: 'not published on the edge' }])
    expect(logs).toContain('not serving published nope: not published on the edge')
    // A cache directory that cannot be made is the cache's problem, not the edge's.
    const file = join(temporaryDirectory('not-a-dir-'), 'file')
    writeFileSync(file, 'x')
    const blocked = provisionerFor(configWith([{ published: 'cls' }], { cacheDir: join(file, 'cache') }))
    await blocked.start()
    expect(blocked.provisioner.problems).toEqual([{ model: 'cacheDir', reason: expect.stringMatching(/ENOTDIR/) }])
    expect(blocked.provisioner.problems[0]!.reason).toContain(join(file, 'cache'))
  })

  it('downloads URL sources (sha256 from the config), and fails one whose sha256 does not match', async () => {
    edge.models.push(published('cls', '1'))
    const config = configWith([
      { url: edge.fileUrl('cls', '1'), sha256: CLS_SHA.toUpperCase(), name: 'from-url', version: '3' },
      { url: edge.fileUrl('cls', '1'), sha256: 'ab'.repeat(32), name: 'wrong-sha' },
    ])
    const { models, loaded, start } = provisionerFor(config)
    await start()
    expect(models.map((m) => [m.name, m.version, m.state])).toEqual([
      ['from-url', '3', 'ready'],
      ['wrong-sha', '1', 'failed'],
    ])
    expect(models[1]!.error).toMatch(/wrong-sha v1: downloaded file is corrupt/)
    expect(loaded).toEqual(['from-url v3'])
    // A URL model has no declared tensors: it is advertised once loaded, not before.
    expect(describeModel(models[1]!)).toBeUndefined()
    await models[0]!.session?.release()
  })

  it('tries a URL source whose download failed for a reason that may pass again at the next listing (a device booted before its network)', async () => {
    edge.models.push(published('cls', '1'))
    edge.faults.set('cls@1', { truncateFraction: 0.3 })
    const { models, loaded, provisioner, start } = provisionerFor(configWith([{ url: edge.fileUrl('cls', '1'), sha256: CLS_SHA, name: 'from-url' }]))
    await start()
    expect(models).toMatchObject([{ name: 'from-url', state: 'failed', error: expect.stringMatching(/download failed after 2 attempts/) }])
    edge.faults.clear()
    await provisioner.refresh()
    await provisioner.idle()
    expect(models).toMatchObject([{ name: 'from-url', state: 'ready', sha256: CLS_SHA }])
    expect(loaded).toEqual(['from-url v1'])
    await models[0]!.session?.release()
  })

  it('downloads, verifies and runs the accepted int8 variant, advertised under the version\'s own sha256', async () => {
    const int8 = (await quantizeModel(CLS)).bytes
    const INT8_SHA = sha256Of(int8)
    const variant = (top1Agreement: number): FakeVariant => ({ kind: 'int8', bytes: int8, report: { top1Agreement, maxAbsError: 0.3, samples: 200 }, minAgreement: 0.99 })
    edge.models.push(published('q', '1', { variants: [variant(0.995)] }), published('low', '1', { variants: [variant(0.9)] }))
    edge.faults.set('q@1/int8', { cutAt: 20_000 }) // resumed like any download
    const config = configWith([{ published: 'q' }, { published: 'low' }])
    const { models, start } = provisionerFor(config)
    await start()
    const [q, low] = models
    expect(describeModel(q!)).toMatchObject({ name: 'q', sha256: CLS_SHA, state: 'ready', runs: { variant: 'int8', sha256: INT8_SHA }, inputs: INPUTS, outputs: OUTPUTS })
    expect(q!.sha256).toBe(INT8_SHA) // the file loaded, verified: what attestations name
    expect(modelSha256(q!)).toBe(CLS_SHA) // what jobs name
    expect(describeModel(low!)).toMatchObject({ name: 'low', sha256: CLS_SHA, state: 'ready', runs: { variant: 'fp32', sha256: CLS_SHA } })
    expect(edge.fileRequests.map((r) => [r.model, r.status])).toEqual([['q@1/int8', 200], ['q@1/int8', 206], ['low@1', 200]])
    expect(existsSync(cachedModelPath(config.cacheDir, INT8_SHA))).toBe(true)
    expect(logs).toContain(`model q v1 ready (int8 variant, sha256 ${INT8_SHA.slice(0, 12)}…)`)
    await Promise.all(models.map((m) => m.session?.release()))

    edge.fileRequests.length = 0
    const fp32 = provisionerFor(configWith([{ published: 'q' }], { precision: 'fp32' }))
    await fp32.start()
    expect(describeModel(fp32.models[0]!)).toMatchObject({ sha256: CLS_SHA, state: 'ready', runs: { variant: 'fp32', sha256: CLS_SHA } })
    expect(edge.fileRequests.map((r) => r.model)).toEqual(['q@1'])
    await fp32.models[0]!.session?.release()
  })

  it('falls back to the version\'s own file when its variant is corrupt or will not load', async () => {
    const int8 = (await quantizeModel(CLS)).bytes
    const notOnnx = new TextEncoder().encode('not an onnx model at all')
    const variant = (bytes: Uint8Array): FakeVariant => ({ kind: 'int8', bytes, report: { top1Agreement: 1, maxAbsError: 0, samples: 200 }, minAgreement: 0.99 })
    edge.models.push(published('corrupt', '1', { variants: [variant(int8)] }), published('unloadable', '1', { variants: [variant(notOnnx)] }))
    edge.faults.set('corrupt@1/int8', { corruptAt: 1_000 }) // every download of it: never verifies
    const { models, start } = provisionerFor(configWith([{ published: 'corrupt' }, { published: 'unloadable' }]))
    await start()
    for (const model of models) {
      // Serving, as any fp32 device does: the version's own file, verified, under its own sha256.
      expect(describeModel(model)).toMatchObject({ sha256: CLS_SHA, state: 'ready', runs: { variant: 'fp32', sha256: CLS_SHA } })
      expect(model.sha256).toBe(CLS_SHA)
      expect(logs).toContainEqual(expect.stringMatching(new RegExp(`^model ${model.name} v1: its int8 variant cannot be used \\(.+\\); running the version's own file instead$`)))
      // Ready as the version's own file, not as an "undefined variant".
      expect(logs).toContainEqual(`model ${model.name} v1 ready (sha256 ${CLS_SHA.slice(0, 12)}…)`)
    }
    // Both versions' own file is the same bytes: the second fallback finds it in the cache.
    expect(edge.fileRequests.map((r) => r.model)).toEqual(['corrupt@1/int8', 'corrupt@1', 'unloadable@1/int8'])
    await Promise.all(models.map((m) => m.session?.release()))
  })

  it('skips a variant entry it cannot read, keeping the version', async () => {
    edge.models.push(published('cls', '1', { variants: [{ kind: 'int8', bytes: CLS, report: { top1Agreement: 2, maxAbsError: 0, samples: 1 }, minAgreement: 0.5 }] }))
    const [model] = await listPublishedModels({ url: edge.url, apiKey: KEY, pollSec: 0 }, { timeoutMs: 5_000 })
    expect(model).toMatchObject({ name: 'cls', sha256: CLS_SHA, variants: [] })
  })

  it('picks up a model published later when polling', async () => {
    edge.models.push(published('cls', '1'))
    const { models, provisioner, start } = provisionerFor(configWith([{ published: '*' }], { edge: { url: edge.url, apiKey: KEY, pollSec: 1 } }))
    await start(true)
    expect(models.map((m) => m.name)).toEqual(['cls'])
    edge.models.push(published('later', '1'))
    await waitFor('the later model', async () => (models.find((m) => m.name === 'later')?.state === 'ready' ? true : undefined), 10_000)
    await provisioner.stop()
    expect(edge.listings).toBeGreaterThan(1)
    await Promise.all(models.map((m) => m.session?.release()))
  })
})
