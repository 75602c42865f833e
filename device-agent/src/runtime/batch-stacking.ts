/**
 * Stacking jobs along the batch dimension (dimension 0, row-major): concatenating the inputs'
 * bytes IS stacking them, and an output whose dimension 0 equals the total rows splits back
 * into per-job slices the same way. Pure functions, so the batcher's correctness rests here.
 */
import { concatBytes, type RawTensor } from '@depinfer/shared'

export interface StackableJob {
  inputs: readonly RawTensor[]
  outputs: readonly string[]
  /** Jobs stack only with jobs of the same group (undefined: one group for all). */
  group?: string
}

/** Rows a job contributes (its inputs' shared dimension 0), or undefined if it cannot stack. */
export function rowsOf(job: StackableJob): number | undefined {
  const rows = job.inputs[0]?.shape[0]
  if (rows === undefined || rows < 1) return undefined
  return job.inputs.every((t) => t.shape.length >= 1 && t.shape[0] === rows) ? rows : undefined
}

/** Whether two jobs can share one run: same outputs, same inputs but for dimension 0. */
export function canStack(a: StackableJob, b: StackableJob): boolean {
  if (rowsOf(a) === undefined || rowsOf(b) === undefined || a.group !== b.group) return false
  if (a.outputs.length !== b.outputs.length || a.outputs.some((name, i) => b.outputs[i] !== name)) return false
  if (a.inputs.length !== b.inputs.length) return false
  return a.inputs.every((ta) => {
    const tb = b.inputs.find((t) => t.name === ta.name)
    return (
      tb !== undefined &&
      tb.datatype === ta.datatype &&
      tb.shape.length === ta.shape.length &&
      ta.shape.every((dim, d) => d === 0 || dim === tb.shape[d])
    )
  })
}

/** The batch's inputs: each input's bytes concatenated in job order, dimension 0 summed. */
export function stackInputs(jobs: readonly StackableJob[]): RawTensor[] {
  return jobs[0]!.inputs.map((first) => {
    const parts = jobs.map((job) => job.inputs.find((t) => t.name === first.name)!)
    const data = concatBytes(parts.map((t) => t.data))
    const rows = parts.reduce((sum, t) => sum + t.shape[0]!, 0)
    return { name: first.name, datatype: first.datatype, shape: [rows, ...first.shape.slice(1)], data }
  })
}

/**
 * Each job's share of the batch outputs, or undefined when some output does not carry the
 * batch in dimension 0 (then the jobs must run one by one).
 */
export function splitOutputs(outputs: readonly RawTensor[], rowsPerJob: readonly number[]): RawTensor[][] | undefined {
  const total = rowsPerJob.reduce((a, b) => a + b, 0)
  if (outputs.some((t) => t.shape[0] !== total || t.data.byteLength % total !== 0)) return undefined
  let row = 0
  return rowsPerJob.map((rows) => {
    const start = row
    row += rows
    return outputs.map((t) => {
      const bytesPerRow = t.data.byteLength / total
      return { ...t, shape: [rows, ...t.shape.slice(1)], data: t.data.subarray(start * bytesPerRow, row * bytesPerRow) }
    })
  })
}
