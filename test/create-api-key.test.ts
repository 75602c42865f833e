/**
 * `npm run key:create` writes to a reader that may stop early (`| head -1` takes the key's line):
 * a closed pipe ends it quietly, not with EPIPE's stack trace.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { REPO_ROOT } from '../scripts/local/paths.js'

describe('key:create', () => {
  it('ends quietly when its output pipe is closed', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'scripts/create-api-key.ts'), 'ci', '--wrangler'], {
      cwd: REPO_ROOT,
      env: { ...process.env, DEPINFER_URL: '', DEPINFER_API_KEY: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    // Closed before the script has started (tsx takes a few hundred ms): its first line meets EPIPE.
    child.stdout.destroy()
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk))
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    expect(stderr).not.toMatch(/EPIPE|at /)
    expect(code).toBe(0)
  }, 30_000)
})
