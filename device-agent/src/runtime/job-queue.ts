/**
 * A FIFO per model that runs one job at a time: onnxruntime already spreads one run over all
 * intra-op threads, so running jobs of one model side by side only adds contention.
 */
export class JobQueue {
  readonly #waiting: Array<() => void> = []
  #running = 0

  get queued(): number {
    return this.#waiting.length
  }

  get running(): number {
    return this.#running
  }

  /** Runs `task` once every task enqueued before it has finished. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#running > 0) await new Promise<void>((resolve) => this.#waiting.push(resolve))
    this.#running++
    try {
      return await task()
    } finally {
      this.#running--
      this.#waiting.shift()?.()
    }
  }
}
