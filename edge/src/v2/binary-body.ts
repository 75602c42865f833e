/**
 * Splits a request body of the binary tensor data extension: `Inference-Header-Content-Length`
 * gives the length of the leading JSON header; the tensor bytes follow it.
 */
import { InvalidRequestError } from '../errors/request.js'

export const HEADER_LENGTH_HEADER = 'Inference-Header-Content-Length'

export function splitBinaryBody(body: Uint8Array, headerLength: string): { json: Uint8Array; binary: Uint8Array } {
  const length = Number(headerLength)
  if (!/^\d+$/.test(headerLength.trim()) || length > body.byteLength) {
    throw new InvalidRequestError(
      `${HEADER_LENGTH_HEADER} must be a byte count no larger than the body (${body.byteLength}), got ${JSON.stringify(headerLength)}`,
      HEADER_LENGTH_HEADER,
    )
  }
  return { json: body.subarray(0, length), binary: body.subarray(length) }
}
