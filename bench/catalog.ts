/**
 * What the Gateway's model catalog costs a job as the fleet grows. Every job resolves its model
 * in the catalog (twice: once to check the request, once to pick devices); building one walks
 * every device. Measures, on the edge's real DeviceTable / buildCatalog / CatalogCache code and
 * fleets of 1 to 1,000 devices with three models each:
 *   rebuilt  buildCatalog per lookup (what the Gateway did before CatalogCache), two lookups per job
 *   cached   CatalogCache.get per lookup (two per job) when nothing changed (cache hits),
 *            plus the candidate filter of a job
 * The cache still rebuilds on device events (statuses, suspicion) and at least once a second:
 * that one rebuild (the "rebuilt" figure) is shared by all the jobs of that second. In-process
 * and deterministic input; the figures are per job, median of 5 rounds.
 */
import { DeviceStatusSchema, PROTOCOL_VERSION, type ModelDescriptor } from '@depinfer/shared'
import { buildCatalog, CatalogCache, resolveModel } from '../edge/src/gateway/catalog.js'
import { DeviceTable } from '../edge/src/gateway/device-table.js'
import { acceptedFileOn } from '../edge/src/gateway/served-file.js'
import { machineLine } from './machine.js'
import { recordSummary } from './summary.js'

const FLEETS = [1, 100, 1_000]
const MODELS = ['classifier', 'detector', 'recognizer']
const ROUNDS = 5
/** Lookups per round: ~200,000 device visits when rebuilding, whatever the fleet. */
const jobsPerRound = (devices: number) => Math.max(100, Math.round(200_000 / devices))
/** A frozen clock: no device goes stale while a slow round runs (that would empty the catalog). */
const NOW = 1_750_000_000_000
const now = () => NOW

function model(name: string, index: number): ModelDescriptor {
  const spec = { name: 'x', datatype: 'FP32' as const, shape: [1, 3, 48, 192] }
  return { name, version: '1', sha256: String(index + 1).repeat(64), platform: 'onnxruntime_onnx', inputs: [spec], outputs: [spec], maxBatch: 8, state: 'ready' }
}

function fleet(devices: number): DeviceTable {
  const table = new DeviceTable(now)
  for (let i = 0; i < devices; i++) {
    table.applyStatus(
      DeviceStatusSchema.parse({
        protocol: PROTOCOL_VERSION,
        deviceId: `device-${i}`,
        online: true,
        publicKey: `0x02${'ab'.repeat(32)}`,
        models: MODELS.map(model),
        hw: { arch: 'arm64', cpus: 4, memMB: 8192, accel: [] },
        agentVersion: 'bench',
        runtime: { name: 'onnxruntime-node', version: '1.30.0', executionProviders: ['cpu'] },
      }),
    )
  }
  return table
}

/** Median µs per job of `job`, over ROUNDS rounds of `jobs` after a warm-up round. */
function perJobMicros(jobs: number, job: (i: number) => void): number {
  const rounds: number[] = []
  for (let round = 0; round <= ROUNDS; round++) {
    const started = performance.now()
    for (let i = 0; i < jobs; i++) job(i)
    if (round > 0) rounds.push(((performance.now() - started) * 1000) / jobs)
  }
  return rounds.sort((a, b) => a - b)[Math.floor(rounds.length / 2)]!
}

function main(): void {
  console.log(`machine: ${machineLine()}`)
  console.log(`\n### Catalog cost per job (${MODELS.length} models per device, median of ${ROUNDS} rounds)\n`)
  console.log('| devices | rebuilt, µs per job | cache hit, µs per job | ratio |')
  console.log('|---|---|---|---|')
  let largest = { rebuilt: 0, cached: 0 }
  for (const devices of FLEETS) {
    const table = fleet(devices)
    const lookups = (get: () => ReturnType<typeof buildCatalog>) => (i: number) => {
      const name = MODELS[i % MODELS.length]!
      resolveModel(get(), name, '1', [])
      const entry = resolveModel(get(), name, '1', [])!
      const candidates = entry.readyDevices.filter((d) => acceptedFileOn(d, entry.descriptor, []) !== undefined)
      if (candidates.length !== devices) throw new Error(`expected ${devices} candidates, got ${candidates.length}`)
    }
    const rebuilt = perJobMicros(jobsPerRound(devices), lookups(() => buildCatalog(table)))
    const cache = new CatalogCache(table, () => buildCatalog(table), () => 0, now)
    const cached = perJobMicros(jobsPerRound(devices), lookups(() => cache.get()))
    console.log(`| ${devices.toLocaleString('en-US')} | ${rebuilt.toFixed(1)} | ${cached.toFixed(1)} | ${(rebuilt / cached).toFixed(1)}x |`)
    largest = { rebuilt, cached }
  }
  const devices = FLEETS.at(-1)!.toLocaleString('en-US')
  recordSummary({
    bench: 'catalog',
    metric: `Gateway catalog cost per job, ${devices} devices (rebuilt per lookup → cache hit)`,
    value: `${(largest.rebuilt / 1000).toFixed(2)} → ${(largest.cached / 1000).toFixed(3)} ms`,
    target: '',
    met: null,
  })
}

main()
