/**
 * The agent's log lines: `[agent <deviceId>] <message>`, after the time (ISO 8601, UTC) where
 * nothing else stamps them. A provider reads them after the fact (what happened at 03:12 when the
 * edge saw the device go), from a file, `docker logs` or a terminal; systemd's journal stamps
 * each line itself.
 */
import { fstatSync } from 'node:fs'
import type { LogTimestamps } from './config.js'

/**
 * Whether the journal takes this process's output: systemd sets JOURNAL_STREAM to the
 * `device:inode` of the stream it connected (systemd.exec(5)), and the variable is inherited by
 * whatever the service starts, so it counts only when stdout or stderr is that very stream.
 */
export function journalTakesOutput(env: NodeJS.ProcessEnv, fds: readonly number[] = [1, 2]): boolean {
  const match = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? '')
  if (!match) return false
  return fds.some((fd) => {
    try {
      const { dev, ino } = fstatSync(fd)
      return String(dev) === match[1] && String(ino) === match[2]
    } catch {
      return false
    }
  })
}

export function logLine(
  deviceId: string,
  timestamps: LogTimestamps,
  env: NodeJS.ProcessEnv,
  now: () => Date = () => new Date(),
): (message: string) => string {
  const prefix = `[agent ${deviceId}]`
  const stamped = timestamps === 'on' || (timestamps === 'auto' && !journalTakesOutput(env))
  return stamped ? (message) => `${now().toISOString()} ${prefix} ${message}` : (message) => `${prefix} ${message}`
}
