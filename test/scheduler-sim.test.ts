/**
 * The scheduler simulation's own checks (bench/sim/self-check.ts: event ordering, seeded
 * determinism, arrival rate, that it runs the edge's real DeviceTable and pickDevice, oracle vs
 * random), run as part of the tests so the benchmark cannot silently drift from the edge's code.
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { REPO_ROOT } from '../scripts/local/paths.js'

it('the scheduler simulation passes its self-checks', () => {
  const run = spawnSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'bench', 'sim', 'self-check.ts')], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 120_000 })
  expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0)
}, 150_000)
