/**
 * `npm run bench`: every benchmark in bench/, one after the other (each in its own process, so
 * none inherits another's warm caches or leftover load), then one table of their headline
 * figures — all measured in this run, on this machine.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { REPO_ROOT } from '../scripts/local/paths.js'
import { machineLine } from './machine.js'
import { SUMMARY_FILE_ENV, type SummaryRow } from './summary.js'

const BENCHES: { name: string; args: string[] }[] = [
  { name: 'overhead', args: ['bench/overhead.ts'] },
  { name: 'scheduler', args: ['bench/scheduler-sim.ts', '--seed', '42'] },
  { name: 'attest', args: ['bench/attest.ts'] },
  { name: 'catalog', args: ['bench/catalog.ts'] },
  { name: 'quantize', args: ['bench/quantize.ts', '--models', 'cls'] },
  { name: 'session-thread', args: ['bench/session-thread.ts'] },
]

function run(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: REPO_ROOT, env, stdio: 'inherit' })
    child.once('exit', (code) => resolve(code ?? 1))
  })
}

async function main(): Promise<void> {
  const only = process.argv.slice(2)
  const dir = mkdtempSync(join(tmpdir(), 'depinfer-bench-'))
  const summaryFile = join(dir, 'summary.jsonl')
  const failed: string[] = []
  const started = Date.now()
  for (const bench of BENCHES.filter((b) => only.length === 0 || only.includes(b.name))) {
    console.log(`\n## ${bench.name}: tsx ${bench.args.join(' ')}\n`)
    const code = await run(bench.args, { ...process.env, [SUMMARY_FILE_ENV]: summaryFile })
    if (code !== 0) failed.push(`${bench.name} (exit ${code})`)
  }
  let rows: SummaryRow[] = []
  try {
    rows = readFileSync(summaryFile, 'utf8').trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as SummaryRow)
  } catch {
    // no benchmark wrote a summary
  }
  rmSync(dir, { recursive: true, force: true })
  console.log(`\n## Summary (${new Date().toISOString().slice(0, 10)}, ${((Date.now() - started) / 60_000).toFixed(1)} min)\n`)
  console.log(`machine: ${machineLine()}\n`)
  console.log('| bench | figure | measured | target | |')
  console.log('|---|---|---|---|---|')
  for (const r of rows) console.log(`| ${r.bench} | ${r.metric} | ${r.value} | ${r.target} | ${r.met === null ? '' : r.met ? 'met' : '**not met**'} |`)
  if (failed.length > 0) {
    console.log(`\nfailed: ${failed.join(', ')}`)
    process.exitCode = 1
  }
}

await main()
