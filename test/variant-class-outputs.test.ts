/**
 * The outputs a variant's agreement was judged on (report.classOutputs, migration 0015) in the
 * registry (edge/src/models/registry.ts), run on D1 in workerd (Miniflare) with every migration applied.
 */
import { Miniflare } from 'miniflare'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { unstable_splitSqlQuery } from 'wrangler'
import type { VariantReport } from '../shared/src/index.js'
import { publishModel, uploadModelFile, type Publisher } from '../edge/src/models/registry.js'
import { quantizeModel } from '../device-agent/src/quantize/quantize.js'
import { classifierWithEmbeddingModel } from './helpers/onnx-model.js'
import { applyMigrations } from '../scripts/local/edge.js'

const publisher: Publisher = { label: 'alice', keyHash: 'alice', payer: null, byOperator: false }

describe('a variant report\'s class outputs', () => {
  let miniflare: Miniflare
  let db: D1Database
  let bucket: R2Bucket
  const fp32 = classifierWithEmbeddingModel()
  let int8Sha256: string

  beforeAll(async () => {
    miniflare = new Miniflare({ modules: true, script: 'export default { fetch: () => new Response(null) }', d1Databases: ['DB'], r2Buckets: ['MODELS'] })
    const d1 = await miniflare.getD1Database('DB')
    await applyMigrations(d1, unstable_splitSqlQuery)
    db = d1 as unknown as D1Database
    bucket = (await miniflare.getR2Bucket('MODELS')) as unknown as R2Bucket
    const { bytes } = await quantizeModel(fp32)
    int8Sha256 = (await uploadModelFile(db, bucket, { bytes, uploadedBy: 'alice' }, 0)).file.sha256
  })
  afterAll(async () => {
    await miniflare?.dispose()
  })

  const publish = (name: string, classOutputs?: string[]) => {
    const report: VariantReport = { top1Agreement: 1, ...(classOutputs && { classOutputs }), maxAbsError: 0.01, samples: 200 }
    return publishModel(
      db,
      bucket,
      {
        name,
        description: '',
        priceWei: '0',
        payoutAddress: '0x00000000000000000000000000000000000000aa',
        publisher,
        file: { bytes: fp32 },
        variants: [{ kind: 'int8', sha256: int8Sha256, report, minAgreement: 0.99 }],
      },
      0,
    )
  }

  it('republished with the same outputs named in another order, is the same version', async () => {
    const first = await publish('judged', ['probs', 'embedding'])
    expect(first).toMatchObject({ created: true, model: { version: '1' } })
    // The agreement is the lowest over the set of outputs: their order says nothing.
    const again = await publish('judged', ['embedding', 'probs'])
    expect(again).toMatchObject({ created: false, model: { version: '1' } })
    expect(again.model.variants[0]!.report.classOutputs).toEqual(['probs', 'embedding'])
    expect(await publish('judged', ['probs'])).toMatchObject({ created: true, model: { version: '2' } })
  })

  it('reads a row without them (published before they were recorded) as a report without classOutputs, and republishes it as the same version', async () => {
    expect(await publish('unsaid')).toMatchObject({ created: true, model: { version: '1' } })
    const row = await db.prepare("SELECT class_outputs_json FROM model_variants WHERE name = 'unsaid'").first<{ class_outputs_json: string | null }>()
    expect(row).toEqual({ class_outputs_json: null })
    const again = await publish('unsaid')
    expect(again).toMatchObject({ created: false, model: { version: '1' } })
    expect(again.model.variants[0]!.report).not.toHaveProperty('classOutputs')
  })
})
