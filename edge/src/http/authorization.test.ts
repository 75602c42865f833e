/** The Authorization header (middleware/auth.ts bearerKey): the key, or a 401 saying what is wrong. */
import { describe, expect, it } from 'vitest'
import { messageOf } from '@depinfer/shared'
import { bearerKey } from '../middleware/auth.js'

const KEY = 'dpi_Zm9vYmFyYmF6cXV4LXNlY3JldC1rZXk'
const detail = (header: string | undefined): string => {
  try {
    bearerKey(header)
  } catch (error) {
    expect(error).toMatchObject({ status: 401, field: 'Authorization' })
    return messageOf(error)
  }
  throw new Error(`${JSON.stringify(header)} was accepted`)
}

describe('bearerKey', () => {
  it('takes the key of `Bearer <key>`, whatever the scheme case and surrounding space', () => {
    expect(bearerKey(`Bearer ${KEY}`)).toBe(KEY)
    expect(bearerKey(`bearer   ${KEY} `)).toBe(KEY)
  })

  it('says the header is missing only when it is', () => {
    expect(detail(undefined)).toMatch(/^missing/)
    expect(detail('  ')).toMatch(/^missing or empty/)
  })

  it.each([
    ['two words after Bearer', 'Bearer a b', /2 words after Bearer/],
    ['a repeated header (joined by a comma)', `Bearer ${KEY}, Bearer ${KEY}`, /several values/],
    ['Bearer alone', 'Bearer', /without an API key/],
    ['another scheme', 'Basic dXNlcjpwYXNz', /uses the Basic scheme/],
    ['a key without a scheme', KEY, /has no scheme/],
    ['a long first word that may be a key', `${KEY} ${KEY}`, /does not use the Bearer scheme/],
  ])('calls %s malformed, expecting `Bearer <api key>`, without quoting the key', (_what, header, why) => {
    const text = detail(header)
    expect(text).toMatch(/^malformed Authorization header/)
    expect(text).toMatch(why)
    expect(text).toContain('Bearer <api key>')
    expect(text).not.toContain(KEY)
  })
})
