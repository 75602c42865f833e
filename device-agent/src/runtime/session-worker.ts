/**
 * Inside the worker thread of a WorkerSession (worker-session.ts): opens the model's session from
 * the bytes and options it was started with, then runs what it is sent, one request at a time,
 * until it is told to release the session.
 */
import { parentPort, workerData } from 'node:worker_threads'
import * as ort from 'onnxruntime-node'
import { messageOf, type RawTensor } from '@depinfer/shared'
import { keepOrtTelemetryOff } from './ort-telemetry.js'
import { InvalidJobInputError, runModel } from './run-job.js'
import { transferableCopy, type WorkerReply, type WorkerRequest, type WorkerStart } from './worker-session.js'

const port = parentPort!
const reply = (message: WorkerReply, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer)

/** The tensor itself when its bytes fill their buffer (onnxruntime's outputs do), else a copy that does. */
const ownBuffer = (tensor: RawTensor): RawTensor =>
  tensor.data.byteOffset === 0 && tensor.data.byteLength === tensor.data.buffer.byteLength ? tensor : transferableCopy(tensor)

async function serve(session: ort.InferenceSession, request: WorkerRequest): Promise<void> {
  if (request.kind === 'release') {
    await session.release()
    reply({ kind: 'released' })
    port.close()
    return
  }
  try {
    const outputs = (await runModel(session, request.inputs, request.outputNames)).map(ownBuffer)
    reply({ kind: 'ran', id: request.id, outputs }, outputs.map((tensor) => tensor.data.buffer as ArrayBuffer))
  } catch (error) {
    const field = error instanceof InvalidJobInputError ? error.field : undefined
    reply({ kind: 'run-failed', id: request.id, message: messageOf(error), ...(field !== undefined && { field }) })
  }
}

// The environment is copied from the agent's thread, and onnxruntime's is shared by the process;
// set here too so this thread never creates the first session without it.
keepOrtTelemetryOff()
const { model, options } = workerData as WorkerStart
let session: ort.InferenceSession | undefined
try {
  session = await ort.InferenceSession.create(model, options)
} catch (error) {
  reply({ kind: 'open-failed', message: messageOf(error) })
  port.close()
}
if (session) {
  const opened = session
  reply({ kind: 'opened', inputMetadata: [...opened.inputMetadata], outputMetadata: [...opened.outputMetadata] })
  // One request at a time, in order: a release never overtakes a run sent before it.
  let queue = Promise.resolve()
  port.on('message', (request: WorkerRequest) => {
    queue = queue.then(() => serve(opened, request))
  })
}
