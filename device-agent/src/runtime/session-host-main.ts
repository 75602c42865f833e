/**
 * Inside the worker thread of a WorkerSession or the child process of a ProcessSession: opens the
 * model's session from the bytes and options of the first message, then runs what it is sent,
 * one request at a time, until it is told to release the session.
 */
import { writeFileSync } from 'node:fs'
import { parentPort, Worker } from 'node:worker_threads'
import * as ort from 'onnxruntime-node'
import { messageOf, type RawTensor } from '@depinfer/shared'
import { keepOrtTelemetryOff } from './ort-telemetry.js'
import { InvalidJobInputError, runModel } from './run-job.js'
import { transferableCopy, type SessionHostReply, type SessionHostRequest } from './session-host.js'
import { ScratchFile, type HostTensor } from './session-scratch.js'

/** How often a child process checks that the agent that started it is still there. */
const AGENT_GONE_POLL_MS = 500

/** How the host talks to the agent: a worker's port, or a child process's IPC channel. */
interface Channel {
  /** `transfer`: buffers moved rather than copied, where the channel can (a worker's port). */
  send(message: SessionHostReply, transfer?: ArrayBuffer[]): void
  onMessage(handler: (request: SessionHostRequest) => void): void
  close(): void
  /** A run's inputs with their bytes. */
  inputs(tensors: readonly HostTensor[]): RawTensor[]
  /** A run's outputs as they travel back, and the buffers to move with them. */
  outputs(tensors: readonly RawTensor[]): { tensors: HostTensor[]; transfer: ArrayBuffer[] }
}

/** The tensor itself when its bytes fill their buffer (onnxruntime's outputs do), else a copy that does. */
const ownBuffer = (tensor: RawTensor): RawTensor =>
  tensor.data.byteOffset === 0 && tensor.data.byteLength === tensor.data.buffer.byteLength ? tensor : transferableCopy(tensor)

/** A worker's port: tensors inline, their buffers moved. */
function workerChannel(port: NonNullable<typeof parentPort>): Channel {
  return {
    send: (message, transfer = []) => port.postMessage(message, transfer),
    onMessage: (handler) => port.on('message', handler),
    close: () => port.close(),
    inputs: (tensors) => tensors as RawTensor[],
    outputs: (tensors) => {
      const owned = tensors.map(ownBuffer)
      return { tensors: owned, transfer: owned.map((tensor) => tensor.data.buffer as ArrayBuffer) }
    },
  }
}

/**
 * A child process's channel. The process ignores SIGINT and SIGTERM, which a terminal's Ctrl-C
 * or a service manager send the agent's whole process group: the agent drains its jobs and then
 * ends this process through a release. It exits when the agent's end of the channel closes (the
 * agent ended), and at once after a release, whatever onnxruntime's threads are doing.
 */
function processChannel(): Channel {
  process.on('SIGINT', () => {})
  process.on('SIGTERM', () => {})
  process.on('disconnect', () => process.exit(0))
  // An agent killed outright (SIGKILL, a crash) cannot end this process, and a run under way
  // holds its thread, 'disconnect' included, for as long as the run lasts: a thread of its own
  // ends the process once the agent is gone (the process handed to another parent).
  const watchdog = `const agent = process.ppid; setInterval(() => { if (process.ppid !== agent) process.kill(process.pid, 'SIGKILL') }, ${AGENT_GONE_POLL_MS})`
  new Worker(watchdog, { eval: true }).unref()
  // Under memory pressure the kernel's OOM killer picks this process before the agent (and the
  // agent opens the model again); raising one's own score needs no privilege. Not on other systems.
  try {
    writeFileSync('/proc/self/oom_score_adj', '1000')
  } catch {
    // No /proc (not Linux): the memory limit's watch is off there too.
  }
  // Exiting drops what the channel has not written yet: the last reply (open-failed, released) first.
  let sent = Promise.resolve()
  const scratch = ScratchFile.inherited()
  return {
    inputs: (tensors) => scratch.take(tensors),
    outputs: (tensors) => ({ tensors: scratch.put(tensors), transfer: [] }),
    send: (message) => {
      sent = new Promise((resolve) => process.send!(message, undefined, undefined, () => resolve()))
    },
    onMessage: (handler) => process.on('message', (request) => handler(request as SessionHostRequest)),
    close: () => void sent.then(() => process.exit(0)),
  }
}

const channel = parentPort ? workerChannel(parentPort) : processChannel()

async function open(request: SessionHostRequest): Promise<ort.InferenceSession | undefined> {
  if (request.kind !== 'open') {
    channel.send({ kind: 'open-failed', message: `expected the model first, got ${request.kind}` })
    return undefined
  }
  try {
    const session = await ort.InferenceSession.create(request.model, request.options)
    channel.send({ kind: 'opened', inputMetadata: [...session.inputMetadata], outputMetadata: [...session.outputMetadata] })
    return session
  } catch (error) {
    channel.send({ kind: 'open-failed', message: messageOf(error) })
    return undefined
  }
}

async function serve(session: ort.InferenceSession, request: SessionHostRequest): Promise<void> {
  if (request.kind === 'release') {
    await session.release()
    channel.send({ kind: 'released' })
    channel.close()
    return
  }
  if (request.kind !== 'run') return
  try {
    const outputs = await runModel(session, channel.inputs(request.inputs), request.outputNames)
    // Refused here, before they are copied anywhere: a model whose output size is set by an input
    // would otherwise fill the scratch file (memory no process's RSS shows) and the agent.
    const outputBytes = outputs.reduce((sum, tensor) => sum + tensor.data.byteLength, 0)
    if (request.maxOutputBytes !== undefined && outputBytes > request.maxOutputBytes) {
      throw new InvalidJobInputError(`the outputs are ${outputBytes} bytes, more than the ${request.maxOutputBytes} the run's results may carry: ask for fewer with \`outputs\`, or send a smaller input`, 'outputs')
    }
    const { tensors, transfer } = channel.outputs(outputs)
    channel.send({ kind: 'ran', id: request.id, outputs: tensors }, transfer)
  } catch (error) {
    const field = error instanceof InvalidJobInputError ? error.field : undefined
    channel.send({ kind: 'run-failed', id: request.id, message: messageOf(error), ...(field !== undefined && { field }) })
  }
}

// The environment is copied from the agent, and onnxruntime's is shared by a process's threads;
// set here too so this host never creates the first session without it.
keepOrtTelemetryOff()
// One request at a time, in order: the model first, and a release never overtakes a run sent before it.
let session: Promise<ort.InferenceSession | undefined> | undefined
let queue = Promise.resolve()
channel.onMessage((request) => {
  queue = queue.then(async () => {
    if (!session) {
      session = open(request)
      if (!(await session)) channel.close()
      return
    }
    const opened = await session
    if (opened) await serve(opened, request)
  })
})
