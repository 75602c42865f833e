/** Text shown to people that must stay short: messages, reasons, values echoed in errors. */

/** `text` as is when it has at most `maxChars` characters, else its first `maxChars − 1` and "…". */
export function cutToLength(text: string, maxChars: number): string {
  return text.length <= maxChars ? text : `${text.slice(0, maxChars - 1)}…`
}
