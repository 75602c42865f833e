/**
 * A second reading of a request body whose 64-bit integer tensor has a JSON number beyond
 * ±2^53, which JSON.parse rounds (existing v2 clients send numpy int64 values as bare numbers).
 * Integer literals beyond 2^53 in arrays become bigints with every digit, from the literal's own
 * text (a reviver's `context.source`: TC39 "JSON.parse source text access", in workerd's V8).
 * Everything else reads as JSON.parse reads it. The reviver runs for every value, so the infer
 * route reads a body this way only after the plain reading met such a number.
 */
const INTEGER_LITERAL = /^-?\d+$/

interface ReviverContext {
  /** The value's JSON text; primitives only (absent in runtimes without source access). */
  source?: string
}

export function parseKeepingLargeIntegers(text: string): unknown {
  return JSON.parse(text, function (this: unknown, _key: string, value: unknown, context?: ReviverContext) {
    // Array elements only (tensor data, shapes): a member of an object (a parameter) stays the
    // number it was, for code that expects numbers there.
    return Array.isArray(this) && typeof value === 'number' && !Number.isSafeInteger(value) && context?.source !== undefined && INTEGER_LITERAL.test(context.source)
      ? BigInt(context.source)
      : value
  })
}
