/**
 * A model's onnxruntime session in a child process of its own (session-host-main.ts is the other end,
 * as for a worker thread). What a worker thread cannot be, a process can: stopped. onnxruntime
 * cannot interrupt a run, and terminating a thread inside one can bring the whole agent down; a
 * process is killed (SIGKILL) and takes its run and every byte it allocated with it. So a run still
 * going at its jobs' deadline ends with its process, as does one whose process holds more memory
 * than `memoryLimitBytes`; the next run opens the model again in a new process, from the file,
 * after checking its sha256 again. It is what a model anyone with a key may publish gets: a Loop
 * whose trip count is an input held an audit's worker thread (and a core) for as long as the
 * caller asked, and a ConstantOfShape sized by an input took the agent from 1 to 2.8 GB.
 *
 * The cost over a worker thread: more memory (a Node process), the inputs and outputs copied
 * (large ones through a scratch file, session-scratch.ts) rather than moved, and the model's
 * opening again after each stop.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { messageOf, type RawTensor } from '@depinfer/shared'
import type * as ort from 'onnxruntime-node'
import { DeadlineExceededError } from './batcher.js'
import type { ModelSession, RunLimits } from './model-session.js'
import { InvalidJobInputError } from './run-job.js'
import { SESSION_HOST_ENTRY, type SessionHostReply, type SessionHostRequest } from './session-host.js'
import { ScratchFile } from './session-scratch.js'

/**
 * How far past its deadline a run may go before its process is stopped: the answer may be on its
 * way, and a run started late (its job queued) is better finished than thrown away with the
 * process (whose opening again then holds the jobs behind it). Three times the model's usual run,
 * between these bounds.
 */
const DEADLINE_GRACE_MS = { min: 100, max: 5_000 }
/** Weight of each finished run in the model's usual run time. */
const RUN_MS_WEIGHT = 0.2
/** Tries at opening the model again when its process ended before it opened (a crash, the OOM killer), a second apart and more. */
const REOPEN_TRIES = 3
const REOPEN_BACKOFF_MS = 1_000
/** How often a busy process's resident memory is read. */
const MEMORY_POLL_MS = 50
/** How long a release waits for the process to release its session and exit before killing it. */
const RELEASE_WAIT_MS = 5_000

/**
 * The model's process failed on the run: over the memory this device gives a model, or it ended
 * (a crash, the kernel's OOM killer). Answered `model_failed`: another device may run the job.
 */
export class ModelProcessError extends Error {
  override name = 'ModelProcessError'
}

interface PendingRun {
  maxOutputBytes: number
  resolve: (outputs: RawTensor[]) => void
  reject: (error: Error) => void
}

/** The process ended before the model opened in it: worth trying again, unlike onnxruntime refusing the model. */
class ProcessEndedError extends Error {
  override name = 'ProcessEndedError'
}

/** An open session in a running process: the process, what onnxruntime said of the model, its runs. */
interface OpenProcess {
  child: ChildProcess
  /** Where the large tensors of its runs go through. */
  scratch: ScratchFile
  inputMetadata: ort.InferenceSession.ValueMetadata[]
  outputMetadata: ort.InferenceSession.ValueMetadata[]
  exited: Promise<void>
  /** Runs sent to this process and not answered. */
  pending: Map<number, PendingRun>
  /** Why the process was stopped, once it was: what its unanswered runs fail with. */
  stopReason?: Error
  /** Reads its resident memory while runs are pending. */
  memoryWatch?: NodeJS.Timeout
  /** Closes it after idleCloseMs without a run. */
  idleTimer?: NodeJS.Timeout
}

export interface ProcessSessionOptions {
  label: string
  /** Resident memory (bytes) the process may hold; watched on Linux (/proc), not elsewhere. */
  memoryLimitBytes: number
  /** A process that ran nothing for this long is closed (the next run opens another); 0: never. */
  idleCloseMs: number
  /** The model's bytes again, verified, for the process opened after a stop. */
  reread: () => Promise<Uint8Array>
  /** Told when the model can no longer be opened (after a stop): every run fails from then on. */
  lost: (reason: Error) => void
  /** Told of each stop, with why (the agent logs it). */
  log: (line: string) => void
  /** The wait before trying the opening again, once more of it before each next try: REOPEN_BACKOFF_MS unless a test shortens it. */
  reopenBackoffMs?: number
}

/** The process's resident memory in bytes (VmRSS), or undefined where /proc does not say. */
async function residentBytes(pid: number): Promise<number | undefined> {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
    return match ? Number(match[1]) * 1024 : undefined
  } catch {
    return undefined
  }
}

/** Bytes in whole MB (MiB), as the memory limit is set. */
const megabytes = (bytes: number) => Math.round(bytes / 2 ** 20)

/**
 * Reads the process's resident memory every MEMORY_POLL_MS (one read at a time) and calls `over`
 * with it each time it is past `limitBytes`; clearInterval on the result stops the watch.
 */
function watchMemory(child: ChildProcess, limitBytes: number, over: (bytes: number) => void): NodeJS.Timeout {
  let reading = false
  return setInterval(() => {
    if (reading || child.pid === undefined) return
    reading = true
    void residentBytes(child.pid).then((bytes) => {
      reading = false
      if (bytes !== undefined && bytes > limitBytes) over(bytes)
    })
  }, MEMORY_POLL_MS)
}

export class ProcessSession implements ModelSession {
  readonly thread = 'child-process'
  /** The running process; undefined from a stop until the next run's opening. */
  #open: OpenProcess | undefined
  #reopening: Promise<OpenProcess> | undefined
  #nextId = 0
  /** The run under way: runs take turns, as they share the scratch file (the process runs one at a time anyway). */
  #turn: Promise<unknown> = Promise.resolve()
  /** Set by release; set also when the model cannot be opened again: runs are refused with it. */
  #refusing: Error | undefined
  /** The model's usual run (ms, a moving average of the runs answered): sets a late run's grace. */
  #usualRunMs: number | undefined
  /** A process being opened (after a stop): a release kills it rather than wait for a slow opening. */
  #openingChild: ChildProcess | undefined

  private constructor(
    first: OpenProcess,
    private readonly sessionOptions: ort.InferenceSession.SessionOptions,
    private readonly options: ProcessSessionOptions,
  ) {
    this.inputMetadata = first.inputMetadata
    this.outputMetadata = first.outputMetadata
    this.#adopt(first)
  }

  readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[]
  readonly outputMetadata: readonly ort.InferenceSession.ValueMetadata[]

  /** Opens the model in a new process; rejects with onnxruntime's reason (or the stop's) when it cannot. */
  static async open(model: Uint8Array, sessionOptions: ort.InferenceSession.SessionOptions, options: ProcessSessionOptions): Promise<ProcessSession> {
    return new ProcessSession(await openProcess(model, sessionOptions, options), sessionOptions, options)
  }

  /** The running process's id; undefined from a stop until the next run. */
  get pid(): number | undefined {
    return this.#open?.child.pid
  }

  run(inputs: readonly RawTensor[], outputNames: readonly string[], limits: RunLimits = {}): Promise<RawTensor[]> {
    const running = this.#turn.then(() => this.#runNow(inputs, outputNames, limits))
    this.#turn = running.catch(() => {})
    return running
  }

  async #runNow(inputs: readonly RawTensor[], outputNames: readonly string[], { deadlineAt, maxOutputBytes = Number.POSITIVE_INFINITY }: RunLimits): Promise<RawTensor[]> {
    if (this.#refusing) throw this.#refusing
    const open = this.#open ?? (await this.#reopened(deadlineAt))
    if (this.#refusing) throw this.#refusing
    const id = this.#nextId++
    const request: SessionHostRequest = {
      kind: 'run',
      id,
      inputs: open.scratch.put(inputs),
      outputNames: [...outputNames],
      ...(Number.isFinite(maxOutputBytes) && { maxOutputBytes }),
    }
    const sentAt = performance.now()
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const settle = () => {
        clearTimeout(timer)
        open.pending.delete(id)
        if (open.pending.size === 0) {
          clearInterval(open.memoryWatch)
          delete open.memoryWatch
          holdAgentOpen(open.child, false)
          this.#closeWhenIdle(open)
        }
      }
      open.pending.set(id, {
        maxOutputBytes,
        resolve: (outputs) => {
          const ms = performance.now() - sentAt
          this.#usualRunMs = this.#usualRunMs === undefined ? ms : this.#usualRunMs * (1 - RUN_MS_WEIGHT) + ms * RUN_MS_WEIGHT
          settle()
          resolve(outputs)
        },
        reject: (error) => (settle(), reject(error)),
      })
      if (deadlineAt !== undefined) {
        const stopIn = Math.max(0, deadlineAt - performance.now()) + this.#graceMs()
        timer = setTimeout(() => this.#stop(open, new DeadlineExceededError(`the run was still going at the job's deadline; its model's process was stopped`)), stopIn)
      }
      clearTimeout(open.idleTimer)
      this.#watchMemory(open)
      holdAgentOpen(open.child, true)
      open.child.send(request)
    })
  }

  /** Keeps a newly opened process: its answers, and what follows when it ends. */
  #adopt(open: OpenProcess): void {
    this.#open = open
    // Idle, the process does not keep the agent's alive (a command that loaded models ends);
    // with runs pending it does (run refs it).
    holdAgentOpen(open.child, false)
    this.#closeWhenIdle(open)
    open.child.on('message', (reply: SessionHostReply) => {
      if (reply.kind !== 'ran' && reply.kind !== 'run-failed') return
      const pending = open.pending.get(reply.id)
      if (!pending) return
      if (reply.kind !== 'ran') return pending.reject(reply.field === undefined ? new Error(reply.message) : new InvalidJobInputError(reply.message, reply.field))
      try {
        pending.resolve(open.scratch.take(reply.outputs, pending.maxOutputBytes))
      } catch (error) {
        if (error instanceof InvalidJobInputError) return pending.reject(error)
        pending.reject(new Error(`${this.options.label}: its outputs could not be read: ${messageOf(error)}`))
      }
    })
    // A send on the channel of a process that just ended fails here (its runs fail on 'exit').
    open.child.on('error', (error) => this.options.log(`${this.options.label}: its process: ${error.message}`))
    void open.exited.then(() => {
      const reason = open.stopReason ?? new ModelProcessError(`the model's process ended unasked (${describeExit(open.child)})`)
      if (this.#open === open) this.#open = undefined
      clearTimeout(open.idleTimer)
      for (const { reject } of [...open.pending.values()]) reject(reason)
      if (!this.#refusing) this.options.log(`${this.options.label}: ${messageOf(reason)}; a new process opens it for the next run`)
    })
  }

  /**
   * Closes the process once it has run nothing for idleCloseMs: a device serving every published
   * model would otherwise hold a process (~100 MB) for each, used or not. The next run opens the
   * model again (~1 s).
   */
  #closeWhenIdle(open: OpenProcess): void {
    const { idleCloseMs } = this.options
    if (idleCloseMs <= 0) return
    clearTimeout(open.idleTimer)
    open.idleTimer = setTimeout(() => {
      if (this.#open !== open || open.pending.size > 0) return
      this.#open = undefined
      open.stopReason = new Error(`the model's process was closed after ${Math.round(idleCloseMs / 1000)} s without a run`)
      void closeProcess(open)
    }, idleCloseMs).unref()
  }

  /** How far past its deadline a run may go (DEADLINE_GRACE_MS). */
  #graceMs(): number {
    return Math.min(DEADLINE_GRACE_MS.max, Math.max(DEADLINE_GRACE_MS.min, 3 * (this.#usualRunMs ?? 0)))
  }

  /**
   * The process opened again after a stop, by the job's deadline: past it the job fails
   * (DeadlineExceededError) while the opening goes on for the next run.
   */
  async #reopened(deadlineAt: number | undefined): Promise<OpenProcess> {
    const reopening = (this.#reopening ??= this.#reopen())
    if (deadlineAt === undefined) return reopening
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DeadlineExceededError(`the model was still opening again (after its process was stopped) at the job's deadline`)), Math.max(0, deadlineAt - performance.now()))
    })
    try {
      return await Promise.race([reopening, late])
    } finally {
      clearTimeout(timer)
    }
  }

  /** Ends the process at once; its unanswered runs fail with `reason`, and the next run opens a new one. */
  #stop(open: OpenProcess, reason: Error): void {
    if (open.child.exitCode !== null || open.child.signalCode !== null) return
    open.stopReason ??= reason
    if (this.#open === open) this.#open = undefined
    open.child.kill('SIGKILL')
  }

  #watchMemory(open: OpenProcess): void {
    if (open.memoryWatch) return
    const limit = this.options.memoryLimitBytes
    open.memoryWatch = watchMemory(open.child, limit, (bytes) => {
      if (open.pending.size === 0) return
      this.#stop(open, new ModelProcessError(`the run took more than ${megabytes(limit)} MB of memory (${megabytes(bytes)} MB), the most this device gives the model; its process was stopped`))
    })
  }

  /**
   * Opens the model again after a stop, trying again after a process that ended before the model
   * opened (the OOM killer under a moment's pressure); a model that cannot be opened (its file
   * changed, onnxruntime refuses it, over the memory limit) is lost (failed) for good.
   */
  async #reopen(): Promise<OpenProcess> {
    try {
      const model = await this.options.reread()
      for (let tried = 1; ; tried++) {
        // Released while the file was read again: no process for the release to wait on while it opens.
        if (this.#refusing) throw this.#refusing
        try {
          const open = await openProcess(model, this.sessionOptions, this.options, (child) => (this.#openingChild = child))
          if (this.#refusing) {
            await closeProcess(open)
            throw this.#refusing
          }
          this.#adopt(open)
          return open
        } catch (error) {
          if (!(error instanceof ProcessEndedError) || tried >= REOPEN_TRIES || this.#refusing) throw error
          // Its message names the model already (openProcess).
          this.options.log(`${error.message}; trying again`)
          await new Promise((resolve) => setTimeout(resolve, (this.options.reopenBackoffMs ?? REOPEN_BACKOFF_MS) * tried))
          // Released meanwhile: no process for the release to wait on while it opens.
          if (this.#refusing) throw this.#refusing
        } finally {
          this.#openingChild = undefined
        }
      }
    } catch (error) {
      if (!this.#refusing) {
        this.#refusing = new Error(`${this.options.label}: could not be opened again after its process was stopped: ${messageOf(error)}`)
        this.options.lost(this.#refusing)
      }
      throw this.#refusing
    } finally {
      this.#reopening = undefined
    }
  }

  /**
   * Releases the session and ends the process. Runs already sent are answered first, later ones
   * are refused; a process that has not ended RELEASE_WAIT_MS later is killed.
   */
  async release(): Promise<void> {
    this.#refusing ??= new Error(`${this.options.label}: its session was released`)
    // An opening under way may be long (onnxruntime folds constants as it opens): not waited for.
    this.#openingChild?.kill('SIGKILL')
    await this.#reopening?.catch(() => {})
    const open = this.#open
    if (!open) return
    open.stopReason ??= this.#refusing
    await closeProcess(open)
  }
}

/** Whether the child process (and its channel) keeps the agent's event loop alive. */
function holdAgentOpen(child: ChildProcess, hold: boolean): void {
  if (hold) {
    child.ref()
    child.channel?.ref()
  } else {
    child.unref()
    child.channel?.unref()
  }
}

function describeExit(child: ChildProcess): string {
  return child.signalCode ? `signal ${child.signalCode}` : `code ${child.exitCode}`
}

/** Asks the process to release its session and exit; kills it if it has not RELEASE_WAIT_MS later. */
async function closeProcess(open: OpenProcess): Promise<void> {
  holdAgentOpen(open.child, true)
  if (open.child.connected) {
    const request: SessionHostRequest = { kind: 'release' }
    open.child.send(request)
  }
  const timer = setTimeout(() => open.child.kill('SIGKILL'), RELEASE_WAIT_MS)
  await open.exited
  clearTimeout(timer)
}

/**
 * Starts a process and opens the model's session in it. The process ignores the terminal's
 * SIGINT (the agent ends it through release, after draining its jobs) and exits when the agent's
 * end of the channel closes. Memory is watched while it opens, too.
 */
function openProcess(
  model: Uint8Array,
  sessionOptions: ort.InferenceSession.SessionOptions,
  options: ProcessSessionOptions,
  started: (child: ChildProcess) => void = () => {},
): Promise<OpenProcess> {
  const { scratch, adopted } = ScratchFile.create()
  // Not the agent's settings (its API key, its device key's path): the model's process needs none.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('DEPINFER_')))
  const child = fork(SESSION_HOST_ENTRY, [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc', scratch.fd], execArgv: [], env })
  adopted()
  started(child)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  void exited.then(() => scratch.close())
  return new Promise((resolve, reject) => {
    let overLimit: Error | undefined
    const memoryWatch = watchMemory(child, options.memoryLimitBytes, () => {
      overLimit ??= new Error(`${options.label}: opening it took more than ${megabytes(options.memoryLimitBytes)} MB of memory, the most this device gives the model`)
      child.kill('SIGKILL')
    })
    const done = () => {
      clearInterval(memoryWatch)
      child.off('message', onMessage)
      child.off('error', notStarted)
      child.off('exit', ended)
    }
    const failed = (error: Error) => {
      done()
      child.kill('SIGKILL')
      reject(overLimit ?? error)
    }
    const notStarted = (error: Error) => failed(new ProcessEndedError(`${options.label}: its process could not be started: ${error.message}`))
    const ended = () => failed(new ProcessEndedError(`${options.label}: its process ended (${describeExit(child)}) before opening the session`))
    const onMessage = (reply: SessionHostReply) => {
      if (reply.kind !== 'opened') return failed(new Error(reply.kind === 'open-failed' ? reply.message : `${options.label}: unexpected ${reply.kind} from its process`))
      done()
      resolve({ child, scratch, inputMetadata: reply.inputMetadata, outputMetadata: reply.outputMetadata, exited, pending: new Map() })
    }
    child.on('message', onMessage)
    child.on('error', notStarted)
    child.on('exit', ended)
    const request: SessionHostRequest = { kind: 'open', model, options: sessionOptions }
    child.send(request)
  })
}
