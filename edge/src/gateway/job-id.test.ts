/** Job ids carry the time they were minted, so an archived job's batch is found from the id. */
import { describe, expect, it } from 'vitest'
import { jobIdTimeMs, newJobId } from './job-id.js'

describe('newJobId', () => {
  it('is 32 bytes of hex whose first 6 give back the time it was minted', () => {
    for (const minted of [0, 1, 1_764_900_000_123, 2 ** 48 - 1]) {
      const id = newJobId(minted)
      expect(id).toMatch(/^0x[0-9a-f]{64}$/)
      expect(jobIdTimeMs(id)).toBe(minted)
    }
    expect(jobIdTimeMs(newJobId())).toBeLessThanOrEqual(Date.now())
  })

  it('keeps 26 random bytes: ids minted in the same millisecond differ', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newJobId(1_764_900_000_123)))
    expect(ids.size).toBe(1000)
    expect(new Set([...ids].map((id) => id.slice(14))).size).toBe(1000)
  })
})
