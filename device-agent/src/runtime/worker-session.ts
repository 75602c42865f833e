/**
 * A model's onnxruntime session hosted in a worker thread of its own (session-host-main.ts is the
 * other end). onnxruntime-node runs a session synchronously on the thread that calls it; here
 * that thread is the worker's, so however long a run takes the agent's thread goes on with
 * heartbeats, MQTT keepalives, job intake and the other models. Each run costs a copy of the
 * inputs (the caller keeps its own: the agent hashes them after the run) and a message each way.
 */
import { Worker } from 'node:worker_threads'
import type { RawTensor } from '@depinfer/shared'
import type * as ort from 'onnxruntime-node'
import type { ModelSession } from './model-session.js'
import { InvalidJobInputError } from './run-job.js'
import { SESSION_HOST_ENTRY, transferableCopy, type SessionHostReply, type SessionHostRequest } from './session-host.js'

/** How long a release waits for the worker to release its session and exit before terminating it. */
const RELEASE_WAIT_MS = 5_000

interface PendingRun {
  resolve: (outputs: RawTensor[]) => void
  reject: (error: Error) => void
}

export class WorkerSession implements ModelSession {
  readonly thread = 'worker-thread'
  readonly #worker: Worker
  readonly #pending = new Map<number, PendingRun>()
  #nextId = 0
  /** Set once the worker has stopped (released, or died): every run not answered fails with it. */
  #stopped: Error | undefined
  /** Set by release: runs asked for after it are refused with it. */
  #refusing: Error | undefined
  #exited: Promise<void>

  private constructor(
    worker: Worker,
    readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[],
    readonly outputMetadata: readonly ort.InferenceSession.ValueMetadata[],
    private readonly label: string,
    lost: (reason: Error) => void,
  ) {
    this.#worker = worker
    worker.on('message', (reply: SessionHostReply) => this.#answer(reply))
    // After the 'message' listener: adding the first one refs the worker's port again. Idle, the
    // worker does not keep the process alive; with runs pending it does (runs ref it).
    worker.unref()
    worker.on('error', (error) => this.#stop(new Error(`${label}: its worker thread failed: ${error.message}`)))
    this.#exited = new Promise((resolve) => {
      worker.once('exit', (code) => {
        this.#stop(new Error(`${label}: its worker thread exited (code ${code})`))
        // Not released: the thread died (an uncaught error, out of memory) and the model with it.
        if (!this.#refusing) lost(this.#stopped!)
        resolve()
      })
    })
  }

  /**
   * Opens the model in a new worker thread; rejects with onnxruntime's reason when it cannot.
   * `lost` is called if the thread later ends without being released: every run fails from then on.
   */
  static open(model: Uint8Array, options: ort.InferenceSession.SessionOptions, label: string, lost: (reason: Error) => void): Promise<WorkerSession> {
    const worker = new Worker(SESSION_HOST_ENTRY)
    const own = new Uint8Array(model)
    const request: SessionHostRequest = { kind: 'open', model: own, options }
    worker.postMessage(request, [own.buffer])
    return new Promise((resolve, reject) => {
      // Only these listeners are removed: Worker keeps its own ('newListener' starts its port).
      const stopListening = () => {
        worker.off('message', onMessage)
        worker.off('error', failed)
        worker.off('exit', exited)
      }
      const failed = (error: Error) => {
        stopListening()
        void worker.terminate()
        reject(error)
      }
      const exited = (code: number) => failed(new Error(`${label}: its worker thread exited (code ${code}) before opening the session`))
      const onMessage = (reply: SessionHostReply) => {
        if (reply.kind !== 'opened') return failed(new Error(reply.kind === 'open-failed' ? reply.message : `${label}: unexpected ${reply.kind} from its worker thread`))
        stopListening()
        resolve(new WorkerSession(worker, reply.inputMetadata, reply.outputMetadata, label, lost))
      }
      worker.on('message', onMessage)
      worker.on('error', failed)
      worker.on('exit', exited)
    })
  }

  run(inputs: readonly RawTensor[], outputNames: readonly string[]): Promise<RawTensor[]> {
    const refusal = this.#refusing ?? this.#stopped
    if (refusal) return Promise.reject(refusal)
    const id = this.#nextId++
    const copies = inputs.map(transferableCopy)
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject })
      if (this.#pending.size === 1) this.#worker.ref()
      const request: SessionHostRequest = { kind: 'run', id, inputs: copies, outputNames: [...outputNames] }
      this.#worker.postMessage(request, copies.map((tensor) => tensor.data.buffer as ArrayBuffer))
    })
  }

  #answer(reply: SessionHostReply): void {
    if (reply.kind !== 'ran' && reply.kind !== 'run-failed') return
    const pending = this.#pending.get(reply.id)
    if (!pending) return
    this.#pending.delete(reply.id)
    // A release keeps its ref until the worker has exited.
    if (this.#pending.size === 0 && !this.#refusing) this.#worker.unref()
    // A worker's outputs travel inline (session-host-main.ts, workerChannel).
    if (reply.kind === 'ran') pending.resolve(reply.outputs as RawTensor[])
    else pending.reject(reply.field === undefined ? new Error(reply.message) : new InvalidJobInputError(reply.message, reply.field))
  }

  #stop(reason: Error): void {
    this.#stopped ??= reason
    for (const { reject } of this.#pending.values()) reject(this.#stopped)
    this.#pending.clear()
  }

  /**
   * Ends the thread without releasing the session, as a crash of the worker would (an uncaught
   * error, running out of memory), for the tests of what follows: a real crash of a healthy
   * worker cannot be produced on purpose. Only while no run is under way (see release).
   */
  crashForTest(): Promise<void> {
    if (this.#pending.size > 0) throw new Error('crashForTest: a run is under way')
    void this.#worker.terminate()
    return this.#exited
  }

  /**
   * Releases the session in the worker and ends the thread. Runs already sent are answered
   * first, later ones are refused. A thread that has answered them all and still has not ended
   * RELEASE_WAIT_MS later is terminated; one with a run under way is not: terminating a thread
   * inside onnxruntime's native run can bring the whole process down.
   */
  release(): Promise<void> {
    if (!this.#refusing) {
      this.#refusing = new Error(`${this.label}: its session was released`)
      this.#worker.ref()
      const request: SessionHostRequest = { kind: 'release' }
      this.#worker.postMessage(request)
      let timer: NodeJS.Timeout
      const terminateWhenIdle = () => {
        timer = setTimeout(() => (this.#pending.size === 0 ? void this.#worker.terminate() : terminateWhenIdle()), RELEASE_WAIT_MS)
      }
      terminateWhenIdle()
      void this.#exited.then(() => clearTimeout(timer))
    }
    return this.#exited
  }
}
