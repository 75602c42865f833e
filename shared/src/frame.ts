/**
 * Binary frames: how jobs and results travel over MQTT. A JSON header carries the message's
 * fields and the tensors' name/datatype/shape; the tensors' raw bytes follow, so large inputs
 * (images) never travel as JSON number arrays and 64-bit or FP16 values arrive exactly.
 *
 * Layout (all integers little-endian):
 *   0  4 bytes  magic "DPF1"
 *   4  u32      header length H in bytes
 *   8  H bytes  header, UTF-8 JSON: the message fields plus `tensors: [{name, datatype, shape}]`
 *      then, for each tensor in order, its bytes, each starting at an 8-byte aligned offset
 *      (so receivers can view FP64/INT64 data without copying).
 *
 * One MQTT message carries one or more frames back to back (each padded to a multiple of 8
 * bytes, so every frame starts aligned too): a device answers a batch's jobs in one message,
 * which saves the broker, the edge and the device a publish, a PUBACK and a parse per job.
 */
import { isDatatype } from './datatypes.js'
import { FrameError } from './errors.js'
import { concatBytes } from './bytes.js'
import { byteLength, type RawTensor } from './tensor.js'

/**
 * The largest message (MQTT payload) of the protocol. Brokers refuse larger ones: the embedded
 * broker does, Mosquitto needs `max_packet_size`, EMQX `mqtt.max_packet_size` (README
 * "Production"). A Durable Object has 128 MB of memory, and anyone with a device login could
 * otherwise send the Gateway a message of any size.
 */
export const MAX_MESSAGE_BYTES = 40 * 1024 * 1024
/**
 * Tensor bytes one job's inputs, or one result's outputs, may add up to: 31 MiB. Both cross a
 * Durable Object call (the Worker's request to the Gateway, the Gateway's answer back), and
 * workerd refuses a call whose arguments or result exceed 32 MiB; 1 MiB is left for the rest of
 * the answer (outputs above 31 MiB were answered 500 before this limit).
 */
export const MAX_TENSOR_BYTES = 31 * 1024 * 1024
/**
 * Frames one message may carry (a device joins a batch's answers): each costs the receiver a
 * JSON parse and a schema check, and a 40 MiB message of tiny frames would hold ~1.7 million.
 */
export const MAX_FRAMES_PER_MESSAGE = 256

const MAGIC = [0x44, 0x50, 0x46, 0x31] // "DPF1"
const PREFIX_BYTES = 8
const ALIGN = 8

const align = (offset: number) => Math.ceil(offset / ALIGN) * ALIGN
const encoder = new TextEncoder()
const decoder = new TextDecoder()

export interface TensorDescriptor {
  name: string
  datatype: string
  shape: number[]
}

/**
 * Encodes a message header and its tensors into one frame.
 *
 * @example
 * const frame = encodeFrame({ jobId: 'j1' }, [{ name: 'x', datatype: 'FP32', shape: [1], data }])
 * decodeFrame(frame).header.jobId // 'j1'
 */
export function encodeFrame(header: object, tensors: readonly RawTensor[]): Uint8Array {
  const descriptors: TensorDescriptor[] = tensors.map(({ name, datatype, shape, data }, i) => {
    // The receiver sizes each tensor from its shape; a mismatch would shift every later tensor.
    if (data.byteLength !== byteLength(datatype, shape)) {
      throw new FrameError(`tensor ${name} has ${data.byteLength} bytes but ${datatype} [${shape.join(',')}] needs ${byteLength(datatype, shape)}`, `tensors[${i}].data`)
    }
    return { name, datatype, shape }
  })
  const headerBytes = encoder.encode(JSON.stringify({ ...header, tensors: descriptors }))
  let size = align(PREFIX_BYTES + headerBytes.byteLength)
  const offsets = tensors.map((tensor) => {
    const offset = size
    size = align(offset + tensor.data.byteLength)
    return offset
  })
  const frame = new Uint8Array(size)
  frame.set(MAGIC, 0)
  new DataView(frame.buffer).setUint32(4, headerBytes.byteLength, true)
  frame.set(headerBytes, PREFIX_BYTES)
  tensors.forEach((tensor, i) => frame.set(tensor.data, offsets[i]!))
  return frame
}

/** One message of several frames: `frames` each from encodeFrame, back to back. */
export function joinFrames(frames: readonly Uint8Array[]): Uint8Array {
  return concatBytes(frames)
}

export interface DecodedFrame {
  /** Unvalidated JSON: validate it with the message's schema. */
  header: Record<string, unknown>
  /** Views into the message. */
  tensors: RawTensor[]
}

/**
 * Decodes the first frame of a message into its header and tensors. Throws FrameError on
 * anything malformed. (A message's other frames: decodeFrames.)
 */
export function decodeFrame(message: Uint8Array): DecodedFrame {
  return decodeFrameAt(message, 0).frame
}

/**
 * Every frame of a message, in order, decoded as it is reached: a malformed frame throws
 * FrameError when reached, after the frames before it were yielded (past it, nothing can be
 * found: a frame's end is known only from its own header). So does a frame past
 * MAX_FRAMES_PER_MESSAGE.
 */
export function* decodeFrames(message: Uint8Array): Generator<DecodedFrame> {
  for (let start = 0, count = 0; start < message.byteLength; count++) {
    if (count === MAX_FRAMES_PER_MESSAGE) throw new FrameError(`more than ${MAX_FRAMES_PER_MESSAGE} frames in one message`, 'frame')
    const { frame, end } = decodeFrameAt(message, start)
    yield frame
    start = end
  }
}

function decodeFrameAt(message: Uint8Array, start: number): { frame: DecodedFrame; end: number } {
  const frame = message.subarray(start)
  if (frame.byteLength < PREFIX_BYTES || MAGIC.some((byte, i) => frame[i] !== byte)) {
    throw new FrameError('not a depinfer frame (bad magic)', 'frame')
  }
  const headerLength = new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(4, true)
  if (PREFIX_BYTES + headerLength > frame.byteLength) {
    throw new FrameError('header length exceeds the frame', 'frame')
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(decoder.decode(frame.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLength)))
  } catch {
    throw new FrameError('header is not JSON', 'header')
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new FrameError('header is not a JSON object', 'header')
  }
  const header = parsed as Record<string, unknown>
  const descriptors = header.tensors
  if (!Array.isArray(descriptors)) throw new FrameError('header has no tensors list', 'tensors')
  let offset = align(PREFIX_BYTES + headerLength)
  const tensors = descriptors.map((descriptor: unknown, i): RawTensor => {
    const field = `tensors[${i}]`
    const { name, datatype, shape } = (descriptor ?? {}) as Partial<TensorDescriptor>
    if (typeof name !== 'string') throw new FrameError('tensor name missing', `${field}.name`)
    if (typeof datatype !== 'string' || !isDatatype(datatype)) {
      throw new FrameError(`unknown datatype ${JSON.stringify(datatype)}`, `${field}.datatype`)
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new FrameError('shape must be a list of non-negative integers', `${field}.shape`)
    }
    const length = byteLength(datatype, shape)
    if (offset + length > frame.byteLength) throw new FrameError('tensor bytes exceed the frame', field)
    const data = frame.subarray(offset, offset + length)
    offset = align(offset + length)
    return { name, datatype, shape, data }
  })
  delete header.tensors
  // A sender that did not pad its last frame ends short of the alignment: that is the end.
  return { frame: { header, tensors }, end: start + Math.min(offset, frame.byteLength) }
}
