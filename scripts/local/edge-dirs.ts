/**
 * The local edge's own directories, each named after the process that made it
 * (`depinfer-edge-<pid>-<random>`), so a later start removes those whose process is gone: one
 * killed before its `close()` (a SIGKILL, or a Ctrl-C that ends the process before the cleanup
 * runs) would otherwise stay until reboot.
 */
import { accessSync, constants, mkdtempSync, readdirSync, rmSync, statfsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { processAlive } from '../../device-agent/src/process-alive.js'

/** Where Linux keeps a RAM file system every process may write to. */
const RAM_DIR = '/dev/shm'
/** Less free than this (Docker gives /dev/shm 64 MiB) and the storage stays on disk. */
const RAM_DIR_MIN_FREE_BYTES = 1024 ** 3
/** Followed by the pid of the process that made the directory, then a random suffix. */
const PREFIX = 'depinfer-edge-'

/**
 * A fresh directory in the OS temp dir, for what Miniflare keeps there (R2's files, caches).
 * The caller removes it.
 */
export function edgeTempDir(): string {
  removeOrphanedDirs(tmpdir())
  return newDir(tmpdir())
}

/**
 * A fresh directory in RAM for the local edge's SQLite storage (the Durable Objects' and D1's),
 * or undefined (Miniflare's default then: inside its temp dir) where there is no roomy one. The
 * caller removes it.
 *
 * Locally D1 runs inside the edge's own workerd process. Its commits to disk (the attestation
 * flush, every second under load) held up the thread that answers requests. So did the Gateway's
 * outbox write on every answer, which workerd's output gate waits for. On this machine's disk
 * that was ~17 KiB written per job. In paired c=1 runs it cost 0.3–2.5 ms of p50 and 1–7 ms of
 * p99 (bench/RESULTS.md, 2026-12-05). On Cloudflare, D1 is another service, not a disk under
 * the Worker's thread. The data is thrown away when the edge stops either way, so RAM loses
 * nothing. R2 (model files, which may be large) stays in the temp dir.
 */
export function ramStorageDir(): string | undefined {
  try {
    accessSync(RAM_DIR, constants.W_OK)
    removeOrphanedDirs(RAM_DIR)
    const { bavail, bsize } = statfsSync(RAM_DIR)
    if (bavail * bsize < RAM_DIR_MIN_FREE_BYTES) return undefined
    return newDir(RAM_DIR)
  } catch {
    return undefined
  }
}

function newDir(parent: string): string {
  return mkdtempSync(join(parent, `${PREFIX}${process.pid}-`))
}

/** Removes the directories in `parent` whose process is gone. */
function removeOrphanedDirs(parent: string): void {
  for (const name of readdirSync(parent)) {
    if (!name.startsWith(PREFIX)) continue
    const pid = Number(name.slice(PREFIX.length).split('-')[0])
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid || processAlive(pid)) continue
    rmSync(join(parent, name), { recursive: true, force: true })
  }
}
