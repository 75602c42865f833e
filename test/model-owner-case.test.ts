/**
 * Model names are owned whatever their letter case (edge/src/models/registry.ts checkOwner,
 * migration 0010), run on D1 in workerd (Miniflare) with every migration applied.
 */
import { Miniflare } from 'miniflare'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { unstable_splitSqlQuery } from 'wrangler'
import { checkOwner, NameOwnedError, type Publisher } from '../edge/src/models/registry.js'
import { applyMigrations } from '../scripts/local/edge.js'
const keyOf = (hash: string): Publisher => ({ label: hash, keyHash: hash, payer: null, byOperator: false })

describe('checkOwner: names in other letter case', () => {
  let miniflare: Miniflare
  let db: Awaited<ReturnType<Miniflare['getD1Database']>>

  beforeAll(async () => {
    miniflare = new Miniflare({ modules: true, script: 'export default { fetch: () => new Response(null) }', d1Databases: ['DB'] })
    db = await miniflare.getD1Database('DB')
    await applyMigrations(db, unstable_splitSqlQuery)
    const own = (name: string, owner: string) => db.prepare('INSERT INTO model_owners (name, owner, claimed_at) VALUES (?, ?, 0)').bind(name, owner)
    // Two look-alikes of two owners, as a deployment may hold from before the check.
    await db.batch([own('ppocr-cls', 'key:alice'), own('PPOCR-CLS', 'key:bob'), own('Mine', 'key:carol')])
  })
  afterAll(async () => {
    await miniflare?.dispose()
  })

  const refusal = async (name: string, publisher: Publisher) => {
    const error = await checkOwner(db as unknown as D1Database, name, publisher).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(NameOwnedError)
    return error as NameOwnedError
  }

  it("refuses a new name that only differs in case from another owner's", async () => {
    expect(await refusal('Ppocr-Cls', keyOf('mallory'))).toMatchObject({ lookalike: expect.stringMatching(/^(ppocr-cls|PPOCR-CLS)$/) })
    expect((await refusal('mine', keyOf('mallory'))).message).toMatch(/mine differs only in letter case from Mine, which belongs to key:carol/)
  })

  it('lets the owner of a name publish it, and a look-alike of their own', async () => {
    expect(await checkOwner(db as unknown as D1Database, 'Mine', keyOf('carol'))).toBe('key:carol')
    expect(await checkOwner(db as unknown as D1Database, 'MINE', keyOf('carol'))).toBeUndefined()
  })

  it('keeps look-alikes that predate the check with their owners: each still publishes its own', async () => {
    expect(await checkOwner(db as unknown as D1Database, 'ppocr-cls', keyOf('alice'))).toBe('key:alice')
    expect(await checkOwner(db as unknown as D1Database, 'PPOCR-CLS', keyOf('bob'))).toBe('key:bob')
    // …and neither the other's.
    expect((await refusal('PPOCR-CLS', keyOf('alice'))).lookalike).toBeUndefined()
  })

  it('finds the names through the lower(name) index', async () => {
    const plan = await db.prepare('EXPLAIN QUERY PLAN SELECT name, owner FROM model_owners WHERE lower(name) = lower(?)').bind('x').all<{ detail: string }>()
    expect(plan.results.map((r) => r.detail).join(' ')).toMatch(/USING INDEX model_owners_lower_name/)
  })
})
