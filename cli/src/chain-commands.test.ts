/**
 * The chain commands' failures that need no chain: each is one line naming the setting to fix,
 * exit 2 for the command line or environment, 1 for an RPC that cannot be reached. (Against a
 * real chain: test/e2e/cli-chain.test.ts.)
 */
import { createServer, type AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { beforeAll, describe, expect, it } from 'vitest'
import { runNode, type NodeRun as Run } from '../../test/helpers/run-node.js'

const CLI = fileURLToPath(new URL('../bin/depinfer.js', import.meta.url))
const ADDRESS = '0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f'
/** anvil's public dev key #8. */
const KEY = '0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97'

/** Runs the CLI with only the DEPINFER_* variables given (none leak in from the test's environment). */
const runCli = (args: string[], env: Record<string, string>) => runNode(CLI, args, env, { withoutDepinferEnv: true })

function expectOneLineError(run: Run, code: number, message: RegExp): void {
  expect(run.stderr, run.stderr).not.toMatch(/^\s+at /m)
  expect(run.stderr.trim().split('\n'), run.stderr).toHaveLength(1)
  expect(run.stderr.trim()).toMatch(message)
  expect(run.code).toBe(code)
}

/** A port nothing listens on. */
let closedPort: number
beforeAll(async () => {
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  closedPort = (probe.address() as AddressInfo).port
  await new Promise((resolve) => probe.close(resolve))
})

describe('depinfer chain command errors', () => {
  it('names an RPC it cannot reach (settings from the environment: the edge is not asked)', async () => {
    const run = await runCli(['provider', 'status', '--address', ADDRESS], {
      DEPINFER_RPC_URL: `http://127.0.0.1:${closedPort}`,
      DEPINFER_PROVIDER_REGISTRY_ADDRESS: ADDRESS,
    })
    expectOneLineError(run, 1, new RegExp(`^reading the chain id \\(RPC URL from DEPINFER_RPC_URL\\) failed: cannot reach the RPC at http://127\\.0\\.0\\.1:${closedPort}/: .*ECONNREFUSED`))
  })

  it('says where chain settings come from when neither the environment nor an API key gives them', async () => {
    expectOneLineError(
      await runCli(['escrow', 'withdraw'], { DEPINFER_PRIVATE_KEY: KEY }),
      2,
      /^set DEPINFER_API_KEY to your API key \(npm start prints one\): the RPC URL and the Escrow address come from the edge's \/api\/chain \(or set DEPINFER_RPC_URL and DEPINFER_ESCROW_ADDRESS\)$/,
    )
    expectOneLineError(
      await runCli(['provider', 'status', '--address', ADDRESS], { DEPINFER_RPC_URL: 'ws://127.0.0.1:8545', DEPINFER_PROVIDER_REGISTRY_ADDRESS: ADDRESS }),
      2,
      /^DEPINFER_RPC_URL must be an http:\/\/ or https:\/\/ JSON-RPC URL, got "ws:\/\/127\.0\.0\.1:8545"$/,
    )
  })

  it('refuses an option of another command, with the usage', async () => {
    const run = await runCli(['provider', 'status', '--stake', '1'], {})
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/^provider status takes no --stake\n\nusage:\n/)
  })
})
