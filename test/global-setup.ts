/**
 * Bundles the edge Worker once for every end-to-end suite (as `wrangler deploy` would), and
 * points every test process at a temp dir of its own, removed when the run ends: what tests,
 * Miniflare and onnxruntime leave in the temp dir goes with it (onnxruntime-node 1.30 creates an
 * empty `mat-debug-<pid>.log` there in every process that opens a session, and never removes it).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildEdge } from '../scripts/local/edge.js'

export default async function setup(): Promise<() => void> {
  const dir = mkdtempSync(join(tmpdir(), 'depinfer-test-'))
  process.env.TMPDIR = dir
  await buildEdge()
  return () => rmSync(dir, { recursive: true, force: true })
}
