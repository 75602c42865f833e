/**
 * Dynamic batching per model, in the manner of Triton's dynamic batcher: while the model's
 * session is busy, compatible jobs queue up; when it frees, they run together as one batch
 * (up to `maxBatch` rows) and each job gets its own slice of the outputs. At low load a job runs
 * alone at once (no added delay unless `maxQueueDelayMs` asks to wait for company).
 */
import { MAX_TENSOR_BYTES, type RawTensor } from '@depinfer/shared'
import { canStack, rowsOf, splitOutputs, stackInputs, type StackableJob } from './batch-stacking.js'
import type { RunLimits } from './model-session.js'

export interface BatcherOptions {
  /** Most rows (sum of jobs' dimension 0) in one run; 1 disables batching. */
  maxBatch: number
  /** How long the oldest queued job may wait for more to batch with, in milliseconds. */
  maxQueueDelayMs: number
}

export interface BatchedResult {
  outputs: RawTensor[]
  queueMs: number
  inferMs: number
  /** Jobs that shared the run (1 when the job ran alone). */
  batchJobs: number
}

export class DeadlineExceededError extends Error {
  override name = 'DeadlineExceededError'
}

interface QueuedJob extends StackableJob {
  enqueuedAt: number
  deadlineAt: number
  resolve: (result: BatchedResult) => void
  reject: (error: unknown) => void
}

const IDLE_POLL_MS = 20

/**
 * Runs the model: `deadlineAt` (this.now() time) is when the run's last job is due, and its
 * outputs may have MAX_TENSOR_BYTES per job (see ModelSession.run's limits).
 */
type RunModel = (inputs: RawTensor[], outputs: readonly string[], limits: Required<RunLimits>) => Promise<RawTensor[]>

export class Batcher {
  readonly #queue: QueuedJob[] = []
  #draining = false

  constructor(
    private readonly runModel: RunModel,
    private readonly options: BatcherOptions,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get queued(): number {
    return this.#queue.length
  }

  /** Resolves once no job is queued or running (polled: only a retired model waits for it). */
  async idle(): Promise<void> {
    while (this.#draining || this.#queue.length > 0) await new Promise((resolve) => setTimeout(resolve, IDLE_POLL_MS))
  }

  /** Runs a job (alone or in a batch); rejects with DeadlineExceededError if it waited too long. */
  submit(job: StackableJob, deadlineMs: number): Promise<BatchedResult> {
    return new Promise((resolve, reject) => {
      const enqueuedAt = this.now()
      this.#queue.push({ ...job, enqueuedAt, deadlineAt: enqueuedAt + deadlineMs, resolve, reject })
      void this.#drain()
    })
  }

  async #drain(): Promise<void> {
    if (this.#draining) return
    this.#draining = true
    try {
      while (this.#queue.length > 0) {
        await this.#waitForCompany()
        const batch = this.#takeBatch()
        if (batch.length > 0) await this.#run(batch)
      }
    } finally {
      this.#draining = false
    }
  }

  async #waitForCompany(): Promise<void> {
    const { maxQueueDelayMs, maxBatch } = this.options
    if (maxQueueDelayMs <= 0 || maxBatch <= 1) return
    const waitMs = this.#queue[0]!.enqueuedAt + maxQueueDelayMs - this.now()
    if (waitMs > 0 && this.#queue.length < maxBatch) await new Promise((resolve) => setTimeout(resolve, waitMs))
  }

  /** The oldest live job and the compatible jobs behind it, up to maxBatch rows. */
  #takeBatch(): QueuedJob[] {
    const now = this.now()
    for (let i = this.#queue.length - 1; i >= 0; i--) {
      const job = this.#queue[i]!
      if (job.deadlineAt < now) {
        this.#queue.splice(i, 1)
        job.reject(new DeadlineExceededError(`queued ${Math.round(now - job.enqueuedAt)} ms, past the job's deadline`))
      }
    }
    const first = this.#queue.shift()
    if (!first) return []
    const batch = [first]
    let rows = rowsOf(first)
    if (rows === undefined || this.options.maxBatch <= 1) return batch
    for (let i = 0; i < this.#queue.length && rows < this.options.maxBatch; ) {
      const candidate = this.#queue[i]!
      const candidateRows = rowsOf(candidate)
      if (candidateRows !== undefined && rows + candidateRows <= this.options.maxBatch && canStack(first, candidate)) {
        batch.push(candidate)
        rows += candidateRows
        this.#queue.splice(i, 1)
      } else {
        i++
      }
    }
    return batch
  }

  async #run(batch: QueuedJob[]): Promise<void> {
    const started = this.now()
    if (batch.length > 1) {
      try {
        const limits = { deadlineAt: Math.max(...batch.map((job) => job.deadlineAt)), maxOutputBytes: MAX_TENSOR_BYTES * batch.length }
        const outputs = await this.runModel(stackInputs(batch), batch[0]!.outputs, limits)
        const slices = splitOutputs(outputs, batch.map((job) => rowsOf(job)!))
        if (slices) {
          const inferMs = this.now() - started
          batch.forEach((job, i) => job.resolve({ outputs: slices[i]!, queueMs: started - job.enqueuedAt, inferMs, batchJobs: batch.length }))
          return
        }
      } catch {
        // A batch fails as a whole (say one job's input upsets the model): run the jobs one by
        // one below, so each gets its own answer or its own error.
      }
    }
    for (const job of batch) {
      const jobStarted = this.now()
      // The batch's run may have taken the time (a process session stops a run at the deadline).
      if (job.deadlineAt < jobStarted) {
        job.reject(new DeadlineExceededError(`its deadline passed while its batch ran`))
        continue
      }
      try {
        const outputs = await this.runModel([...job.inputs], job.outputs, { deadlineAt: job.deadlineAt, maxOutputBytes: MAX_TENSOR_BYTES })
        job.resolve({ outputs, queueMs: jobStarted - job.enqueuedAt, inferMs: this.now() - jobStarted, batchJobs: 1 })
      } catch (error) {
        job.reject(error)
      }
    }
  }
}
