/**
 * Byte-array helpers with no dependencies, so code bundled for any runtime (the edge's body
 * reader, tested in workerd on its own) can import them without the rest of the package:
 * `@depinfer/shared/bytes`.
 */

/**
 * The parts back to back in one fresh buffer (the part itself when there is only one: callers
 * must not rely on getting a copy).
 */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.byteLength, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.byteLength
  }
  return out
}
