import { DEFAULT_MAX_MODEL_BYTES, DeviceStatusSchema, PROTOCOL_VERSION, type DeviceStatus, type ModelDescriptor } from '@depinfer/shared'
import { describe, expect, it } from 'vitest'
import { buildCatalog, CATALOG_MAX_AGE_MS, CatalogCache, resolveModel, unservedBySize } from './catalog.js'
import { DeviceTable, STALE_AFTER_MS, SUSPECT_AFTER_FAILURES } from './device-table.js'

const sha = (digit: string) => digit.repeat(64)
const KEY = `0x02${'ab'.repeat(32)}`

function model(version: string, file: string, state: ModelDescriptor['state'] = 'ready'): ModelDescriptor {
  const spec = { name: 'x', datatype: 'FP32' as const, shape: [1, 4] }
  return { name: 'm', version, sha256: sha(file), platform: 'onnxruntime_onnx', inputs: [spec], outputs: [spec], maxBatch: 1, state }
}

function status(deviceId: string, models: ModelDescriptor[], online = true): DeviceStatus {
  return {
    protocol: PROTOCOL_VERSION,
    deviceId,
    online,
    publicKey: KEY,
    models,
    hw: { arch: 'x64', cpus: 2, memMB: 1024, accel: [] },
    agentVersion: 'test',
    runtime: { name: 'onnxruntime-node', version: '1.30.0', executionProviders: ['cpu'] },
  }
}

const tableOf = (...statuses: DeviceStatus[]) => {
  const table = new DeviceTable(() => 0)
  // Parsed as the Gateway parses what arrives, so the fixtures are statuses an agent could send.
  for (const s of statuses) table.applyStatus(DeviceStatusSchema.parse(s))
  return table
}

describe('buildCatalog', () => {
  it('keeps a model devices advertised earlier as UNAVAILABLE while no device lists it', () => {
    // A restarted agent's first status lists nothing yet: the model must not become unknown.
    const earlier = model('1', 'a')
    const catalog = buildCatalog(tableOf(status('d1', [])), undefined, [earlier])
    expect(resolveModel(catalog, 'm', undefined)).toMatchObject({ state: 'UNAVAILABLE', reason: 'no device serves it now', readyDevices: [] })
    // A device listing it again wins over the memory.
    const back = buildCatalog(tableOf(status('d1', [earlier])), undefined, [earlier])
    expect(resolveModel(back, 'm', '1')).toMatchObject({ state: 'READY' })
  })

  it('routes nothing new to a draining (stopping) device, and says so while no other serves the model', () => {
    const draining = { ...status('d1', [model('1', 'a')]), draining: true }
    const alone = buildCatalog(tableOf(draining))
    expect(resolveModel(alone, 'm', '1')).toMatchObject({ state: 'UNAVAILABLE', readyDevices: [], reason: 'not routable: d1: shutting down' })
    const withOther = buildCatalog(tableOf(draining, status('d2', [model('1', 'a')])))
    expect(resolveModel(withOther, 'm', '1')!.readyDevices.map((d) => d.deviceId)).toEqual(['d2'])
  })

  it('says why a model is unavailable when its only device is suspect, and until when (not "no device online")', () => {
    const table = tableOf(status('d1', [model('1', 'a')]))
    for (let i = 0; i < SUSPECT_AFTER_FAILURES; i++) table.recordFailure(table.get('d1')!, 'cls/10')
    expect(resolveModel(buildCatalog(table), 'm', '1')).toMatchObject({
      state: 'UNAVAILABLE',
      readyDevices: [],
      reason: 'not routable: d1: left out of scheduling after repeated failures, until 1970-01-01T00:01:00.000Z',
    })
  })

  it("describes a model as the first device that serves it does, not as an offline or refused one listed first", () => {
    const wrong = { ...model('1', 'a'), outputs: [{ name: 'x', datatype: 'FP64' as const, shape: [7] }] }
    const table = tableOf(status('rogue', [wrong], false), status('unstaked', [wrong]), status('honest', [model('1', 'a')]))
    const catalog = buildCatalog(table, (device) => (device.deviceId === 'unstaked' ? 'device not staked' : undefined))
    const entry = resolveModel(catalog, 'm', '1')!
    expect(entry.readyDevices.map((d) => d.deviceId)).toEqual(['honest'])
    expect(entry.descriptor.outputs).toEqual(model('1', 'a').outputs)
  })

  it('says a model failed to load, and where, rather than that no device is online', () => {
    const catalog = buildCatalog(tableOf(status('d1', [model('1', 'a', 'failed')]), status('d2', [model('1', 'a', 'failed')])))
    expect(resolveModel(catalog, 'm', '1')).toMatchObject({ state: 'UNAVAILABLE', reason: expect.stringMatching(/failed to load on d1, d2/) })
    // With the error a device advertises, that error, for callers who cannot read the agent's log.
    const error = 'onnxruntime: Unsupported model IR version: 99, max supported IR version: 11'
    const told = buildCatalog(tableOf(status('d1', [{ ...model('1', 'a', 'failed'), error }]), status('d2', [model('1', 'a', 'failed')])))
    expect(resolveModel(told, 'm', '1')?.reason).toBe(`failed to load on d1 (${error}); d2 (see the agent's log)`)
    // Devices that say the same are named together, once.
    const same = buildCatalog(tableOf(...['d1', 'd2', 'd3'].map((id) => status(id, [{ ...model('1', 'a', 'failed'), error }]))))
    expect(resolveModel(same, 'm', '1')?.reason).toBe(`failed to load on d1, d2, d3 (${error})`)
    // However many devices say something else each, the reason stays readable.
    const many = buildCatalog(tableOf(...Array.from({ length: 40 }, (_, i) => status(`d${i}`, [{ ...model('1', 'a', 'failed'), error: `${error} #${i}`.padEnd(300, '.') }]))))
    const reason = resolveModel(many, 'm', '1')!.reason
    expect(reason).toHaveLength(1_000)
    expect(reason).toMatch(/^failed to load on d0 \(onnxruntime: .*…$/)
  })
})

describe('resolveModel with published versions', () => {
  const catalog = buildCatalog(
    tableOf(
      status('honest', [model('1', 'a'), model('2', 'b')]),
      // Serves an unpublished version 99, and version 2 with another file.
      status('rogue', [model('99', 'e'), model('2', 'f')]),
    ),
  )

  it('serves any version of a name nobody published', () => {
    expect(resolveModel(catalog, 'm', undefined)?.descriptor.version).toBe('99')
  })

  it('serves only published versions, with their published files, of a published name', () => {
    const published = [
      { version: '1', sha256: sha('a'), size: 1000 },
      { version: '2', sha256: sha('b'), size: 1000 },
    ]
    expect(resolveModel(catalog, 'm', undefined, published)?.descriptor).toMatchObject({ version: '2', sha256: sha('b') })
    expect(resolveModel(catalog, 'm', '99', published)).toBeUndefined()
    expect(resolveModel(catalog, 'm', '2', published)?.readyDevices.map((d) => d.deviceId)).toEqual(['honest'])
    // Version 2 published with another file than the one devices serve: nothing to route to.
    expect(resolveModel(catalog, 'm', '2', [{ version: '2', sha256: sha('c'), size: 1000 }])).toBeUndefined()
    expect(resolveModel(catalog, 'm', undefined, [{ version: '1', sha256: sha('a'), size: 1000 }])?.descriptor.version).toBe('1')
  })

  it('finds the devices running the published file even when another file was seen first', () => {
    const poisoned = buildCatalog(tableOf(status('rogue', [model('1', 'f')]), status('honest', [model('1', 'a')])))
    // Unpublished, the first file seen defines version 1 …
    expect(resolveModel(poisoned, 'm', '1')?.readyDevices.map((d) => d.deviceId)).toEqual(['rogue'])
    // … published, the registry does.
    expect(resolveModel(poisoned, 'm', '1', [{ version: '1', sha256: sha('a'), size: 1000 }])?.readyDevices.map((d) => d.deviceId)).toEqual(['honest'])
  })
})

describe('a published version no device serves', () => {
  const published = [
    { version: '1', sha256: sha('a'), size: 5_000_000 },
    { version: '2', sha256: sha('b'), size: 250_000_000 },
    { version: '3', sha256: sha('c'), size: DEFAULT_MAX_MODEL_BYTES },
  ]

  it('is said to be too large for devices serving every published model when its file is, and to retry much later', () => {
    expect(unservedBySize(published, '2')).toEqual({
      note: '; its file is 250.0 MB, more than the 200.0 MB devices serving every published model take by default: only devices that name it serve it',
      retryMuchLater: true,
    })
  })

  it('says nothing of a size those devices take, up to the limit itself', () => {
    for (const version of ['1', '3', 'unknown']) expect(unservedBySize(published, version)).toEqual({ note: '', retryMuchLater: false })
  })
})

describe('DeviceTable suspicion', () => {
  it('lets a late answer clear what timeouts earned, never what a refused attestation did', () => {
    let now = 0
    const table = new DeviceTable(() => now)
    const slow = table.applyStatus(DeviceStatusSchema.parse(status('slow', [model('1', 'a')])))
    for (let i = 0; i < 3; i++) table.recordFailure(slow, 'cls/10')
    expect(table.isSuspect(slow)).toBe(true)
    table.recordLateAnswer(slow, 5_000, 'cls/10')
    expect(table.isSuspect(slow)).toBe(false)
    expect(table.expectedWaitMs(slow, 'cls/10')).toBe(5_000)

    const forger = table.applyStatus(DeviceStatusSchema.parse(status('forger', [model('1', 'a')])))
    table.recordBadAttestation(forger)
    // Timeouts on top do not turn its reason into one a late answer clears.
    for (let i = 0; i < 3; i++) table.recordFailure(forger, 'cls/10')
    table.recordLateAnswer(forger, 10, 'cls/10')
    expect(table.isSuspect(forger)).toBe(true)
    now += 61_000
    expect(table.isSuspect(forger)).toBe(false)
  })
})

describe('CatalogCache', () => {
  /** A table on a clock the test moves, with a cache over it that counts its builds. */
  function cached(...statuses: DeviceStatus[]) {
    const clock = { now: 1_000_000 }
    const table = new DeviceTable(() => clock.now)
    for (const s of statuses) table.applyStatus(DeviceStatusSchema.parse(s))
    const gate = { revision: 0, refused: new Set<string>() }
    let builds = 0
    const cache = new CatalogCache(
      table,
      () => {
        builds++
        return buildCatalog(table, (device) => (gate.refused.has(device.deviceId) ? 'not staked' : undefined))
      },
      () => gate.revision,
      () => clock.now,
    )
    const ready = () => resolveModel(cache.get(), 'm', '1')?.readyDevices.map((d) => d.deviceId) ?? []
    return { clock, table, gate, cache, ready, builds: () => builds }
  }

  it('builds once while nothing changes, however often it is asked', () => {
    const { cache, ready, builds } = cached(status('d1', [model('1', 'a')]), status('d2', [model('1', 'a')]))
    expect(ready()).toEqual(['d1', 'd2'])
    const first = cache.get()
    for (let i = 0; i < 100; i++) expect(cache.get()).toBe(first)
    expect(builds()).toBe(1)
  })

  it('sees at once a new status, a device going offline, a suspect device and a refused attestation', () => {
    const { table, ready } = cached(status('d1', [model('1', 'a')]))
    expect(ready()).toEqual(['d1'])
    table.applyStatus(DeviceStatusSchema.parse(status('d2', [model('1', 'a')])))
    expect(ready()).toEqual(['d1', 'd2'])
    table.applyStatus(DeviceStatusSchema.parse(status('d2', [], false)))
    expect(ready()).toEqual(['d1'])
    for (let i = 0; i < SUSPECT_AFTER_FAILURES; i++) table.recordFailure(table.get('d1')!, 'cls/10')
    expect(ready()).toEqual([])
    table.recordLateAnswer(table.get('d1')!, 10, 'cls/10')
    expect(ready()).toEqual(['d1'])
    table.recordBadAttestation(table.get('d1')!)
    expect(ready()).toEqual([])
  })

  it('sees a change of the routing gate (a stake answer) at once', () => {
    const { gate, ready } = cached(status('d1', [model('1', 'a')]))
    expect(ready()).toEqual(['d1'])
    gate.refused.add('d1')
    gate.revision++
    expect(ready()).toEqual([])
  })

  it('drops a device that goes stale and takes back a suspect one when its time is up, with no event', () => {
    const { clock, table, ready } = cached(status('d1', [model('1', 'a')]), status('d2', [model('1', 'a')]))
    const beat = () => {
      for (const id of ['d1', 'd2']) table.applyHeartbeat(id, { inflight: 0, queued: 0, ewmaMs: 5, ts: clock.now })
    }
    table.recordBadAttestation(table.get('d2')!)
    const suspectUntil = table.get('d2')!.suspectUntil
    expect(ready()).toEqual(['d1'])
    // Both keep heartbeating (no event concerns d2's suspicion) until just before it ends.
    while (clock.now + 5_000 < suspectUntil) {
      clock.now += 5_000
      beat()
    }
    clock.now = suspectUntil - 1
    beat()
    expect(ready()).toEqual(['d1'])
    // 1 ms later, well within the catalog's maximum age: d2 is back.
    clock.now = suspectUntil
    expect(ready()).toEqual(['d1', 'd2'])
    // Now d2 falls silent: gone exactly when it goes stale.
    const lastHeard = clock.now - 1
    clock.now = lastHeard + STALE_AFTER_MS - 1
    table.applyHeartbeat('d1', { inflight: 0, queued: 0, ewmaMs: 5, ts: clock.now })
    expect(ready()).toEqual(['d1', 'd2'])
    clock.now = lastHeard + STALE_AFTER_MS
    expect(ready()).toEqual(['d1'])
    // And a heartbeat brings it back.
    table.applyHeartbeat('d2', { inflight: 0, queued: 0, ewmaMs: 5, ts: clock.now })
    expect(ready()).toEqual(['d1', 'd2'])
  })

  it('does not rebuild for heartbeats of online devices, but at least every CATALOG_MAX_AGE_MS', () => {
    const { clock, table, cache, builds } = cached(status('d1', [model('1', 'a')]))
    cache.get()
    for (let i = 0; i < 10; i++) {
      clock.now += 10
      table.applyHeartbeat('d1', { inflight: i, queued: 0, ewmaMs: 5, ts: clock.now })
      cache.get()
    }
    expect(builds()).toBe(1)
    clock.now += CATALOG_MAX_AGE_MS
    cache.get()
    expect(builds()).toBe(2)
  })
})
