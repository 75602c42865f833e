/**
 * A directory in RAM for the local edge's SQLite storage (the Durable Objects' and D1's).
 *
 * Locally D1 runs inside the edge's own workerd process. Its commits to disk (the attestation
 * flush, every second under load) held up the thread that answers requests. So did the Gateway's
 * outbox write on every answer, which workerd's output gate waits for. On this machine's disk
 * that was ~17 KiB written per job. In paired c=1 runs it cost 0.3–2.5 ms of p50 and 1–7 ms of
 * p99 (bench/RESULTS.md, 2026-12-05). On Cloudflare, D1 is another service, not a disk under
 * the Worker's thread. The data is thrown away when the edge stops either way (Miniflare deletes
 * its temp dir), so RAM loses nothing. R2 (model files, which may be large) stays in the temp
 * dir.
 */
import { accessSync, constants, mkdtempSync, readdirSync, rmSync, statfsSync } from 'node:fs'
import { join } from 'node:path'
import { processAlive } from '../../device-agent/src/process-alive.js'

/** Where Linux keeps a RAM file system every process may write to. */
const RAM_DIR = '/dev/shm'
/** Less free than this (Docker gives /dev/shm 64 MiB) and the storage stays on disk. */
const RAM_DIR_MIN_FREE_BYTES = 1024 ** 3
/** Followed by the pid of the process that made the directory, then a random suffix. */
const PREFIX = 'depinfer-edge-'

/**
 * A fresh directory in RAM, or undefined (Miniflare's default then: its directory in the OS
 * temp dir) where there is no roomy one. The caller removes it.
 */
export function ramStorageDir(): string | undefined {
  try {
    accessSync(RAM_DIR, constants.W_OK)
    removeOrphanedDirs()
    const { bavail, bsize } = statfsSync(RAM_DIR)
    if (bavail * bsize < RAM_DIR_MIN_FREE_BYTES) return undefined
    return mkdtempSync(join(RAM_DIR, `${PREFIX}${process.pid}-`))
  } catch {
    return undefined
  }
}

/**
 * Removes the directories of edges whose process is gone: one killed before its `close()` (a
 * SIGKILL, or a Ctrl-C that ends the process before the cleanup runs) would otherwise hold its
 * memory until reboot.
 */
function removeOrphanedDirs(): void {
  for (const name of readdirSync(RAM_DIR)) {
    if (!name.startsWith(PREFIX)) continue
    const pid = Number(name.slice(PREFIX.length).split('-')[0])
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid || processAlive(pid)) continue
    rmSync(join(RAM_DIR, name), { recursive: true, force: true })
  }
}
