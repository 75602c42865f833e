/** Percentiles and table formatting for the simulation report. */

/** Nearest-rank percentile of ascending `sorted` (q in (0, 1]); failed jobs sort last as Infinity. */
export function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)))
  return sorted[rank - 1]!
}

export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return 'failed'
  return ms >= 1000 ? ms.toFixed(0) : ms.toFixed(1)
}

export function formatRatio(ratio: number): string {
  if (Number.isNaN(ratio)) return 'n/a'
  return Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : '∞'
}

export function formatPercent(share: number, digits = 1): string {
  return `${(share * 100).toFixed(digits)} %`
}

/** A GitHub-flavoured markdown table. */
export function markdownTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}
