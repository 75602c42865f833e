/**
 * The agent's log lines: `[agent <deviceId>] <message>`, after the time (ISO 8601, UTC) where
 * nothing else stamps them. A provider reads them after the fact (what happened at 03:12 when the
 * edge saw the device go), from a file, `docker logs` or a terminal; systemd's journal stamps
 * each line itself, and says so to the service by setting JOURNAL_STREAM.
 */
import type { LogTimestamps } from './config.js'

export function logLine(
  deviceId: string,
  timestamps: LogTimestamps,
  env: NodeJS.ProcessEnv,
  now: () => Date = () => new Date(),
): (message: string) => string {
  const prefix = `[agent ${deviceId}]`
  const stamped = timestamps === 'on' || (timestamps === 'auto' && !env.JOURNAL_STREAM)
  return stamped ? (message) => `${now().toISOString()} ${prefix} ${message}` : (message) => `${prefix} ${message}`
}
