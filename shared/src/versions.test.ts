import { describe, expect, it } from 'vitest'
import { VersionSchema, compareVersions } from './versions.js'

describe('model versions', () => {
  it('orders numbers as numbers (version 10 is newer than 9), others as strings', () => {
    expect(['10', '9', '2', '1'].sort(compareVersions)).toEqual(['1', '2', '9', '10'])
    expect(['beta', 'alpha'].sort(compareVersions)).toEqual(['alpha', 'beta'])
    expect(compareVersions('3', '3')).toBe(0)
  })

  it('takes one path segment of letters, digits, ".", "_" or "-"', () => {
    expect(VersionSchema.safeParse('2024.1-rc_1').success).toBe(true)
    for (const bad of ['', 'a/b', 'x'.repeat(33), 'v 1']) expect(VersionSchema.safeParse(bad).success).toBe(false)
  })
})
