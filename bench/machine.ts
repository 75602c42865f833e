import { cpus, totalmem } from 'node:os'
import { createRequire } from 'node:module'

/** One line naming the machine and runtime versions, printed with every benchmark table. */
export function machineLine(): string {
  const require = createRequire(import.meta.url)
  const ortVersion = (require('onnxruntime-node/package.json') as { version: string }).version
  const cpu = cpus()[0]?.model.trim() ?? 'unknown CPU'
  return `${cpu}, ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, onnxruntime-node ${ortVersion}`
}
