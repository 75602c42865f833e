/** API key labels: shown in listings and logs, so nothing in them may hide or disguise text. */
import { describe, expect, it } from 'vitest'
import { labelProblem, MAX_LABEL_LENGTH } from './label.js'

describe('labelProblem', () => {
  it('takes names in any script, up to the limit in characters (not UTF-16 units)', () => {
    for (const label of ['alice', 'team-ml (staging)', 'Ünïcödé 設備 ✓', '🚀'.repeat(MAX_LABEL_LENGTH)]) expect(labelProblem(label), label).toBeUndefined()
  })

  it.each([
    ['empty', '', /1-100 characters, got 0/],
    ['too long', 'x'.repeat(MAX_LABEL_LENGTH + 1), /got 101/],
    ['a newline', 'a\nb', /control characters/],
    ['a right-to-left override', 'invoice\u202Efdp.exe', /invisible formatting characters/],
    ['a zero-width space', 'ad\u200Bmin', /invisible formatting characters/],
    ['a byte order mark', '\uFEFFalice', /invisible formatting characters/],
  ])('refuses %s', (_what, label, problem) => {
    expect(labelProblem(label)).toMatch(problem)
  })
})
