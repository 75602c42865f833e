/**
 * The messages between the agent and a model's session hosted out of the agent's thread, in a
 * worker thread (worker-session.ts) or a child process (process-session.ts): session-host-main.ts
 * is the other end in both.
 */
import type { RawTensor } from '@depinfer/shared'
import type * as ort from 'onnxruntime-node'
import type { HostTensor } from './session-scratch.js'

export type SessionHostRequest =
  /** The first message: the model's bytes (the host's own copy) and the session options. */
  | { kind: 'open'; model: Uint8Array; options: ort.InferenceSession.SessionOptions }
  | { kind: 'run'; id: number; inputs: HostTensor[]; outputNames: string[]; maxOutputBytes?: number }
  | { kind: 'release' }

export type SessionHostReply =
  | { kind: 'opened'; inputMetadata: ort.InferenceSession.ValueMetadata[]; outputMetadata: ort.InferenceSession.ValueMetadata[] }
  | { kind: 'open-failed'; message: string }
  | { kind: 'ran'; id: number; outputs: HostTensor[] }
  /** `field` is set when onnxruntime refused the inputs (InvalidJobInputError), not for other failures. */
  | { kind: 'run-failed'; id: number; message: string; field?: string }
  | { kind: 'released' }

/**
 * The host's entry: a JavaScript file that registers tsx's loader (neither a worker thread nor a
 * child process inherits the module hooks of the thread that starts it) and then imports
 * session-host-main.ts. In the packed agent (scripts/pack.ts) it is session-host-main.ts bundled.
 */
export const SESSION_HOST_ENTRY = new URL('./session-host-entry.mjs', import.meta.url)

/** A copy of the tensor whose bytes fill a buffer of their own, ready to be transferred. */
export function transferableCopy(tensor: RawTensor): RawTensor {
  return { name: tensor.name, datatype: tensor.datatype, shape: [...tensor.shape], data: new Uint8Array(tensor.data) }
}
