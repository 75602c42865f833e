/**
 * `npm run typecheck` after the contracts' build: `tsc -p` of every project, two at a time.
 * The projects share no build output (noEmit, no project references), and one tsc uses about
 * one core: run in series they took ~75 s on the 2-core CI machine, two at a time ~45 s.
 * Each project's output is printed whole when it ends (never interleaved), every project runs
 * even after one fails, and the exit code is 1 if any failed.
 */
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { REPO_ROOT } from './local/paths.js'

/** Longest first (measured, in series: root 29 s, contracts 16 s, cli 12 s, edge 11 s, device-agent 9 s, shared 3 s), so the two lanes end close together. */
const PROJECTS = ['.', 'contracts', 'cli', 'edge', 'device-agent', 'shared']
/** Two: the CI machine has two cores, and a third tsc at once would only share them. */
const AT_ONCE = 2

const TSC = createRequire(import.meta.url).resolve('typescript/bin/tsc')

interface Checked {
  project: string
  ok: boolean
  output: string
  seconds: number
}

function check(project: string): Promise<Checked> {
  const started = performance.now()
  // Piped output loses tsc's colours and code frames: ask for them when a person is watching.
  const args = [TSC, '-p', project, ...(process.stdout.isTTY ? ['--pretty'] : [])]
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    const done = (ok: boolean, more = ''): void => resolve({ project, ok, output: output + more, seconds: (performance.now() - started) / 1000 })
    child.once('error', (error) => done(false, `${error.message}\n`))
    child.once('close', (code, signal) => done(code === 0, code === 0 ? '' : signal ? `tsc ended by ${signal}\n` : ''))
  })
}

function report({ project, ok, output, seconds }: Checked): void {
  process.stdout.write(`tsc -p ${project}: ${ok ? 'ok' : 'FAILED'} (${seconds.toFixed(1)} s)\n`)
  if (output) process.stdout.write(output.endsWith('\n') ? output : `${output}\n`)
}

const queue = [...PROJECTS]
let failed = 0
async function lane(): Promise<void> {
  for (let project = queue.shift(); project !== undefined; project = queue.shift()) {
    const checked = await check(project)
    if (!checked.ok) failed++
    report(checked)
  }
}
await Promise.all(Array.from({ length: AT_ONCE }, lane))
if (failed) {
  process.stdout.write(`typecheck: ${failed} of ${PROJECTS.length} projects failed\n`)
  process.exitCode = 1
}
