/**
 * Model names are owned whatever their letter case (edge/src/models/registry.ts checkOwner,
 * migration 0010), run on D1 in workerd (Miniflare) with every migration applied.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Miniflare } from 'miniflare'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { unstable_splitSqlQuery } from 'wrangler'
import { checkOwner, LookalikeConflictError, NameOwnedError, publishModel, type Publisher } from '../edge/src/models/registry.js'
import { tinyClassifierModel } from './helpers/onnx-model.js'
import { applyMigrations } from '../scripts/local/edge.js'

const MIGRATIONS = fileURLToPath(new URL('../edge/migrations/', import.meta.url))
const keyOf = (hash: string): Publisher => ({ label: hash, keyHash: hash, payer: null, byOperator: false })

describe('checkOwner: names in other letter case', () => {
  let miniflare: Miniflare
  let db: Awaited<ReturnType<Miniflare['getD1Database']>>

  beforeAll(async () => {
    miniflare = new Miniflare({ modules: true, script: 'export default { fetch: () => new Response(null) }', d1Databases: ['DB'], r2Buckets: ['MODELS'] })
    db = await miniflare.getD1Database('DB')
    await applyMigrations(db, unstable_splitSqlQuery)
    // Two look-alikes of two owners, as a deployment may hold from before the check: inserted
    // with the trigger that now refuses them (0014) dropped, then made again.
    await db.exec('DROP TRIGGER model_owners_no_lookalike')
    await db.batch([own('ppocr-cls', 'key:alice'), own('PPOCR-CLS', 'key:bob'), own('Mine', 'key:carol'), own('Labelled', 'label:ops')])
    for (const statement of unstable_splitSqlQuery(readFileSync(join(MIGRATIONS, '0014_model_owner_lookalike_trigger.sql'), 'utf8'))) await db.prepare(statement).run()
  })
  afterAll(async () => {
    await miniflare?.dispose()
  })

  const own = (name: string, owner: string) => db.prepare('INSERT INTO model_owners (name, owner, claimed_at) VALUES (?, ?, 0)').bind(name, owner)
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

  it("refuses, in the claim's own insert, a look-alike another owner claimed after the check (two claims at once both passed it)", async () => {
    expect(await checkOwner(db as unknown as D1Database, 'Race-Name', keyOf('dave'))).toBeUndefined()
    expect(await checkOwner(db as unknown as D1Database, 'race-name', keyOf('erin'))).toBeUndefined()
    await own('race-name', 'key:erin').run()
    await expect(own('Race-Name', 'key:dave').run()).rejects.toThrow(/model name look-alike owned by another publisher/)
    // Its own look-alike, an owner may still claim; and the check now names the other's.
    await own('RACE-NAME', 'key:erin').run()
    expect((await refusal('Race-Name', keyOf('dave'))).lookalike).toMatch(/^(race-name|RACE-NAME)$/)
  })

  it("answers a conflict, not a failure, when the look-alike is the publisher's own under another identity (an operator label's)", async () => {
    // The check lets an operator key labelled `ops` publish what `label:ops` owns, look-alikes
    // included; the trigger sees only two owners, and refuses the claim.
    const operator: Publisher = { label: 'ops', keyHash: 'ops-key', payer: null, byOperator: true }
    expect(await checkOwner(db as unknown as D1Database, 'labelled', operator)).toBeUndefined()
    const bucket = (await miniflare.getR2Bucket('MODELS')) as unknown as R2Bucket
    const publishing = publishModel(
      db as unknown as D1Database,
      bucket,
      { name: 'labelled', description: '', priceWei: '0', payoutAddress: '0x00000000000000000000000000000000000000aa', publisher: operator, file: { bytes: tinyClassifierModel().bytes }, variants: [] },
      0,
    )
    await expect(publishing).rejects.toBeInstanceOf(LookalikeConflictError)
  })

  it('finds the names through the lower(name) index', async () => {
    const plan = await db.prepare('EXPLAIN QUERY PLAN SELECT name, owner FROM model_owners WHERE lower(name) = lower(?)').bind('x').all<{ detail: string }>()
    expect(plan.results.map((r) => r.detail).join(' ')).toMatch(/USING INDEX model_owners_lower_name/)
  })
})
