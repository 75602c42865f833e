import { readFileSync } from 'node:fs'
import { bytesOf } from '@depinfer/shared'
import { ProcessSession } from '../device-agent/src/runtime/process-session.js'
import { WorkerSession } from '../device-agent/src/runtime/worker-session.js'
import { bundledModelPath } from '../device-agent/src/models/bundled.js'

const bytes = readFileSync(bundledModelPath(process.argv[2] === 'det' ? 'ppocr-det' : 'ppocr-cls'))
const shape = process.argv[2] === 'det' ? [1, 3, 544, 480] : [1, 3, 48, 192]
const n = shape.reduce((a, b) => a * b)
const x = { name: 'x', datatype: 'FP32' as const, shape, data: bytesOf(Float32Array.from({ length: n }, (_, i) => Math.sin(i))) }
const opts = { intraOpNumThreads: 0, graphOptimizationLevel: 'all' as const }
for (const kind of ['worker', 'process', 'worker', 'process']) {
  const t0 = performance.now()
  const s = kind === 'worker' ? await WorkerSession.open(bytes, opts, 'm', () => {}) : await ProcessSession.open(bytes, opts, { label: 'm', memoryLimitBytes: 2 ** 32, reread: async () => bytes, lost: () => {}, log: console.log })
  const openMs = performance.now() - t0
  for (let i = 0; i < 20; i++) await s.run([x], [])
  const runs = process.argv[2] === 'det' ? 30 : 300
  const t1 = performance.now()
  for (let i = 0; i < runs; i++) await s.run([x], [])
  const per = (performance.now() - t1) / runs
  let rss = ''
  if (s instanceof ProcessSession) rss = (/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${s.pid}/status`, 'utf8'))![1]!) + ' kB'
  console.log(kind, 'open', openMs.toFixed(0), 'ms; per run', per.toFixed(3), 'ms', rss)
  await s.release()
}
