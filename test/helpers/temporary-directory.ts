import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll } from 'vitest'

const created: string[] = []

// Registered while the test file that imports this module is collected, so it runs once that
// file's tests are done: a run's model caches, keys and configs go as each file ends, not only
// when test/global-setup.ts removes the run's whole temp dir (or never, outside that setup).
afterAll(() => {
  for (const dir of created.splice(0)) rmSync(dir, { recursive: true, force: true })
})

/** A fresh directory under the OS temp dir, removed after the test file that made it. */
export function temporaryDirectory(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  created.push(dir)
  return dir
}
