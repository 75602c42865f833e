/**
 * Errors raised by the protocol package. Each names the offending field as a path into the
 * message it came from (for example `inputs[0].shape`), so HTTP and MQTT layers can report it.
 */
export class ProtocolError extends Error {
  override name = 'ProtocolError'
  constructor(
    message: string,
    /** Path of the offending field, e.g. `inputs[0].data[12]`. */
    readonly field: string,
  ) {
    super(message)
  }
}

/** A tensor whose datatype, shape or data is not acceptable. */
export class TensorError extends ProtocolError {
  override name = 'TensorError'
}

/**
 * A 64-bit integer element given as a JSON number beyond ±2^53: JSON.parse has already rounded
 * it, so the value sent is lost. A reader that keeps number literals' digits can read the body
 * again (the edge's infer route does).
 */
export class InexactIntegerError extends TensorError {
  override name = 'InexactIntegerError'
}

/** A binary frame or message that does not decode. */
export class FrameError extends ProtocolError {
  override name = 'FrameError'
}

/**
 * What to log or report of something caught: its message when it is an Error, else its string
 * form (onnxruntime, workerd and some libraries throw strings or plain objects, whose `.message`
 * would read as "undefined").
 */
export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message
  if (typeof error === 'object' && error !== null) {
    // A plain object: its own message if it has one, else its JSON ("[object Object]" says nothing).
    const { message } = error as { message?: unknown }
    if (typeof message === 'string') return message
    try {
      return JSON.stringify(error) ?? String(error)
    } catch {
      return String(error)
    }
  }
  return String(error)
}

/** What to log of something caught where the cause must be found: an Error's stack (its message when it has none), else messageOf. */
export function stackOf(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : messageOf(error)
}
