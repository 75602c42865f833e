import { describe, expect, it } from 'vitest'
import { publishedVersions } from './published-versions.js'

/**
 * A stand-in for D1 that answers the published-versions query until told to fail: the fault
 * (D1 unreachable mid-traffic) cannot be produced with Miniflare's D1, which never goes away.
 */
function fakeDb() {
  const state = { down: false, queries: 0 }
  const row = { version: '1', sha256: 'ab'.repeat(32), price_wei: '5', payout_address: `0x${'11'.repeat(20)}`, kind: null, variant_sha256: null, top1_agreement: null, min_agreement: null }
  const db = {
    prepare: () => ({
      bind: () => ({
        all: async () => {
          state.queries++
          if (state.down) throw new Error('D1_ERROR: network connection lost')
          return { results: [row] }
        },
      }),
    }),
  } as unknown as D1Database
  return { db, state }
}

describe('publishedVersions', () => {
  it('answers with the last versions read while D1 cannot be read, so a published name stays published', async () => {
    const { db, state } = fakeDb()
    const t0 = 1_000_000
    expect((await publishedVersions(db, 'fallback-model', t0)).map((v) => v.version)).toEqual(['1'])
    state.down = true
    // Past the 2 s cache: D1 is asked again, fails, and the last read stands in.
    const during = await publishedVersions(db, 'fallback-model', t0 + 10_000)
    expect(during).toMatchObject([{ version: '1', sha256: 'ab'.repeat(32), priceWei: 5n }])
    expect(state.queries).toBe(2)
  })

  it('fails for a name never read while D1 cannot be read', async () => {
    const { db, state } = fakeDb()
    state.down = true
    await expect(publishedVersions(db, 'never-read-model', 2_000_000)).rejects.toThrow(/D1_ERROR/)
  })
})
