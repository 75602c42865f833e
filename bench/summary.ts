/**
 * The one-table summary of `npm run bench` (bench/all.ts): each benchmark, run as its own
 * process, appends its headline figures to the file named by DEPINFER_BENCH_SUMMARY; run alone,
 * a benchmark only prints its own tables.
 */
import { appendFileSync } from 'node:fs'

export interface SummaryRow {
  bench: string
  metric: string
  /** The measured figure, formatted. */
  value: string
  /** The target as text, or '' when the figure is for information. */
  target: string
  /** Whether the target is met; null when there is none. */
  met: boolean | null
}

export const SUMMARY_FILE_ENV = 'DEPINFER_BENCH_SUMMARY'

export function recordSummary(...rows: SummaryRow[]): void {
  const file = process.env[SUMMARY_FILE_ENV]
  if (file) appendFileSync(file, rows.map((row) => `${JSON.stringify(row)}\n`).join(''))
}
