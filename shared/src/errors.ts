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

/** A binary frame or message that does not decode. */
export class FrameError extends ProtocolError {
  override name = 'FrameError'
}
