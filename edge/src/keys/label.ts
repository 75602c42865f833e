/** What an API key's label may be: the edge's POST /api/keys and `npm run key:create` check alike. */

export const MAX_LABEL_LENGTH = 100

/** Why `label` (trimmed) cannot be a key's label, or undefined when it can. */
export function labelProblem(label: string): string | undefined {
  const length = [...label].length
  if (length === 0 || length > MAX_LABEL_LENGTH) return `label must be 1-${MAX_LABEL_LENGTH} characters, got ${length}`
  if (/\p{Cc}/u.test(label)) return 'label must not contain control characters'
  // Invisible format characters (bidi overrides, zero-width spaces) would let a label read as
  // another in listings and logs: "admin" and "ad\u200bmin" look alike.
  if (/\p{Cf}/u.test(label)) return 'label must not contain invisible formatting characters (bidi controls, zero-width spaces)'
  return undefined
}
