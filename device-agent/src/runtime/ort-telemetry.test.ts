import { spawnSync } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { bundledModelPath } from '../models/bundled.js'

/** Creates one onnxruntime session in a fresh Node process; returns whether it left onnxruntime's telemetry log behind. */
function leavesTelemetryLog(env: NodeJS.ProcessEnv): boolean {
  const script = `
    const { keepOrtTelemetryOff } = await import(${JSON.stringify(new URL('./ort-telemetry.ts', import.meta.url).pathname)})
    if (process.env.KEEP_OFF) keepOrtTelemetryOff()
    const ort = await import('onnxruntime-node')
    const session = await ort.InferenceSession.create(${JSON.stringify(bundledModelPath('ppocr-cls'))})
    await session.release()
    console.log(process.pid)`
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env, encoding: 'utf8' })
  expect(run.status, run.stderr).toBe(0)
  // Here it is written to TMPDIR (the test run sets its own); the other places are in case a
  // build writes elsewhere.
  const logs = logPlaces(env).map((dir) => join(dir, `mat-debug-${run.stdout.trim()}.log`))
  const left = logs.some((log) => existsSync(log))
  for (const log of logs) rmSync(log, { force: true })
  return left
}

const logPlaces = (env: NodeJS.ProcessEnv) => [...new Set([env.TMPDIR ?? '/tmp', tmpdir(), '/tmp', process.cwd()])]

describe('keepOrtTelemetryOff', () => {
  it("keeps onnxruntime's telemetry from starting (its log file is the visible sign)", (ctx) => {
    const { ORT_DISABLE_TELEMETRY: _, ...env } = process.env
    // Whether the library writes its log at all depends on the machine (a CI runner once showed
    // none with telemetry on): without the sign there is nothing to compare against.
    if (!leavesTelemetryLog(env)) ctx.skip(`onnxruntime left no telemetry log in ${logPlaces(env).join(', ')} even with telemetry on`)
    expect(leavesTelemetryLog({ ...env, KEEP_OFF: '1' })).toBe(false)
  })
})
