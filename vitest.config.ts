import { defineConfig } from 'vitest/config'

/**
 * Files that must run alone: nothing else runs while one of them does.
 * - test/e2e: each starts a whole network (workerd, broker, agents, sometimes anvil) and times it.
 * - model-session: counts a 10 ms timer's ticks while onnxruntime runs in a worker thread, which
 *   needs a core of its own; a test file beside it takes that core.
 * - device-agent's agent test and test/agent-supervisor: spawn agent processes that run
 *   onnxruntime (one test counts reconnect back-offs within a second).
 * - mosquitto-production-acl: a real Mosquitto on ports picked free beforehand and bound later
 *   by another process (another file could take one in between); it also chmods the run's temp dir.
 * - contracts: each starts anvil, and each builds contracts/generated when it is stale (with
 *   `vitest run` alone, not after `npm run typecheck`): two at once would write the same files.
 */
const SEQUENTIAL = [
  'test/e2e/**/*.test.ts',
  'device-agent/src/runtime/model-session.test.ts',
  'device-agent/src/agent.test.ts',
  'test/agent-supervisor.test.ts',
  'test/mosquitto-production-acl.test.ts',
  'contracts/test/**/*.test.ts',
]

const EXCLUDE = ['**/node_modules/**']

/** What both projects share (a project inherits nothing from the root config but env). */
const common = {
  testTimeout: 60_000,
  hookTimeout: 120_000,
  // No spot checks (extra jobs sent at random) in suites that count jobs and devices' work;
  // test/e2e/spot-checks.test.ts turns them on for its own network.
  // ORT_DISABLE_TELEMETRY: the tests' own onnxruntime sessions (device-agent/src/runtime/ort-telemetry.ts).
  env: { WRANGLER_SEND_METRICS: 'false', DEPINFER_SPOT_CHECK_RATE: '0', ORT_DISABLE_TELEMETRY: '1' },
}

export default defineConfig({
  test: {
    // In the root config, not the projects': it runs once for the whole run (a project's own
    // globalSetup would run once per project: two edge builds and two temp dirs).
    globalSetup: ['test/global-setup.ts'],
    projects: [
      {
        test: {
          ...common,
          name: 'unit',
          include: ['shared/src/**/*.test.ts', 'edge/src/**/*.test.ts', 'device-agent/src/**/*.test.ts', 'cli/src/**/*.test.ts', 'contracts/**/*.test.ts', 'test/**/*.test.ts'],
          exclude: [...EXCLUDE, ...SEQUENTIAL],
          // Two files at a time: the CI machine has two cores (Vitest's default, one fewer than
          // the cores, would be one). About 180 s of these files in series take ~110 s this way.
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          ...common,
          name: 'sequential',
          include: SEQUENTIAL,
          exclude: EXCLUDE,
          // One file at a time, and only after every file of the group before has ended.
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
})
