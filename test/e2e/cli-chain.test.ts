/**
 * The `depinfer` chain commands run as child processes against the real local network (anvil
 * with the contracts, the edge routing only to staked devices): a provider stakes and registers a
 * new device key with nothing but DEPINFER_PRIVATE_KEY and the edge's URL and key, and running it
 * again changes nothing; status shows the device active; the device then serves priced jobs, and
 * after the batch `payouts claim` pays exactly the claimable wei, sent by a relayer so the
 * earners' balances move by the claim alone; a second claim claims nothing; a payer deposits and
 * withdraws; the provider unstakes (its device gets no jobs meanwhile), cancels, unstakes for good
 * and unregisters the device. Every expected failure is one line.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Address, createPublicClient, createTestClient, getAddress, type Hex, http, parseEther, parseEventLogs } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { foundry } from 'viem/chains'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { escrowAbi, providerRegistryAbi } from '../../contracts/generated/index.js'
import { initDeviceKey } from '../../device-agent/src/keys/device-key.js'
import { bundledModelPath } from '../../device-agent/src/models/bundled.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { waitFor } from '../../scripts/local/wait-for.js'
import { exampleInferRequest } from '../../scripts/local/example-input.js'
import { apiClient, waitForModelReady, type ApiClient } from './support.js'
import { PACKED_CLI } from '../helpers/packed-cli.js'
import { runNode, type NodeRun as Run } from '../helpers/run-node.js'

/** As its tarball ships it: this suite runs ~40 commands (test/helpers/packed-cli.ts). */
const CLI = PACKED_CLI
/** anvil's well-known dev keys (public test keys): #8 the new provider, #2 a payer, #3 another provider, #9 a relayer. */
const PROVIDER_KEY: Hex = '0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97'
const PAYER_KEY: Hex = '0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a'
const OTHER_PROVIDER_KEY: Hex = '0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6'
const RELAYER_KEY: Hex = '0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6'
const provider = privateKeyToAccount(PROVIDER_KEY).address
const payer = privateKeyToAccount(PAYER_KEY).address
const relayer = privateKeyToAccount(RELAYER_KEY).address
const DEVICE_ID = 'cli-chain-device'
const DEV_PRICE = 1_000_003n
const PROVIDER_FEE = 7_001n
const PRICE = DEV_PRICE + PROVIDER_FEE
const JOBS = 3n
const CLS_SHAPE = [1, 3, 48, 32]
const clsJob = () => ({ inputs: [{ name: 'x', datatype: 'FP32', shape: CLS_SHAPE, data: Array.from({ length: 3 * 48 * 32 }, (_, i) => (i % 97) / 97) }] })

/** Runs the CLI with only the DEPINFER_* variables given (none leak in from the test's environment). */
const runCli = (args: string[], env: Record<string, string>) => runNode(CLI, args, env, { withoutDepinferEnv: true })

function expectOneLineError(run: Run, code: number, message: RegExp): void {
  expect(run.stderr, run.stderr).not.toMatch(/^\s+at /m) // no stack trace
  expect(run.stderr).not.toMatch(/usage:/)
  expect(run.stderr.trim().split('\n'), run.stderr).toHaveLength(1)
  expect(run.stderr.trim()).toMatch(message)
  expect(run.code).toBe(code)
}

function expectSuccess(run: Run): string {
  expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0)
  expect(run.stderr).toBe('')
  return run.stdout
}

const txHashes = (stdout: string) => [...stdout.matchAll(/: tx (0x[0-9a-f]{64}) \(block \d+\)/g)].map((m) => m[1] as Hex)

describe('depinfer provider / payouts / escrow on the local chain', () => {
  let network: LocalNetwork
  let api: ApiClient
  let chain: ReturnType<typeof createPublicClient>
  let registry: Address
  let escrow: Address
  let edgeEnv: Record<string, string>
  const keyDir = mkdtempSync(join(tmpdir(), 'depinfer-cli-chain-'))
  const deviceKeyPath = join(keyDir, 'device.key')
  /** Checksummed, as the CLI prints addresses. */
  const device = getAddress(initDeviceKey(deviceKeyPath).address)
  /** Earns the developer price: a fresh address, so its balance is exactly what it claims. */
  const developer = privateKeyToAccount(generatePrivateKey()).address

  const providerOf = (device: Address) => chain.readContract({ address: registry, abi: providerRegistryAbi, functionName: 'providerOf', args: [device] })
  const isActiveDevice = (device: Address) => chain.readContract({ address: registry, abi: providerRegistryAbi, functionName: 'isActiveDevice', args: [device] })
  const nonceOf = (address: Address) => chain.getTransactionCount({ address })

  beforeAll(async () => {
    network = await startLocalNetwork({
      build: false,
      chain: true,
      staking: true,
      // The only device is the one registered through the CLI, started once it is.
      agents: [],
      edgeVars: { PROVIDER_FEE_WEI: String(PROVIDER_FEE), DEVICE_STAKE_TTL_MS: '1000' },
    })
    registry = network.chain!.providerRegistryAddress
    escrow = getAddress(network.chain!.escrowAddress)
    chain = createPublicClient({ chain: foundry, transport: http(network.chain!.rpcUrl) })
    api = apiClient(network.edge.url, network.apiKey)
    // What a user of `npm start` has: the edge's URL and an API key, nothing about the chain.
    edgeEnv = { DEPINFER_URL: network.edge.url, DEPINFER_API_KEY: network.apiKey }
  })
  afterAll(async () => {
    await network?.close()
    rmSync(keyDir, { recursive: true, force: true })
  })

  it('refuses in one line: a missing or bad private key, a device key it cannot read or that others can, a device of another provider', async () => {
    const register = (env: Record<string, string>, path = deviceKeyPath) => runCli(['provider', 'register', '--device-key', path], { ...edgeEnv, ...env })
    const missing = join(keyDir, 'missing.key')
    const open = join(keyDir, 'open.key')
    writeFileSync(open, readFileSync(deviceKeyPath))
    chmodSync(open, 0o644)
    // Run at once (each CLI start takes seconds): none sends anything (checked below), so none
    // can change what another finds.
    const refusals: [Promise<Run>, number, RegExp][] = [
      [register({}), 2, /^set DEPINFER_PRIVATE_KEY to the private key of the provider's account \(0x and 64 hex digits\)/],
      [register({ DEPINFER_PRIVATE_KEY: '0x1234' }), 2, /^DEPINFER_PRIVATE_KEY must be a private key: 0x and 64 hex digits$/],
      [register({ DEPINFER_PRIVATE_KEY: PROVIDER_KEY }, missing), 1, new RegExp(`^cannot read device key ${missing} .*no such file or directory`)],
      [register({ DEPINFER_PRIVATE_KEY: PROVIDER_KEY }, open), 1, new RegExp(`^device key ${open} is readable by others \\(mode 644\\); run chmod 600`)],
      [runCli(['provider', 'register', '--device-key', deviceKeyPath, '--stake', '0.05'], { ...edgeEnv, DEPINFER_PRIVATE_KEY: PROVIDER_KEY }), 2, /^--stake 0\.05 ETH is below the registry's minimum stake of 0\.1 ETH$/],
      [runCli(['payouts', 'claim'], edgeEnv), 2, /^set DEPINFER_PRIVATE_KEY to the private key of the account sending the claim/],
      [runCli(['provider', 'status'], edgeEnv), 2, /^provider status needs --address <0x…>, or DEPINFER_PRIVATE_KEY/],
      [runCli(['escrow', 'withdraw', '--amount', '1.5.0'], { ...edgeEnv, DEPINFER_PRIVATE_KEY: PAYER_KEY }), 2, /^--amount must be an amount of ETH above 0/],
    ]
    for (const [run, code, message] of refusals) expectOneLineError(await run, code, message)
    // Nothing was sent by any of them.
    expect(await nonceOf(provider)).toBe(0)
    expect(await providerOf(device)).toBe('0x0000000000000000000000000000000000000000')
  })

  it('stakes and registers a new device key with only the edge URL, API key and DEPINFER_PRIVATE_KEY; again, it changes nothing', async () => {
    const stdout = expectSuccess(await runCli(['provider', 'register', '--device-key', deviceKeyPath, '--stake', '0.25'], { ...edgeEnv, DEPINFER_PRIVATE_KEY: PROVIDER_KEY }))
    expect(stdout).toMatch(/^stake of 0\.25 ETH \(stake 0 ETH → 0\.25 ETH\): tx 0x[0-9a-f]{64} \(block \d+\)$/m)
    expect(stdout).toMatch(new RegExp(`^registration of device ${device}: tx 0x[0-9a-f]{64} \\(block \\d+\\)$`, 'm'))
    expect(stdout).toContain(`provider ${provider}: stake 0.25 ETH (minimum 0.1 ETH), 1 device(s), in good standing`)
    expect(stdout).toContain(`device ${device}: registered, active`)
    const hashes = txHashes(stdout)
    expect(hashes).toHaveLength(2)
    for (const hash of hashes) expect(await chain.getTransactionReceipt({ hash })).toMatchObject({ status: 'success', from: provider.toLowerCase() })

    expect(await providerOf(device)).toBe(provider)
    expect(await isActiveDevice(device)).toBe(true)
    expect(await chain.readContract({ address: registry, abi: providerRegistryAbi, functionName: 'getProvider', args: [provider] })).toMatchObject({
      stake: parseEther('0.25'),
      unstakeAmount: 0n,
      deviceCount: 1,
    })

    const nonce = await nonceOf(provider)
    // Both at once: neither sends anything (checked below).
    const [againRun, otherRun] = await Promise.all([
      runCli(['provider', 'register', '--device-key', deviceKeyPath], { ...edgeEnv, DEPINFER_PRIVATE_KEY: PROVIDER_KEY }),
      runCli(['provider', 'register', '--device-key', deviceKeyPath], { ...edgeEnv, DEPINFER_PRIVATE_KEY: OTHER_PROVIDER_KEY }),
    ])
    const again = expectSuccess(againRun)
    expect(again).toContain('stake is already 0.25 ETH, at least 0.1 ETH (the minimum): nothing staked')
    expect(again).toContain(`device ${device} is already registered to this provider: nothing to register`)
    expect(txHashes(again)).toEqual([])
    expect(await nonceOf(provider)).toBe(nonce)

    // Another provider cannot take it, and stakes nothing trying.
    const other = privateKeyToAccount(OTHER_PROVIDER_KEY).address
    expectOneLineError(otherRun, 1, new RegExp(`^device ${device} is registered to provider ${provider}, not ${other}: that provider must unregisterDevice it first$`))
    expect(await nonceOf(other)).toBe(0)
  })

  it('shows the provider\'s stake and its device as active, by address or by its key', async () => {
    // Read-only, so run at once.
    const [byAddress, byKey, neverStaked] = await Promise.all([
      runCli(['provider', 'status', '--address', provider], edgeEnv),
      runCli(['provider', 'status'], { ...edgeEnv, DEPINFER_PRIVATE_KEY: PROVIDER_KEY }),
      runCli(['provider', 'status', '--address', relayer], edgeEnv),
    ])
    for (const run of [byAddress, byKey]) {
      const stdout = expectSuccess(run)
      expect(stdout).toContain(`provider ${provider}: stake 0.25 ETH (minimum 0.1 ETH), 1 device(s), in good standing`)
      expect(stdout).toContain(`  device ${device}: registered, active: the edge routes jobs to it`)
    }
    // A provider that never staked.
    const stdout = expectSuccess(neverStaked)
    expect(stdout).toContain(`provider ${relayer}: stake 0 ETH (minimum 0.1 ETH), 0 device(s), NOT in good standing: the stake is below the minimum`)
  })

  it('serves priced jobs from the registered device; payouts claim pays each earner exactly its claimable wei, once', async () => {
    const agent = network.startAgent({ deviceId: DEVICE_ID, models: 'ppocr-cls', keyPath: deviceKeyPath, stake: false })
    await agent.started
    await waitForModelReady(api, 'ppocr-cls')

    // The payer funds its Escrow balance through the CLI too.
    const deposited = parseEther('0.01')
    const deposit = expectSuccess(await runCli(['escrow', 'deposit', '0.01'], { ...edgeEnv, DEPINFER_PRIVATE_KEY: PAYER_KEY }))
    expect(deposit).toMatch(/^deposit of 0\.01 ETH: tx 0x[0-9a-f]{64}/m)
    expect(deposit).toContain(`${payer} in Escrow ${escrow}: balance 0.01 ETH, available for jobs 0.01 ETH`)
    // The address came from the edge: the CLI says so, and how to pin it.
    expect(deposit).toMatch(/Escrow 0x[0-9a-fA-F]{40} as the edge's \/api\/chain names it; set DEPINFER_ESCROW_ADDRESS/)
    expect(await chain.readContract({ address: escrow, abi: escrowAbi, functionName: 'balanceOf', args: [payer] })).toBe(deposited)

    const bytes = readFileSync(bundledModelPath('ppocr-cls'))
    const published = await api.post(`/api/models?name=ppocr-cls&price_wei=${DEV_PRICE}&payout_address=${developer}`, new Uint8Array(bytes), {
      'Content-Type': 'application/octet-stream',
    })
    expect(published.status, published.text).toBe(201)
    const payerApi = apiClient(network.edge.url, await network.edge.createApiKey('cli-chain-payer', undefined, payer))
    for (let i = 0n; i < JOBS; i++) {
      const response = await payerApi.post('/v2/models/ppocr-cls/infer', clsJob())
      expect(response.status, response.text).toBe(200)
      expect(response.body.parameters).toMatchObject({ device_id: DEVICE_ID, attestation_device: device.toLowerCase(), attestation_price_wei: String(PRICE) })
    }
    await network.edge.runScheduled()
    const { batches } = (await api.get('/api/batches')).body as { batches: { status: string; count: number }[] }
    expect(batches).toMatchObject([{ status: 'confirmed', count: Number(JOBS) }])

    // The registered device's fees go to its provider, the price to the developer.
    const show = expectSuccess(await runCli(['payouts', 'show', provider], edgeEnv))
    expect(show).toMatch(new RegExp(`^${provider}: earned ${JOBS * PROVIDER_FEE} wei \\(.* ETH\\) in all, under payout root 0x[0-9a-f]{64} \\(settled in tx 0x[0-9a-f]{64}\\)$`, 'm'))
    expect(show).toContain(`claimed 0 wei (0 ETH), claimable ${JOBS * PROVIDER_FEE} wei`)

    for (const [earner, earned] of [
      [provider, JOBS * PROVIDER_FEE],
      [developer, JOBS * DEV_PRICE],
    ] as const) {
      const before = await chain.getBalance({ address: earner })
      // Sent by the relayer: the earner's balance moves by the claim alone.
      const stdout = expectSuccess(await runCli(['payouts', 'claim', '--account', earner], { ...edgeEnv, DEPINFER_PRIVATE_KEY: RELAYER_KEY }))
      expect(stdout).toContain(`claimed ${earned} wei (`)
      expect(stdout).toContain(`paid to ${earner}; it has now claimed ${earned} of the ${earned} wei it has earned`)
      const [hash] = txHashes(stdout)
      const receipt = await chain.getTransactionReceipt({ hash: hash! })
      expect(receipt.from).toBe(relayer.toLowerCase())
      expect(parseEventLogs({ abi: escrowAbi, eventName: 'Claimed', logs: receipt.logs })[0]?.args).toMatchObject({ account: earner, amount: earned })
      expect(await chain.getBalance({ address: earner })).toBe(before + earned)
      expect(await chain.readContract({ address: escrow, abi: escrowAbi, functionName: 'claimed', args: [earner] })).toBe(earned)
    }

    // Something else answering 404 (a wrong host or proxy in DEPINFER_URL, passing the chain
    // settings through) is an error, not "nothing to claim": a cron job claiming would never claim.
    const elsewhere = createServer((request, response) => {
      if (request.url !== '/api/chain') return void response.writeHead(404).end()
      void fetch(new URL('/api/chain', network.edge.url), { headers: { Authorization: request.headers.authorization ?? '' } })
        .then(async (answer) => response.writeHead(answer.status, { 'Content-Type': 'application/json' }).end(await answer.text()))
    })
    await new Promise<void>((resolve) => elsewhere.listen(0, '127.0.0.1', resolve))
    const nonce = await nonceOf(provider)
    const balance = await chain.getBalance({ address: provider })
    try {
      const url = `http://127.0.0.1:${(elsewhere.address() as AddressInfo).port}`
      const elsewhereEnv = { ...edgeEnv, DEPINFER_URL: url, DEPINFER_PRIVATE_KEY: PROVIDER_KEY }
      // All at once: none of them sends anything (the provider's nonce and balance are checked below).
      const [again, show, neverEarned, showElsewhere, claimElsewhere] = await Promise.all([
        runCli(['payouts', 'claim'], { ...edgeEnv, DEPINFER_PRIVATE_KEY: PROVIDER_KEY }),
        runCli(['payouts', 'show', provider], edgeEnv),
        runCli(['payouts', 'claim'], { ...edgeEnv, DEPINFER_PRIVATE_KEY: RELAYER_KEY }),
        runCli(['payouts', 'show', provider], elsewhereEnv),
        runCli(['payouts', 'claim'], elsewhereEnv),
      ])
      // Again, from the provider's own key (its own account by default): nothing to claim, nothing sent.
      expect(expectSuccess(again)).toMatch(new RegExp(`^nothing to claim for ${provider}: all ${JOBS * PROVIDER_FEE} wei .* is claimed$`, 'm'))
      expect(await nonceOf(provider)).toBe(nonce)
      expect(await chain.getBalance({ address: provider })).toBe(balance)
      expect(expectSuccess(show)).toContain(`claimed ${JOBS * PROVIDER_FEE} wei`)
      // An account that never earned.
      expect(expectSuccess(neverEarned)).toBe(`${relayer} has no earnings in a settled batch yet: nothing to claim\n`)
      for (const run of [showElsewhere, claimElsewhere]) {
        expectOneLineError(run, 1, /^reading the payouts of 0x[0-9a-fA-F]{40} failed \(404\): an empty answer \(is DEPINFER_URL the depinfer edge\?\)$/)
      }
    } finally {
      elsewhere.close()
    }
  })

  it('withdraws the payer\'s remaining balance: request (or cancel one), refused before the delay, then paid', async () => {
    const env = { ...edgeEnv, DEPINFER_PRIVATE_KEY: PAYER_KEY }
    const remaining = parseEther('0.01') - JOBS * PRICE
    expect(await chain.readContract({ address: escrow, abi: escrowAbi, functionName: 'balanceOf', args: [payer] })).toBe(remaining)
    // A request taken back: the whole balance is available for jobs again.
    expectSuccess(await runCli(['escrow', 'withdraw', '--amount', '0.001'], env))
    expect(expectSuccess(await runCli(['escrow', 'cancel-withdrawal'], env))).toContain(`cancelled the withdrawal of 0.001 ETH`)
    expect((await chain.readContract({ address: escrow, abi: escrowAbi, functionName: 'withdrawalRequest', args: [payer] })).amount).toBe(0n)
    expect(expectSuccess(await runCli(['escrow', 'cancel-withdrawal'], env))).toMatch(/^nothing to cancel: /)
    const requested = expectSuccess(await runCli(['escrow', 'withdraw'], env))
    expect(requested).toContain('withdrawal request of ')
    expect(requested).toMatch(/run `depinfer escrow withdraw` again from \S+ \(in 24 h 0 min, by the chain's clock\)/)
    // The edge's account view says when, in Unix ms like every time in its API: a day after the request's block.
    const [requestHash] = txHashes(requested)
    const requestBlock = await chain.getBlock({ blockNumber: (await chain.getTransactionReceipt({ hash: requestHash! })).blockNumber })
    const withdrawer = apiClient(network.edge.url, await network.edge.createApiKey('cli-chain-withdrawer', undefined, payer))
    const view = await withdrawer.get('/api/account')
    expect(view.body.withdrawal).toEqual({ amountWei: String(remaining), availableAt: Number(requestBlock.timestamp + 24n * 3600n) * 1000 })
    // Its jobs are refused, saying why: the balance is there, the pending withdrawal holds it.
    const refused = await withdrawer.post('/v2/models/ppocr-cls/infer', exampleInferRequest(3))
    expect(refused.status, refused.text).toBe(402)
    expect(refused.body.detail).toContain(`A withdrawal of ${remaining} wei is pending and not available to jobs: cancel it (depinfer escrow cancel-withdrawal`)
    expectOneLineError(await runCli(['escrow', 'withdraw'], env), 1, /^the withdrawal of .* ETH is not available yet: run this again from /)

    // A day later by the chain's clock (what the Escrow compares with), in a new block.
    const anvil = createTestClient({ chain: foundry, mode: 'anvil', transport: http(network.chain!.rpcUrl) })
    await anvil.increaseTime({ seconds: 24 * 3600 })
    await anvil.mine({ blocks: 1 })
    const before = await chain.getBalance({ address: payer })
    const stdout = expectSuccess(await runCli(['escrow', 'withdraw'], env))
    const [hash] = txHashes(stdout)
    const receipt = await chain.getTransactionReceipt({ hash: hash! })
    // The payer sent it: its balance grew by the withdrawal minus the gas it paid.
    expect(await chain.getBalance({ address: payer })).toBe(before + remaining - receipt.gasUsed * receipt.effectiveGasPrice)
    expect(stdout).toContain(`${payer} in Escrow ${escrow}: balance 0 ETH, available for jobs 0 ETH`)
    expect(await chain.readContract({ address: escrow, abi: escrowAbi, functionName: 'balanceOf', args: [payer] })).toBe(0n)
  })

  it('unstakes: the devices get no jobs while it is pending, cancel brings them back, the stake comes back after the delay; unregister frees the device', async () => {
    const env = { ...edgeEnv, DEPINFER_PRIVATE_KEY: PROVIDER_KEY }
    const stake = parseEther('0.25')
    const anvil = createTestClient({ chain: foundry, mode: 'anvil', transport: http(network.chain!.rpcUrl) })
    const routable = async () => (await api.get('/v2/models/ppocr-cls/ready')).status === 200
    const getProvider = () => chain.readContract({ address: registry, abi: providerRegistryAbi, functionName: 'getProvider', args: [provider] })
    expect(await routable()).toBe(true)

    expectOneLineError(await runCli(['provider', 'unstake', '--amount', '0.3'], env), 2, new RegExp(`^--amount 0\\.3 ETH is more than the stake of ${provider}, 0\\.25 ETH$`))
    const requested = expectSuccess(await runCli(['provider', 'unstake'], env))
    expect(requested).toMatch(/^unstake request of 0\.25 ETH: tx 0x[0-9a-f]{64} \(block \d+\)$/m)
    expect(requested).toMatch(/the edge sends this provider's 1 device\(s\) no more jobs until it is done or cancelled .* run `depinfer provider unstake` again from \S+ \(in 24 h 0 min, by the chain's clock\)/)
    expect(await isActiveDevice(device)).toBe(false)
    // The edge stops routing to the device once its stake answer expires (DEVICE_STAKE_TTL_MS 1 s);
    // meanwhile, the unstake asked for too early (it sends nothing).
    const [early] = await Promise.all([
      runCli(['provider', 'unstake'], env),
      waitFor('the edge to stop routing to the unstaking device', async () => ((await routable()) ? undefined : true), 15_000, 100),
    ])
    expectOneLineError(early, 1, /^the unstake of 0\.25 ETH is not available yet: run this again from \S+ \(in 24 h 0 min, by the chain's clock\)$/)

    const cancelled = expectSuccess(await runCli(['provider', 'cancel-unstake'], env))
    expect(cancelled).toMatch(/^cancellation of the unstake of 0\.25 ETH: tx 0x[0-9a-f]{64}/m)
    expect(cancelled).toContain(`provider ${provider}: stake 0.25 ETH (minimum 0.1 ETH), 1 device(s), in good standing`)
    expect(await isActiveDevice(device)).toBe(true)
    const nonce = await nonceOf(provider)
    // Cancelled again while the edge comes back to the device: nothing to cancel, nothing sent.
    const [again] = await Promise.all([
      runCli(['provider', 'cancel-unstake'], env),
      waitFor('the edge to route to the device again', async () => ((await routable()) ? true : undefined), 15_000, 100),
    ])
    expect(expectSuccess(again)).toBe(`no unstake of ${provider} is pending: nothing to cancel\n`)
    expect(await nonceOf(provider)).toBe(nonce)

    // Leaving for good: requested again, paid a day later by the chain's clock, to the wei.
    expectSuccess(await runCli(['provider', 'unstake'], env))
    await anvil.increaseTime({ seconds: 24 * 3600 })
    await anvil.mine({ blocks: 1 })
    const before = await chain.getBalance({ address: provider })
    const stdout = expectSuccess(await runCli(['provider', 'unstake'], env))
    expect(stdout).toMatch(/^unstake: tx 0x[0-9a-f]{64}/m)
    expect(stdout).toContain(`unstaked 0.25 ETH to ${provider}\n`)
    expect(stdout).toContain(`provider ${provider}: stake 0 ETH (minimum 0.1 ETH), 1 device(s), NOT in good standing: the stake is below the minimum`)
    const [hash] = txHashes(stdout)
    const receipt = await chain.getTransactionReceipt({ hash: hash! })
    expect(await chain.getBalance({ address: provider })).toBe(before + stake - receipt.gasUsed * receipt.effectiveGasPrice)
    expect(await getProvider()).toMatchObject({ stake: 0n, unstakeAmount: 0n, deviceCount: 1 })
    expect(expectSuccess(await runCli(['provider', 'unstake'], env))).toBe(`nothing to unstake: ${provider} has no stake in ProviderRegistry ${getAddress(registry)}\n`)

    // Unregistering frees the device: by its key file or its address, only by its provider.
    // The refusals at once: none sends anything (the device is still registered after them).
    const [noDevice, both, byOther] = await Promise.all([
      runCli(['provider', 'unregister'], env),
      runCli(['provider', 'unregister', device, '--device-key', deviceKeyPath], env),
      runCli(['provider', 'unregister', device], { ...edgeEnv, DEPINFER_PRIVATE_KEY: OTHER_PROVIDER_KEY }),
    ])
    for (const run of [noDevice, both]) {
      // A usage error: its line, then the usage.
      expect(run.code).toBe(2)
      expect(run.stderr).toMatch(/^provider unregister needs the device: its address .* or --device-key <path>, not both\n\nusage:/)
    }
    const other = privateKeyToAccount(OTHER_PROVIDER_KEY).address
    expectOneLineError(byOther, 1, new RegExp(`^device ${device} is registered to provider ${provider}, not ${other}: only that provider can unregister it$`))
    expect(await providerOf(device)).toBe(provider)
    const unregistered = expectSuccess(await runCli(['provider', 'unregister', '--device-key', deviceKeyPath], env))
    expect(unregistered).toMatch(new RegExp(`^unregistration of device ${device}: tx 0x[0-9a-f]{64}`, 'm'))
    expect(unregistered).toContain(`  device ${device}: not registered`)
    expect(await providerOf(device)).toBe('0x0000000000000000000000000000000000000000')
    expect(await getProvider()).toMatchObject({ deviceCount: 0 })
    expect(expectSuccess(await runCli(['provider', 'unregister', device], env))).toBe(`device ${device} is not registered: nothing to unregister\n`)
  })
})
