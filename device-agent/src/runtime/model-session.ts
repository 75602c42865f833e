/**
 * A model's onnxruntime session as the agent uses it: run raw tensors, release. Where the runs
 * happen is the session's business (config `ort.runIn`): on the agent's own thread, in a worker
 * thread (worker-session.ts), in a child process (process-session.ts), or on the agent's thread
 * until the model's runs prove long.
 */
import { performance } from 'node:perf_hooks'
import type * as ort from 'onnxruntime-node'
import { elementCount, messageOf, type RawTensor } from '@depinfer/shared'
import type { RunPlace } from '../config.js'
import { runModel } from './run-job.js'

/** The thread a session's runs happen on. */
export type SessionThread = Exclude<RunPlace, 'auto'>

/** What a session that can stop a run (a child process) holds it to. */
export interface RunLimits {
  /** When the run's jobs are due (performance.now() time): the run is stopped then (DeadlineExceededError). */
  deadlineAt?: number
  /** The most bytes its outputs may have together: more are refused (field `outputs`) before they are copied. */
  maxOutputBytes?: number
}

export interface ModelSession {
  readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[]
  readonly outputMetadata: readonly ort.InferenceSession.ValueMetadata[]
  readonly thread: SessionThread
  /**
   * The outputs named (all when none are), as raw tensors; InvalidJobInputError when onnxruntime
   * refuses the inputs. `limits` bind only a session that can stop a run (a child process).
   */
  run(inputs: readonly RawTensor[], outputNames: readonly string[], limits?: RunLimits): Promise<RawTensor[]>
  release(): Promise<void>
}

/** A session run on the agent's thread: the cheapest, and it holds the thread for each run. */
export class AgentThreadSession implements ModelSession {
  readonly thread = 'agent-thread'

  constructor(private readonly session: ort.InferenceSession) {}

  get inputMetadata() {
    return this.session.inputMetadata
  }

  get outputMetadata() {
    return this.session.outputMetadata
  }

  run(inputs: readonly RawTensor[], outputNames: readonly string[]): Promise<RawTensor[]> {
    return runModel(this.session, inputs, outputNames)
  }

  release(): Promise<void> {
    return this.session.release()
  }
}

/** Elements in the inputs of a run (at least 1: a run of scalars still costs something). */
const elementsOf = (inputs: readonly RawTensor[]): number =>
  Math.max(1, inputs.reduce((sum, tensor) => sum + elementCount(tensor.shape), 0))

/**
 * A run at least this long moves an 'auto' session to a worker thread. Past it the agent's thread
 * is held long enough to matter (a heartbeat is every 2 s; another model's job waits the whole
 * run), and the worker's cost, 0.1–0.5 ms per run (and ~50 MB of memory), is under 0.2% of such
 * a run.
 */
export const LONG_RUN_MS = 250

export interface PlacementEvents {
  log: (line: string) => void
  /** The session now runs in a worker thread (the device status says where each model runs). */
  moved: () => void
}

/**
 * ort.runIn 'auto': runs on the agent's thread, where short runs are cheapest, until a run (from
 * when the thread turns to it to its answer) takes LONG_RUN_MS or more, or is expected to (its
 * input's size at the cheapest time per element seen); then the session is opened again in a
 * worker thread and the runs go there. Not on the first run, which also sets onnxruntime up (its
 * memory arena, TensorRT's engine). If the worker cannot be opened, the model stays where it was.
 */
export class AutoPlacedSession implements ModelSession {
  #current: ModelSession
  #runs = 0
  /**
   * The lowest time per input element of the runs measured so far (the first aside): what the
   * next run can be expected to cost at least. The lowest, as small runs' fixed costs inflate it.
   */
  #msPerElement: number | undefined
  /** Runs started on the agent's thread and not answered: the old session outlives them. */
  readonly #agentThreadRuns = new Set<Promise<unknown>>()
  #moving: Promise<void> | undefined
  #released = false

  constructor(
    agentThread: ModelSession,
    private readonly openInWorker: () => Promise<ModelSession>,
    private readonly label: string,
    private readonly events: PlacementEvents,
  ) {
    this.#current = agentThread
  }

  get thread(): SessionThread {
    return this.#current.thread
  }

  get inputMetadata() {
    return this.#current.inputMetadata
  }

  get outputMetadata() {
    return this.#current.outputMetadata
  }

  async run(inputs: readonly RawTensor[], outputNames: readonly string[], limits?: RunLimits): Promise<RawTensor[]> {
    if (this.#released) throw new Error(`${this.label}: its session was released`)
    // Runs wait while the session moves: each step of the move (reading the file, starting the
    // thread, its answer) needs a turn of the agent's event loop, and under a steady queue every
    // turn would otherwise go to one more long run on this thread.
    if (this.#moving) {
      await this.#moving
      if (this.#released) throw new Error(`${this.label}: its session was released`)
    }
    // A run expected to be long moves the session first: one caller's huge input would otherwise
    // hold the thread (heartbeats, keepalive) for all of it, and the device would look gone.
    const expectedMs = this.#msPerElement === undefined ? 0 : this.#msPerElement * elementsOf(inputs)
    if (this.#current.thread === 'agent-thread' && expectedMs >= LONG_RUN_MS) {
      this.#moving ??= this.#moveToWorker(`a run of this input is expected to hold the agent's thread for ~${Math.round(expectedMs)} ms`)
      await this.#moving
      if (this.#released) throw new Error(`${this.label}: its session was released`)
    }
    const session = this.#current
    if (session.thread !== 'agent-thread') return session.run(inputs, outputNames, limits)
    // onnxruntime-node runs the session in a setImmediate that run() queues at once: this one,
    // queued just before it, marks when the thread turns to the run, so time spent queued behind
    // other work (another run, a hash, a load) is not counted as the run's.
    let started = performance.now()
    setImmediate(() => (started = performance.now()))
    const running = session.run(inputs, outputNames)
    this.#agentThreadRuns.add(running)
    try {
      return await running
    } finally {
      this.#agentThreadRuns.delete(running)
      const ms = performance.now() - started
      if (++this.#runs > 1) {
        const perElement = ms / elementsOf(inputs)
        this.#msPerElement = Math.min(this.#msPerElement ?? perElement, perElement)
        if (ms >= LONG_RUN_MS && !this.#released) this.#moving ??= this.#moveToWorker(`a run held the agent's thread for ${Math.round(ms)} ms`)
      }
    }
  }

  async #moveToWorker(why: string): Promise<void> {
    this.events.log(`${this.label}: ${why}; moving its session to a worker thread`)
    let worker: ModelSession
    try {
      worker = await this.openInWorker()
    } catch (error) {
      this.events.log(`${this.label} stays on the agent's thread: its worker thread could not open the session (${messageOf(error).split('\n')[0]})`)
      return
    }
    if (this.#released) return worker.release()
    const previous = this.#current
    this.#current = worker
    await Promise.allSettled([...this.#agentThreadRuns])
    await previous.release()
    this.events.log(`${this.label} runs in a worker thread`)
    this.events.moved()
  }

  async release(): Promise<void> {
    this.#released = true
    await this.#moving
    await Promise.allSettled([...this.#agentThreadRuns])
    await this.#current.release()
  }
}
