/** The `ort` section of the agent config: session options and execution providers, file and env. */
import { writeFileSync } from 'node:fs'
import { totalmem } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { AgentConfigSchema, ConfigError, loadConfig } from './config.js'
import { temporaryDirectory } from '../../test/helpers/temporary-directory.js'

const writeConfig = (content: unknown) => {
  const path = join(temporaryDirectory('agent-ort-config-'), 'agent.json')
  writeFileSync(path, JSON.stringify(content))
  return path
}
const base = { DEPINFER_DEVICE_ID: 'pi-1' }

describe('agent config: ort', () => {
  it('defaults to onnxruntime-chosen threads that do not spin, sessions placed by their runs, half the memory for a model\'s process closed after 10 idle minutes, sequential runs, every optimization and automatic EPs', () => {
    // Half of this machine's memory, in whole MB (the README's default).
    const halfTheMemoryMb = Math.floor(totalmem() / 2 / 2 ** 20)
    const expected = { intraOpThreads: 0, interOpThreads: 0, allowSpinning: false, runIn: 'auto', processMemoryLimitMb: halfTheMemoryMb, processIdleSec: 600, executionMode: 'sequential', graphOptimizationLevel: 'all', executionProviders: 'auto' }
    expect(loadConfig(undefined, base).ort).toEqual(expected)
    // Also when the schema is used directly, as the tests that build configs do.
    expect(AgentConfigSchema.parse({ deviceId: 'd', broker: { url: 'mqtt://x' }, models: [{ bundled: 'ppocr-cls' }], keyPath: '/k' }).ort).toEqual(expected)
    // A partial section keeps the defaults of the fields it leaves out.
    expect(loadConfig(writeConfig({ ort: { intraOpThreads: 2 } }), base).ort).toEqual({ ...expected, intraOpThreads: 2 })
  })

  it('takes the file, then lets the environment override it', () => {
    const path = writeConfig({
      ort: { intraOpThreads: 2, interOpThreads: 2, allowSpinning: true, runIn: 'agent-thread', processMemoryLimitMb: 1024, processIdleSec: 0, executionMode: 'parallel', graphOptimizationLevel: 'basic', executionProviders: ['tensorrt', 'cuda', 'cpu'] },
    })
    expect(loadConfig(path, base).ort).toEqual({
      intraOpThreads: 2,
      interOpThreads: 2,
      allowSpinning: true,
      runIn: 'agent-thread',
      processMemoryLimitMb: 1024,
      processIdleSec: 0,
      executionMode: 'parallel',
      graphOptimizationLevel: 'basic',
      executionProviders: ['tensorrt', 'cuda', 'cpu'],
    })
    const env = {
      ...base,
      DEPINFER_ORT_THREADS: '4',
      DEPINFER_ORT_INTEROP_THREADS: '3',
      DEPINFER_ORT_ALLOW_SPINNING: 'false',
      DEPINFER_ORT_RUN_IN: ' child-process',
      DEPINFER_ORT_PROCESS_MEMORY_MB: '2048',
      DEPINFER_ORT_PROCESS_IDLE_SEC: '90.5',
      DEPINFER_ORT_EXECUTION_MODE: 'sequential',
      DEPINFER_ORT_GRAPH_OPT_LEVEL: 'extended',
      DEPINFER_ORT_EPS: 'cuda, cpu',
    }
    expect(loadConfig(path, env).ort).toEqual({
      intraOpThreads: 4,
      interOpThreads: 3,
      allowSpinning: false,
      runIn: 'child-process',
      processMemoryLimitMb: 2048,
      processIdleSec: 90.5,
      executionMode: 'sequential',
      graphOptimizationLevel: 'extended',
      executionProviders: ['cuda', 'cpu'],
    })
    expect(loadConfig(path, { ...base, DEPINFER_ORT_EPS: 'auto' }).ort.executionProviders).toBe('auto')
    expect(loadConfig(undefined, { ...base, DEPINFER_ORT_ALLOW_SPINNING: ' 1' }).ort.allowSpinning).toBe(true)
    expect(loadConfig(undefined, { ...base, DEPINFER_ORT_ALLOW_SPINNING: 'TRUE' }).ort.allowSpinning).toBe(true)
    expect(loadConfig(path, { ...base, DEPINFER_ORT_ALLOW_SPINNING: '0' }).ort.allowSpinning).toBe(false)
  })

  it.each([
    ['an unknown execution provider', { executionProviders: ['cuda', 'gpu'] }, /at ort\.executionProviders\.1: Invalid option: expected one of "tensorrt"\|"cuda"/],
    ['an EP list that is not a list', { executionProviders: 'fastest' }, /at ort\.executionProviders: must be "auto" or a list of execution providers/],
    ['an empty EP list', { executionProviders: [] }, /at ort\.executionProviders: .*>=1/],
    ['an EP listed twice', { executionProviders: ['cuda', 'cuda', 'cpu'] }, /at ort\.executionProviders: must not list an execution provider twice/],
    ['an EP after cpu, which would never be tried', { executionProviders: ['cpu', 'cuda'] }, /at ort\.executionProviders: cpu must come last/],
    ['an unknown optimization level', { graphOptimizationLevel: 'max' }, /at ort\.graphOptimizationLevel: Invalid option/],
    ['an unknown execution mode', { executionMode: 'async' }, /at ort\.executionMode: Invalid option/],
    ['negative threads', { intraOpThreads: -1 }, /at ort\.intraOpThreads/],
    ['fractional threads', { interOpThreads: 1.5 }, /at ort\.interOpThreads/],
    ['absurdly many threads', { intraOpThreads: 100_000 }, /at ort\.intraOpThreads/],
    ['spinning as a string', { allowSpinning: 'no' }, /at ort\.allowSpinning: Invalid input: expected boolean/],
    ['an unknown thread for sessions', { runIn: 'main' }, /at ort\.runIn: must be "auto", "agent-thread", "worker-thread", "child-process"/],
    ['a process memory limit too small to open a model in', { processMemoryLimitMb: 16 }, /at ort\.processMemoryLimitMb: .*>=64/],
    ['a negative idle time for a model\'s process', { processIdleSec: -1 }, /at ort\.processIdleSec: .*>=0/],
  ])('rejects %s with a ConfigError naming the field', (_what, ort, message) => {
    const path = writeConfig({ ort })
    expect(() => loadConfig(path, base)).toThrow(ConfigError)
    expect(() => loadConfig(path, base)).toThrow(message)
  })

  it.each([
    ['DEPINFER_ORT_THREADS', 'four', /at ort\.intraOpThreads \(from DEPINFER_ORT_THREADS\): Invalid input: expected number/],
    ['DEPINFER_ORT_INTEROP_THREADS', '-2', /at ort\.interOpThreads \(from DEPINFER_ORT_INTEROP_THREADS\)/],
    ['DEPINFER_ORT_ALLOW_SPINNING', 'yes', /at ort\.allowSpinning \(from DEPINFER_ORT_ALLOW_SPINNING\): Invalid input: expected boolean/],
    ['DEPINFER_ORT_RUN_IN', 'worker', /at ort\.runIn \(from DEPINFER_ORT_RUN_IN\): must be "auto", "agent-thread", "worker-thread", "child-process"/],
    ['DEPINFER_ORT_PROCESS_MEMORY_MB', '1.5GB', /at ort\.processMemoryLimitMb \(from DEPINFER_ORT_PROCESS_MEMORY_MB\)/],
    ['DEPINFER_ORT_PROCESS_IDLE_SEC', '10m', /at ort\.processIdleSec \(from DEPINFER_ORT_PROCESS_IDLE_SEC\)/],
    ['DEPINFER_ORT_EXECUTION_MODE', 'fast', /at ort\.executionMode \(from DEPINFER_ORT_EXECUTION_MODE\)/],
    ['DEPINFER_ORT_GRAPH_OPT_LEVEL', '99', /at ort\.graphOptimizationLevel \(from DEPINFER_ORT_GRAPH_OPT_LEVEL\)/],
    ['DEPINFER_ORT_EPS', 'cuda,,cpu', /at ort\.executionProviders\.1 \(from DEPINFER_ORT_EPS\): Invalid option/],
  ])('names the variable when %s=%j is invalid', (variable, value, message) => {
    expect(() => loadConfig(undefined, { ...base, [variable]: value })).toThrow(ConfigError)
    expect(() => loadConfig(undefined, { ...base, [variable]: value })).toThrow(message)
  })
})
