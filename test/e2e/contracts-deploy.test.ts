/**
 * An operator's production set-up, on a bare local EVM instead of an L2: `depinfer contracts
 * deploy` deploys the three contracts wired together and prints the edge's settings; an edge
 * given exactly those settings (nothing from the test harness's own chain) then routes to a
 * device staked through the CLI, charges a payer's Escrow deposit, posts the batch and settles
 * it, and the developer claims its price: the deployment works as the edge and the CLI use it.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Address, createPublicClient, getAddress, type Hex, http, keccak256, parseEther, toHex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { foundry } from 'viem/chains'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { attestationRegistryAbi, escrowAbi, providerRegistryAbi } from '../../contracts/generated/index.js'
import { startAnvil, type AnvilInstance } from '../../contracts/scripts/anvil.js'
import { initDeviceKey } from '../../device-agent/src/keys/device-key.js'
import { bundledModelPath } from '../../device-agent/src/models/bundled.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { PACKED_CLI } from '../helpers/packed-cli.js'
import { runNode, type NodeRun } from '../helpers/run-node.js'
import { apiClient, waitForModelReady } from './support.js'

/** As its tarball ships it (test/helpers/packed-cli.ts). */
const CLI = PACKED_CLI
/** anvil's well-known dev keys (public test keys): #0 deploys, #4 is the edge's submitter, #8 a provider, #2 a payer, #9 a relayer. */
const DEPLOYER_KEY: Hex = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80'
const SUBMITTER_KEY: Hex = '0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a'
const PROVIDER_KEY: Hex = '0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97'
const PAYER_KEY: Hex = '0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a'
const RELAYER_KEY: Hex = '0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6'
const submitter = privateKeyToAccount(SUBMITTER_KEY).address
const payer = privateKeyToAccount(PAYER_KEY).address
/** Fresh accounts: the admin is not the deployer, and the developer's balance is its claim alone. */
const admin = privateKeyToAccount(generatePrivateKey()).address
const slasher = privateKeyToAccount(generatePrivateKey()).address
const developer = privateKeyToAccount(generatePrivateKey()).address
const DEV_PRICE = 2_000_011n
const PROVIDER_FEE = 3_001n
const JOBS = 2n

const runCli = (args: string[], env: Record<string, string>) => runNode(CLI, args, env, { withoutDepinferEnv: true })

function expectSuccess(run: NodeRun): string {
  expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0)
  expect(run.stderr).toBe('')
  return run.stdout
}

/** `NAME = "value"` lines the deploy printed for wrangler.toml. */
function printedVars(stdout: string): Record<string, string> {
  const section = stdout.split('wrangler.toml, [vars]:\n')[1] ?? ''
  return Object.fromEntries([...section.matchAll(/^([A-Z_]+) = (".*")$/gm)].map(([, name, value]) => [name!, JSON.parse(value!) as string]))
}

const role = (name: string) => keccak256(toHex(name))
const DEFAULT_ADMIN_ROLE = `0x${'00'.repeat(32)}` as Hex

describe('depinfer contracts deploy, then an edge configured with what it printed', () => {
  let anvil: AnvilInstance
  let network: LocalNetwork | undefined
  let vars: Record<string, string>
  const chain = () => createPublicClient({ chain: foundry, transport: http(anvil.rpcUrl) })
  const keyDir = mkdtempSync(join(tmpdir(), 'depinfer-contracts-deploy-'))
  const deviceKeyPath = join(keyDir, 'device.key')
  const device = getAddress(initDeviceKey(deviceKeyPath).address)

  beforeAll(async () => {
    anvil = await startAnvil()
  })
  afterAll(async () => {
    await network?.close()
    await anvil?.stop()
    rmSync(keyDir, { recursive: true, force: true })
  })

  it('refuses, in one line and before sending anything, what would deploy a broken set-up', async () => {
    const env = { DEPINFER_RPC_URL: anvil.rpcUrl, DEPINFER_PRIVATE_KEY: DEPLOYER_KEY }
    const deployer = privateKeyToAccount(DEPLOYER_KEY).address
    const cases: [string[], Record<string, string>, RegExp][] = [
      [['--min-stake', '1'], env, /^contracts deploy needs --submitter <0x…>/],
      [['--submitter', submitter], env, /^contracts deploy needs --min-stake <eth>/],
      [['--submitter', submitter, '--min-stake', '1', '--withdrawal-delay', '10m'], env, /^--withdrawal-delay 10m is under an hour/],
      [['--submitter', submitter, '--min-stake', '1', '--unstake-delay', 'a day'], env, /^--unstake-delay must be a duration/],
      [['--submitter', submitter, '--attestations-only', '--slasher', slasher], env, /^--slasher is for the Escrow and ProviderRegistry, which --attestations-only does not deploy/],
      [['--submitter', submitter.toLowerCase().replace('a', 'A'), '--attestations-only'], env, /^--submitter .*checksum/],
      [['--submitter', submitter, '--attestations-only'], { DEPINFER_PRIVATE_KEY: DEPLOYER_KEY }, /^contracts deploy needs DEPINFER_RPC_URL/],
      [['--submitter', submitter, '--min-stake', '1', '--slasher', `0x${'0'.repeat(40)}`], env, /^--slasher must not be the zero address/],
    ]
    const runs = await Promise.all(cases.map(([args, runEnv]) => runCli(['contracts', 'deploy', ...args], runEnv)))
    for (const [i, [, , message]] of cases.entries()) {
      const run = runs[i]!
      expect(run.code, run.stderr).toBe(2)
      expect(run.stderr).not.toMatch(/^\s+at /m)
      expect(run.stderr.trim().split('\n')[0]).toMatch(message)
    }
    expect(await chain().getTransactionCount({ address: deployer })).toBe(0)
  })

  it('deploys the three contracts with their roles and settings, and prints the edge\'s settings for them', async () => {
    const stdout = expectSuccess(
      await runCli(
        ['contracts', 'deploy', '--submitter', submitter, '--admin', admin, '--min-stake', '0.2', '--withdrawal-delay', '2d', '--unstake-delay', '36h', '--slasher', slasher],
        { DEPINFER_RPC_URL: anvil.rpcUrl, DEPINFER_PRIVATE_KEY: DEPLOYER_KEY },
      ),
    )
    vars = printedVars(stdout)
    expect(Object.keys(vars).sort()).toEqual(['CHAIN_ID', 'CHAIN_RPC_URL', 'ESCROW_ADDRESS', 'PROVIDER_REGISTRY_ADDRESS', 'REGISTRY_ADDRESS'])
    expect(vars).toMatchObject({ CHAIN_ID: String(foundry.id), CHAIN_RPC_URL: anvil.rpcUrl })
    expect(stdout).toContain(`npx wrangler secret put SUBMITTER_PRIVATE_KEY   # the private key of ${submitter}`)
    const registry = vars.REGISTRY_ADDRESS as Address
    const escrow = vars.ESCROW_ADDRESS as Address
    const providers = vars.PROVIDER_REGISTRY_ADDRESS as Address
    // Printed checksummed, as the edge wants mixed-case addresses.
    for (const address of [registry, escrow, providers]) expect(address).toBe(getAddress(address))

    const read = chain()
    const hasRole = (address: Address, abi: typeof escrowAbi | typeof attestationRegistryAbi | typeof providerRegistryAbi, name: Hex, account: Address) =>
      read.readContract({ address, abi, functionName: 'hasRole', args: [name, account] } as never) as Promise<boolean>
    const deployer = privateKeyToAccount(DEPLOYER_KEY).address
    expect(await hasRole(registry, attestationRegistryAbi, role('SUBMITTER_ROLE'), submitter)).toBe(true)
    expect(await hasRole(escrow, escrowAbi, role('SETTLER_ROLE'), submitter)).toBe(true)
    expect(await hasRole(providers, providerRegistryAbi, role('SLASHER_ROLE'), slasher)).toBe(true)
    for (const [address, abi] of [
      [registry, attestationRegistryAbi],
      [escrow, escrowAbi],
      [providers, providerRegistryAbi],
    ] as const) {
      expect(await hasRole(address, abi, DEFAULT_ADMIN_ROLE, admin)).toBe(true)
      expect(await hasRole(address, abi, DEFAULT_ADMIN_ROLE, deployer)).toBe(false)
    }
    expect(getAddress(await read.readContract({ address: escrow, abi: escrowAbi, functionName: 'attestationRegistry' }))).toBe(registry)
    expect(await read.readContract({ address: escrow, abi: escrowAbi, functionName: 'withdrawalDelay' })).toBe(2n * 86_400n)
    expect(await read.readContract({ address: providers, abi: providerRegistryAbi, functionName: 'minStake' })).toBe(parseEther('0.2'))
    expect(await read.readContract({ address: providers, abi: providerRegistryAbi, functionName: 'unstakeDelay' })).toBe(36n * 3600n)
  })

  it('an edge with those settings routes to the device the CLI staked, charges the payer, settles the batch; the developer claims its price', async () => {
    network = await startLocalNetwork({
      build: false,
      agents: [],
      // Only what the deploy printed, the submitter's key, and the fee.
      edgeVars: { ...vars, SUBMITTER_PRIVATE_KEY: SUBMITTER_KEY, PROVIDER_FEE_WEI: String(PROVIDER_FEE), DEVICE_STAKE_TTL_MS: '1000' },
    })
    const edgeEnv = { DEPINFER_URL: network.edge.url, DEPINFER_API_KEY: network.apiKey }
    // The CLI finds the contracts through the edge's /api/chain.
    expectSuccess(await runCli(['provider', 'register', '--device-key', deviceKeyPath], { ...edgeEnv, DEPINFER_PRIVATE_KEY: PROVIDER_KEY }))
    expectSuccess(await runCli(['escrow', 'deposit', '0.01'], { ...edgeEnv, DEPINFER_PRIVATE_KEY: PAYER_KEY }))
    const agent = network.startAgent({ deviceId: 'deployed-contracts-device', models: 'ppocr-cls', keyPath: deviceKeyPath })
    await agent.started
    const api = apiClient(network.edge.url, network.apiKey)
    await waitForModelReady(api, 'ppocr-cls')
    const published = await api.post(`/api/models?name=ppocr-cls&price_wei=${DEV_PRICE}&payout_address=${developer}`, new Uint8Array(readFileSync(bundledModelPath('ppocr-cls'))), {
      'Content-Type': 'application/octet-stream',
    })
    expect(published.status, published.text).toBe(201)

    const payerApi = apiClient(network.edge.url, await network.edge.createApiKey('deploy-payer', undefined, payer))
    const job = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, 48, 32], data: Array.from({ length: 3 * 48 * 32 }, (_, i) => (i % 89) / 89) }] }
    for (let i = 0n; i < JOBS; i++) {
      const response = await payerApi.post('/v2/models/ppocr-cls/infer', job)
      expect(response.status, response.text).toBe(200)
      expect(response.body.parameters).toMatchObject({ attestation_device: device.toLowerCase(), attestation_price_wei: String(DEV_PRICE + PROVIDER_FEE) })
    }
    await network.edge.runScheduled()
    const { batches } = (await api.get('/api/batches')).body as { batches: { status: string; count: number; root: Hex; txHash: Hex }[] }
    expect(batches).toMatchObject([{ status: 'confirmed', count: Number(JOBS) }])

    const read = chain()
    const escrow = vars.ESCROW_ADDRESS as Address
    expect(await read.readContract({ address: escrow, abi: escrowAbi, functionName: 'balanceOf', args: [payer] })).toBe(parseEther('0.01') - JOBS * (DEV_PRICE + PROVIDER_FEE))
    // Posted by the submitter the deploy named, on the registry it deployed.
    expect(await read.readContract({ address: vars.REGISTRY_ADDRESS as Address, abi: attestationRegistryAbi, functionName: 'isPosted', args: [batches[0]!.root] })).toBe(true)
    expect((await read.getTransactionReceipt({ hash: batches[0]!.txHash })).from).toBe(submitter.toLowerCase())

    expectSuccess(await runCli(['payouts', 'claim', '--account', developer], { ...edgeEnv, DEPINFER_PRIVATE_KEY: RELAYER_KEY }))
    expect(await read.getBalance({ address: developer })).toBe(JOBS * DEV_PRICE)
  })
})
