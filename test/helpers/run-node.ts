/**
 * Runs a Node entry point (a CLI's bin) as a child process, the way a user runs it, and collects
 * what it printed: the tests of the depinfer CLI, depinfer-quantize and key scripts use it.
 */
import { spawn } from 'node:child_process'

export interface NodeRun {
  code: number
  stdout: string
  stderr: string
  /** stdout and stderr interleaved as they arrived. */
  output: string
}

export interface RunOptions {
  /**
   * Start from the test's environment without its DEPINFER_* variables, so only `env` sets them
   * (default: the test's environment as it is, `env` on top).
   */
  withoutDepinferEnv?: boolean
}

export function runNode(script: string, args: readonly string[], env: Record<string, string> = {}, options: RunOptions = {}): Promise<NodeRun> {
  const base = options.withoutDepinferEnv ? Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('DEPINFER_'))) : process.env
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, ...args], { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk
      output += chunk
    })
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk
      output += chunk
    })
    child.once('exit', (code) => resolve({ code: code ?? -1, stdout, stderr, output }))
  })
}
