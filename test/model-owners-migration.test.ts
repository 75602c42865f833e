/**
 * edge/migrations/0006_model_owners.sql on names published before owners were recorded (only the
 * publishing key's label, models.published_by): run on D1 in workerd (Miniflare), split by
 * wrangler as a deploy does, over rows as the earlier migrations left them.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Miniflare } from 'miniflare'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { unstable_splitSqlQuery } from 'wrangler'
import { REPO_ROOT } from '../scripts/local/paths.js'

const MIGRATIONS_DIR = join(REPO_ROOT, 'edge', 'migrations')
const OWNERS_MIGRATION = '0006_model_owners.sql'

describe('0006_model_owners: names published before it', () => {
  let miniflare: Miniflare
  let db: Awaited<ReturnType<Miniflare['getD1Database']>>
  const apply = async (file: string) => {
    const statements = unstable_splitSqlQuery(readFileSync(join(MIGRATIONS_DIR, file), 'utf8'))
    await db.batch(statements.map((sql) => db.prepare(sql)))
  }

  beforeAll(async () => {
    miniflare = new Miniflare({ modules: true, script: 'export default { fetch: () => new Response(null) }', d1Databases: ['DB'] })
    db = await miniflare.getD1Database('DB')
    for (const file of readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith('.sql') && f < OWNERS_MIGRATION).sort()) await apply(file)
    const key = (hash: string, label: string, payer: string | null) =>
      db.prepare('INSERT INTO api_keys (key_hash, label, created_at, payer_address) VALUES (?, ?, 0, ?)').bind(hash, label, payer)
    const version = (name: string, number: number, by: string) =>
      db
        .prepare(
          `INSERT INTO models (name, version, version_number, sha256, size, price_wei, payout_address, inputs_json, outputs_json, published_by, published_at)
            VALUES (?, ?, ?, ?, 1, '0', '0x00000000000000000000000000000000000000aa', '[]', '[]', ?, ?)`,
        )
        .bind(name, String(number), number, 'a'.repeat(64), by, number * 1000)
    await db.batch([
      key('hash-alice', 'alice', null),
      // Two keys of one account, the payer written in mixed case.
      key('hash-bob-1', 'bob', '0xABCDEF0123456789abcdef0123456789ABCDEF01'),
      key('hash-bob-2', 'bob', '0xabcdef0123456789abcdef0123456789abcdef01'),
      // One label, two identities: the label cannot say which one published.
      key('hash-shared-1', 'shared', null),
      key('hash-shared-2', 'shared', null),
      // A malformed payer is no payer (as auth.ts reads it): the key itself.
      key('hash-odd', 'odd', '0x12'),
      version('alices-model', 1, 'alice'),
      version('alices-model', 2, 'alice'),
      version('bobs-model', 1, 'bob'),
      version('shared-model', 1, 'shared'),
      version('orphan-model', 1, 'deleted-key'),
      version('odd-model', 1, 'odd'),
    ])
    await apply(OWNERS_MIGRATION)
  })
  afterAll(async () => {
    await miniflare?.dispose()
  })

  it('gives each name to the identity of its first publisher, or keeps the label when it names none or several', async () => {
    const { results } = await db.prepare('SELECT name, owner, claimed_at FROM model_owners ORDER BY name').all()
    expect(results).toEqual([
      { name: 'alices-model', owner: 'key:hash-alice', claimed_at: 1000 },
      { name: 'bobs-model', owner: 'account:0xabcdef0123456789abcdef0123456789abcdef01', claimed_at: 1000 },
      { name: 'odd-model', owner: 'key:hash-odd', claimed_at: 1000 },
      { name: 'orphan-model', owner: 'label:deleted-key', claimed_at: 1000 },
      { name: 'shared-model', owner: 'label:shared', claimed_at: 1000 },
    ])
  })
})
