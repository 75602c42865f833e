/** Text shown to people that must stay short: messages, reasons, values echoed in errors. */

/** `text` as is when it has at most `maxChars` characters, else its first `maxChars − 1` and "…". */
export function cutToLength(text: string, maxChars: number): string {
  return text.length <= maxChars ? text : `${text.slice(0, maxChars - 1)}…`
}

/**
 * A JSON value as an error message shows it: its JSON text, cut to `maxChars` like cutToLength,
 * bigints as their digits. Written piece by piece and stopped at the limit, instead of
 * JSON.stringify of the whole value and a cut after: a client's value can be a 30 MB body of
 * one array nested 15 million deep, which JSON.stringify took minutes over (the edge answered
 * nobody meanwhile) or, with a replacer, overflowed the stack on (a 500). Each level of nesting
 * writes a character, so the recursion is at most `maxChars` deep.
 */
export function jsonPreview(value: unknown, maxChars: number): string {
  let text = ''
  const write = (v: unknown): void => {
    if (Array.isArray(v)) {
      text += '['
      for (let i = 0; i < v.length && text.length <= maxChars; i++) {
        if (i > 0) text += ','
        write(v[i])
      }
      text += ']'
    } else if (typeof v === 'object' && v !== null) {
      text += '{'
      let first = true
      for (const [key, member] of Object.entries(v)) {
        if (text.length > maxChars) break
        text += `${first ? '' : ','}${JSON.stringify(key.slice(0, maxChars))}:`
        first = false
        write(member)
      }
      text += '}'
    } else if (typeof v === 'bigint') text += String(v)
    // A string is cut before it is quoted: a long one is written no further than shown.
    else text += (typeof v === 'string' ? JSON.stringify(v.slice(0, maxChars)) : JSON.stringify(v)) ?? String(v)
  }
  write(value)
  return cutToLength(text, maxChars)
}
