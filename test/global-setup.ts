/**
 * Bundles the edge Worker once for every end-to-end suite (as `wrangler deploy` would), builds the
 * CLI as its tarball ships it (test/helpers/packed-cli.ts), and
 * points every test process at a temp dir of its own, removed when the run ends: what tests,
 * Miniflare and onnxruntime leave in the temp dir goes with it (onnxruntime-node 1.30 creates an
 * empty `mat-debug-<pid>.log` there in every process that opens a session, and never removes it).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildEdge } from '../scripts/local/edge.js'
import { pack } from '../scripts/pack.js'
import { PACKED_CLI_DIR } from './helpers/packed-cli.js'

export default async function setup(): Promise<() => void> {
  const dir = mkdtempSync(join(tmpdir(), 'depinfer-test-'))
  process.env.TMPDIR = dir
  await Promise.all([buildEdge(), pack('cli', PACKED_CLI_DIR)])
  return () => rmSync(dir, { recursive: true, force: true })
}
