/**
 * Frames sent to the same topic in one turn of the event loop leave as one MQTT message (frames
 * back to back, shared/frame.ts). The jobs of one onnxruntime batch are answered in the same
 * turn (their attestations are signed together, keys/attestation-signer.ts), so a batch of n
 * costs the broker, the edge and this agent one publish, one PUBACK and one packet parse
 * instead of n.
 *
 * The flush runs on process.nextTick, i.e. once the promise continuations answering the batch
 * have all run, and before the next macrotask: a later flush (setImmediate) would queue behind
 * the next batch's onnxruntime run, which blocks this thread for the run's length.
 */
import { joinFrames, MAX_FRAMES_PER_MESSAGE } from '@depinfer/shared'

/**
 * A message stops growing at this size (a frame larger than it goes alone): brokers may cap
 * message sizes (EMQX's `mqtt.max_packet_size` is 1 MiB by default), and a device sending large
 * outputs gains nothing from joining them. And at MAX_FRAMES_PER_MESSAGE frames.
 */
const MAX_JOINED_MESSAGE_BYTES = 256 * 1024

export class FrameOutbox {
  readonly #pending = new Map<string, Uint8Array[]>()
  #flushScheduled = false

  constructor(private readonly publish: (topic: string, message: Buffer) => void) {}

  send(topic: string, frame: Uint8Array): void {
    const frames = this.#pending.get(topic)
    if (frames) frames.push(frame)
    else this.#pending.set(topic, [frame])
    if (!this.#flushScheduled) {
      this.#flushScheduled = true
      process.nextTick(() => this.flush())
    }
  }

  /** Publishes everything sent so far (also called before a stop says offline). */
  flush(): void {
    this.#flushScheduled = false
    for (const [topic, frames] of this.#pending) {
      for (const message of groupFrames(frames, MAX_JOINED_MESSAGE_BYTES, MAX_FRAMES_PER_MESSAGE)) {
        const joined = joinFrames(message)
        this.publish(topic, Buffer.from(joined.buffer, joined.byteOffset, joined.byteLength))
      }
    }
    this.#pending.clear()
  }
}

/** Consecutive frames grouped into messages of at most `maxBytes` (a larger frame alone) and `maxFrames`. */
export function groupFrames(frames: readonly Uint8Array[], maxBytes: number, maxFrames: number): Uint8Array[][] {
  const messages: Uint8Array[][] = []
  let current: Uint8Array[] = []
  let bytes = 0
  for (const frame of frames) {
    if (current.length > 0 && (bytes + frame.byteLength > maxBytes || current.length === maxFrames)) {
      messages.push(current)
      current = []
      bytes = 0
    }
    current.push(frame)
    bytes += frame.byteLength
  }
  if (current.length > 0) messages.push(current)
  return messages
}
