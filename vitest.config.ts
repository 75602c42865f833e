import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['shared/src/**/*.test.ts', 'edge/src/**/*.test.ts', 'device-agent/src/**/*.test.ts', 'cli/src/**/*.test.ts', 'contracts/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['**/node_modules/**'],
    globalSetup: ['test/global-setup.ts'],
    // End-to-end suites each start a whole network (workerd, broker, agents): on a 2-core
    // machine they are faster and steadier one file at a time.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // No spot checks (extra jobs sent at random) in suites that count jobs and devices' work;
    // test/e2e/spot-checks.test.ts turns them on for its own network.
    // ORT_DISABLE_TELEMETRY: the tests' own onnxruntime sessions (device-agent/src/runtime/ort-telemetry.ts).
    env: { WRANGLER_SEND_METRICS: 'false', DEPINFER_SPOT_CHECK_RATE: '0', ORT_DISABLE_TELEMETRY: '1' },
  },
})
