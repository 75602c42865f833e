/**
 * Pay per inference end to end on the real local EVM: payers deposit into the Escrow, API keys
 * are tied to them, each priced job is reserved before it is sent (402 and nothing on the wire
 * when it cannot be), the device signs the price, the scheduled tick posts the attestation batch
 * and settles it on the Escrow with a cumulative payout root, and the developer, the device and
 * the protocol claim with proofs from the edge. Accounting is checked to the wei, on-chain.
 */
import { readFileSync } from 'node:fs'
import mqtt from 'mqtt'
import {
  type Address,
  BaseError,
  ContractFunctionRevertedError,
  createPublicClient,
  createTestClient,
  createWalletClient,
  type Hex,
  http,
  parseEther,
  parseEventLogs,
} from 'viem'
import { generatePrivateKey, mnemonicToAccount, privateKeyToAccount, type HDAccount } from 'viem/accounts'
import { foundry } from 'viem/chains'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { escrowAbi } from '../../contracts/generated/index.js'
import { loadDeviceKey } from '../../device-agent/src/keys/device-key.js'
import { bundledModelPath } from '../../device-agent/src/models/bundled.js'
import { localDeviceKeyPath } from '../../scripts/local/agent-process.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { waitFor } from '../../scripts/local/wait-for.js'
import { gatewayClientId, parseDeviceTopic } from '../../shared/src/index.js'
import { startRpcProxy, type RpcProxy } from '../helpers/rpc-proxy.js'
import { apiClient, waitForModelReady, type ApiClient, type ApiResponse } from './support.js'

const DEVICE = 'paid-device'
/** The developer's price of ppocr-cls (odd, so the protocol fee rounds down). */
const DEV_PRICE = 1_000_003n
const PROVIDER_FEE = 7_000n
const PROTOCOL_BPS = 250n
/** What a payer pays per ppocr-cls job, and per ppocr-det job (not published: fee only). */
const PRICE = DEV_PRICE + PROVIDER_FEE
const DET_PRICE = PROVIDER_FEE
const PROTOCOL_CUT = (DEV_PRICE * PROTOCOL_BPS) / 10_000n // 25_000 (25_000.075 rounded down)
const DEV_SHARE = DEV_PRICE - PROTOCOL_CUT
const CLS_SHAPE = [1, 3, 48, 32]
/** anvil's well-known dev mnemonic: accounts funded with 10,000 ETH each. */
const ANVIL_MNEMONIC = 'test test test test test test test test test test test junk'
const devAccount = (index: number) => mnemonicToAccount(ANVIL_MNEMONIC, { addressIndex: index })

/** Runs `fn`, expecting it to revert with the Escrow's custom error `errorName`. */
async function expectRevert(fn: () => Promise<unknown>, errorName: string): Promise<void> {
  const caught = await fn().then(() => undefined, (error: unknown) => error)
  expect(caught, `expected revert ${errorName}`).toBeInstanceOf(BaseError)
  const revert = (caught as BaseError).walk((e) => e instanceof ContractFunctionRevertedError)
  expect(revert, `expected revert ${errorName}, got ${String(caught)}`).toBeInstanceOf(ContractFunctionRevertedError)
  expect((revert as ContractFunctionRevertedError).data?.errorName).toBe(errorName)
}

const clsJob = () => ({
  inputs: [{ name: 'x', datatype: 'FP32', shape: CLS_SHAPE, data: Array.from({ length: 3 * 48 * 32 }, () => Math.round(Math.random() * 1e4) / 1e4) }],
})
const detJob = (side: number) => ({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, side, side], data: new Array(3 * side * side).fill(0.5) }] })

interface AccountView {
  payer: string | null
  balanceWei: string
  availableWei: string
  reserved: { jobs: number; wei: string }
  chargedUnsettled: { jobs: number; wei: string }
}
interface PayoutView {
  account: Address
  cumulative: string
  claimed?: string
  claimable?: string
  payoutRoot: Hex
  proof: Hex[]
}

describe('pay per inference on the local chain', () => {
  let network: LocalNetwork
  let rpc: RpcProxy
  let observer: mqtt.MqttClient
  let escrow: Address
  let deviceAddress: Address
  let publicClient: ReturnType<typeof createPublicClient>
  /** Jobs the broker carried to any device (what "nothing was sent" is checked against). */
  let jobsOnWire = 0
  const developer = privateKeyToAccount(generatePrivateKey()).address
  const protocol = privateKeyToAccount(generatePrivateKey()).address
  /** Submits claims for others: the earners' ETH balances then move by exactly what they claim. */
  const relayer = devAccount(9)
  const payers = { a: devAccount(2), b: devAccount(3), c: devAccount(4), d: devAccount(5), e: devAccount(6) }
  const deposits = new Map<Address, bigint>()
  /** Wei of attested jobs per payer, summed from the answers' attestations. */
  const spent = new Map<Address, bigint>()
  const keys = {} as Record<keyof typeof payers, ApiClient>
  let noPayer: ApiClient

  const wallet = (account: HDAccount) => createWalletClient({ account, chain: foundry, transport: http(network.chain!.rpcUrl) })
  const deposit = async (account: HDAccount, wei: bigint) => {
    const hash = await wallet(account).writeContract({ address: escrow, abi: escrowAbi, functionName: 'deposit', value: wei })
    expect((await publicClient.waitForTransactionReceipt({ hash })).status).toBe('success')
    deposits.set(account.address, (deposits.get(account.address) ?? 0n) + wei)
  }
  const balanceOf = (payer: Address) => publicClient.readContract({ address: escrow, abi: escrowAbi, functionName: 'balanceOf', args: [payer] })
  const settledIn = (root: Hex) => publicClient.readContract({ address: escrow, abi: escrowAbi, functionName: 'settledIn', args: [root] })
  const escrowTotal = (functionName: 'totalDebited' | 'totalClaimed' | 'totalBalances' | 'epoch') =>
    publicClient.readContract({ address: escrow, abi: escrowAbi, functionName })
  const account = async (api: ApiClient) => {
    const response = await api.get('/api/account')
    expect(response.status, response.text).toBe(200)
    return response.body as unknown as AccountView
  }
  const payout = async (address: Address) => {
    const response = await noPayer.get(`/api/payouts/${address}`)
    expect(response.status, response.text).toBe(200)
    return response.body as unknown as PayoutView
  }
  /** An inference that must succeed; records what its payer was charged (the attested price). */
  const paidInfer = async (payer: keyof typeof payers, path: string, body: unknown, expectedPrice: bigint) => {
    const response = await keys[payer].post(path, body)
    expect(response.status, response.text).toBe(200)
    const price = BigInt((response.body.parameters as { attestation_price_wei: string }).attestation_price_wei)
    expect(price).toBe(expectedPrice)
    const address = payers[payer].address
    spent.set(address, (spent.get(address) ?? 0n) + price)
    return response
  }
  const expectPaymentRequired = (response: ApiResponse, field: string) => {
    expect(response.status, response.text).toBe(402)
    expect(response.headers.get('content-type')).toMatch(/application\/problem\+json/)
    expect(response.body).toMatchObject({ type: 'urn:depinfer:problem:payment-required', status: 402, field })
  }
  const wireQuiet = async () => {
    // A job would be on the wire before the answer came back; give the observer a moment anyway.
    await new Promise((resolve) => setTimeout(resolve, 300))
    return jobsOnWire
  }
  const claim = async (address: Address, view: { cumulative: string; payoutRoot: Hex; proof: Hex[] }) => {
    const hash = await wallet(relayer).writeContract({
      address: escrow,
      abi: escrowAbi,
      functionName: 'claim',
      args: [address, BigInt(view.cumulative), view.payoutRoot, view.proof],
    })
    const receipt = await publicClient.waitForTransactionReceipt({ hash })
    expect(receipt.status).toBe('success')
    const [event] = parseEventLogs({ abi: escrowAbi, eventName: 'Claimed', logs: receipt.logs })
    return event!.args.amount
  }

  beforeAll(async () => {
    rpc = await startRpcProxy()
    network = await startLocalNetwork({
      build: false,
      chain: true,
      agents: [{ deviceId: DEVICE, models: 'ppocr-cls,ppocr-det' }],
      edgeVars: {
        // The edge reads balances and sends transactions through the fault-injecting proxy.
        CHAIN_SUBMIT_RPC_URL: rpc.url,
        PROVIDER_FEE_WEI: String(PROVIDER_FEE),
        PROTOCOL_FEE_BPS: String(PROTOCOL_BPS),
        PROTOCOL_FEE_ADDRESS: protocol,
        BATCH_CONFIRM_TIMEOUT_MS: '10000',
      },
    })
    rpc.target = network.chain!.rpcUrl
    escrow = network.chain!.escrowAddress
    publicClient = createPublicClient({ chain: foundry, transport: http(network.chain!.rpcUrl) })
    noPayer = apiClient(network.edge.url, network.apiKey)
    for (const [name, payer] of Object.entries(payers) as [keyof typeof payers, HDAccount][]) {
      keys[name] = apiClient(network.edge.url, await network.edge.createApiKey(`payer-${name}`, undefined, payer.address))
    }
    deviceAddress = (await loadDeviceKey(localDeviceKeyPath(DEVICE))).address as Address
    observer = await mqtt.connectAsync(network.broker.tcpUrl, { clientId: gatewayClientId('payments-observer'), reconnectPeriod: 200 })
    observer.on('message', (topic) => {
      if (parseDeviceTopic(topic)?.kind === 'jobs') jobsOnWire++
    })
    await observer.subscribeAsync('depinfer/v1/devices/+/jobs', { qos: 1 })
    await waitForModelReady(noPayer, 'ppocr-cls')
    await waitForModelReady(noPayer, 'ppocr-det')
  })
  afterAll(async () => {
    await observer?.endAsync(true)
    await network?.close()
    await rpc?.close()
  })

  it('publishes the served ppocr-cls file with a price; /api/chain names the Escrow', async () => {
    const bytes = readFileSync(bundledModelPath('ppocr-cls'))
    const published = await noPayer.post(`/api/models?name=ppocr-cls&price_wei=${DEV_PRICE}&payout_address=${developer}`, new Uint8Array(bytes), {
      'Content-Type': 'application/octet-stream',
    })
    expect(published.status, published.text).toBe(201)
    // The same name, version and file the bundled agent serves: the published price applies.
    const served = await noPayer.get('/v2/models/ppocr-cls')
    expect(published.body).toMatchObject({ name: 'ppocr-cls', version: '1', sha256: (served.body as { sha256: string }).sha256 })
    const chainInfo = await noPayer.get('/api/chain')
    expect(chainInfo.body).toMatchObject({ contracts: { escrow } })
  })

  it('refuses a key without a payer, or without funds, with 402 and sends nothing to a device', async () => {
    await deposit(payers.b, PRICE - 1n) // one wei short of one job
    const before = { wire: await wireQuiet(), attestations: ((await noPayer.get('/api/batches')).body.attestations as { total: number }).total }

    expectPaymentRequired(await noPayer.post('/v2/models/ppocr-cls/infer', clsJob()), 'Authorization')
    // The provider fee prices even an unpublished model.
    expectPaymentRequired(await noPayer.post('/v2/models/ppocr-det/infer', detJob(32)), 'Authorization')
    const short = await keys.b.post('/v2/models/ppocr-cls/infer', clsJob())
    expectPaymentRequired(short, 'payer')
    expect(short.body.detail).toContain(`costs ${PRICE} wei`)
    expect(short.body.detail).toContain(`has ${PRICE - 1n} wei available`)
    expectPaymentRequired(await keys.e.post('/v2/models/ppocr-cls/infer', clsJob()), 'payer') // never deposited
    // A request the model cannot take is a 400 naming the field, whether or not anyone pays.
    const wrongShape = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, 48], data: new Array(3 * 48).fill(0.5) }] }
    for (const client of [keys.e, noPayer]) {
      expect((await client.post('/v2/models/ppocr-cls/infer', wrongShape)).body).toMatchObject({ status: 400, field: 'inputs[0].shape' })
    }

    expect(await wireQuiet()).toBe(before.wire)
    expect(((await noPayer.get('/api/batches')).body.attestations as { total: number }).total).toBe(before.attestations)
    expect(await account(keys.b)).toMatchObject({ balanceWei: String(PRICE - 1n), reserved: { jobs: 0, wei: '0' }, chargedUnsettled: { jobs: 0, wei: '0' } })
    // Free requests need no payer: metadata still works with the same key.
    expect((await noPayer.get('/v2/models/ppocr-cls')).status).toBe(200)
  })

  it('answers 503 with Retry-After when the balance cannot be read, and sends nothing', async () => {
    const wire = await wireQuiet()
    rpc.mode = 'down'
    try {
      const response = await keys.c.post('/v2/models/ppocr-cls/infer', clsJob())
      expect(response.status, response.text).toBe(503)
      expect(response.body).toMatchObject({ type: 'urn:depinfer:problem:payments-unavailable' })
      expect(response.headers.get('retry-after')).toBe('2')
    } finally {
      rpc.mode = 'pass'
    }
    expect(await wireQuiet()).toBe(wire)
  })

  it('reserves atomically: concurrent jobs of one payer never hold more than its balance', async () => {
    await deposit(payers.d, 3n * PRICE)
    const responses = await Promise.all(Array.from({ length: 6 }, () => keys.d.post('/v2/models/ppocr-cls/infer', clsJob())))
    expect(responses.map((r) => r.status).sort()).toEqual([200, 200, 200, 402, 402, 402])
    for (const r of responses.filter((r) => r.status === 200)) {
      expect((r.body.parameters as { attestation_price_wei: string }).attestation_price_wei).toBe(String(PRICE))
    }
    spent.set(payers.d.address, 3n * PRICE)
    expect(await account(keys.d)).toMatchObject({ reserved: { jobs: 0, wei: '0' }, chargedUnsettled: { jobs: 3, wei: String(3n * PRICE) } })
  })

  it('charges each attested job its price: the device signs developer price + provider fee', async () => {
    await deposit(payers.a, parseEther('1'))
    await deposit(payers.c, parseEther('0.5'))
    for (let i = 0; i < 4; i++) await paidInfer('a', '/v2/models/ppocr-cls/infer', clsJob(), PRICE)
    await Promise.all([
      ...Array.from({ length: 8 }, () => paidInfer('a', '/v2/models/ppocr-cls/infer', clsJob(), PRICE)),
      ...Array.from({ length: 3 }, () => paidInfer('c', '/v2/models/ppocr-cls/versions/1/infer', clsJob(), PRICE)),
    ])
    // Not published: the provider fee alone.
    await paidInfer('a', '/v2/models/ppocr-det/infer', detJob(32), DET_PRICE)
    expect(await account(keys.a)).toMatchObject({
      balanceWei: String(parseEther('1')),
      reserved: { jobs: 0, wei: '0' },
      chargedUnsettled: { jobs: 13, wei: String(12n * PRICE + DET_PRICE) },
    })
  })

  it('releases the reservation of a job that fails (rejected input, unknown version)', async () => {
    const held = await account(keys.a)
    const rejected = await keys.a.post('/v2/models/ppocr-det/infer', detJob(40)) // not a multiple of 32
    expect(rejected.status, rejected.text).toBe(422)
    const unknown = await keys.a.post('/v2/models/ppocr-cls/versions/9/infer', clsJob())
    expect(unknown.status, unknown.text).toBe(404)
    expect(await account(keys.a)).toMatchObject({ reserved: { jobs: 0, wei: '0' }, chargedUnsettled: held.chargedUnsettled })
  })

  it('settles the batch on-chain: each payer debited exactly its jobs, abandoned holds released', async () => {
    // A reservation left behind by a Worker that died mid-job, past its deadline.
    const db = await network.edge.miniflare.getD1Database('DB')
    await db
      .prepare(
        `INSERT INTO reservations (id, payer, status, price_wei, price_gwei, price_rem, developer_wei, provider_fee_wei,
           protocol_fee_wei, model_name, model_version, api_key_label, created_at, expires_at)
         VALUES ('abandoned', ?, 'reserved', '5000000000', 5, 0, '0', '5000000000', '0', 'ppocr-cls', '1', 'payer-a', ?, ?)`,
      )
      .bind(payers.a.address.toLowerCase(), Date.now() - 200_000, Date.now() - 1)
      .run()
    expect((await account(keys.a)).reserved).toEqual({ jobs: 1, wei: '5000000000' })

    await network.edge.runScheduled()

    const { batches } = (await noPayer.get('/api/batches')).body as { batches: { root: Hex; status: string; count: number }[] }
    expect(batches).toHaveLength(1)
    expect(batches[0]).toMatchObject({ status: 'confirmed', count: 3 + 12 + 3 + 1 })
    expect(await settledIn(batches[0]!.root)).toBe(1n)
    for (const payer of [payers.a, payers.b, payers.c, payers.d]) {
      expect(await balanceOf(payer.address)).toBe(deposits.get(payer.address)! - (spent.get(payer.address) ?? 0n))
    }
    expect(spent.get(payers.a.address)).toBe(12n * PRICE + DET_PRICE)
    expect(await escrowTotal('totalDebited')).toBe([...spent.values()].reduce((a, b) => a + b, 0n))
    // Settled jobs no longer hold anything; the abandoned reservation is gone.
    expect(await account(keys.a)).toMatchObject({ reserved: { jobs: 0, wei: '0' }, chargedUnsettled: { jobs: 0, wei: '0' } })
  })

  it('pays developer, device and protocol exactly by Merkle claims; double and forged claims revert', async () => {
    const clsJobs = 3n + 12n + 3n
    const expected = new Map<Address, bigint>([
      [developer, clsJobs * DEV_SHARE],
      [deviceAddress, (clsJobs + 1n) * PROVIDER_FEE],
      [protocol, clsJobs * PROTOCOL_CUT],
    ])
    // Everything debited is distributed, to the wei.
    expect([...expected.values()].reduce((a, b) => a + b, 0n)).toBe(await escrowTotal('totalDebited'))
    for (const [address, amount] of expected) {
      const view = await payout(address)
      expect(view).toMatchObject({ cumulative: String(amount), claimed: '0', claimable: String(amount) })
      expect(view.payoutRoot).toBe(await publicClient.readContract({ address: escrow, abi: escrowAbi, functionName: 'currentPayoutRoot' }))
      const before = await publicClient.getBalance({ address })
      expect(await claim(address, view)).toBe(amount)
      expect(await publicClient.getBalance({ address })).toBe(before + amount)
      expect(await payout(address)).toMatchObject({ claimed: String(amount), claimable: '0' })
    }

    const devView = await payout(developer)
    const relayerWallet = wallet(relayer)
    const claimArgs = (account: Address, cumulative: bigint, proof: Hex[]) =>
      relayerWallet.writeContract({ address: escrow, abi: escrowAbi, functionName: 'claim', args: [account, cumulative, devView.payoutRoot, proof] })
    await expectRevert(() => claimArgs(developer, BigInt(devView.cumulative), devView.proof), 'NothingToClaim')
    await expectRevert(() => claimArgs(developer, BigInt(devView.cumulative) + 1n, devView.proof), 'InvalidProof')
    await expectRevert(() => claimArgs(relayer.address, BigInt(devView.cumulative), devView.proof), 'InvalidProof')
    expect((await noPayer.get(`/api/payouts/${relayer.address}`)).status).toBe(404)

    // The books balance: all claims plus what payers still hold is exactly what they deposited.
    const claimed = await escrowTotal('totalClaimed')
    let balances = 0n
    for (const payer of [payers.a, payers.b, payers.c, payers.d, payers.e]) balances += await balanceOf(payer.address)
    const deposited = [...deposits.values()].reduce((a, b) => a + b, 0n)
    expect(claimed + balances).toBe(deposited)
    expect(await publicClient.getBalance({ address: escrow })).toBe(balances)
    console.log(
      `payments accounting: deposits ${deposited} = claims ${claimed} (developer ${expected.get(developer)}, device ${expected.get(deviceAddress)}, ` +
        `protocol ${expected.get(protocol)}) + escrow balances ${balances}; debited ${[...spent].map(([p, w]) => `${p.slice(0, 8)}…=${w}`).join(', ')}`,
    )
  })

  it('accrues earnings cumulatively across batches and resumes a settlement whose answer was lost, never settling twice', async () => {
    await paidInfer('a', '/v2/models/ppocr-cls/infer', clsJob(), PRICE)
    await paidInfer('c', '/v2/models/ppocr-cls/infer', clsJob(), PRICE)
    const epoch = await escrowTotal('epoch')
    // Every transaction lands but its answer is lost: the batch, then the settlement, each
    // resumed from D1 and the chain on the next tick.
    rpc.mode = 'lose-send-result'
    await network.edge.runScheduled() // posts the batch (answer lost)
    await network.edge.runScheduled() // finds the batch posted; sends the settlement (answer lost)
    expect(await escrowTotal('epoch')).toBe(epoch + 1n)
    rpc.mode = 'pass'
    const sent = rpc.methods.length
    await network.edge.runScheduled() // finds the settlement on-chain: confirms it without sending
    expect(rpc.methods.slice(sent)).not.toContain('eth_sendRawTransaction')
    await network.edge.runScheduled()
    expect(await escrowTotal('epoch')).toBe(epoch + 1n)

    const devView = await payout(developer)
    expect(devView).toMatchObject({ cumulative: String(20n * DEV_SHARE), claimable: String(2n * DEV_SHARE) })
    expect(await claim(developer, devView)).toBe(2n * DEV_SHARE)
    for (const payer of [payers.a, payers.c]) {
      expect(await balanceOf(payer.address)).toBe(deposits.get(payer.address)! - spent.get(payer.address)!)
    }
    await waitFor('the settled jobs to stop holding', async () => ((await account(keys.c)).chargedUnsettled.jobs === 0 ? true : undefined), 5_000)
  })

  it('lets a payer who spent everything run again the moment it tops up: a settled job does not hold twice', async () => {
    const account = devAccount(7)
    const key = apiClient(network.edge.url, await network.edge.createApiKey('payer-topping-up', undefined, account.address))
    await deposit(account, PRICE)
    expect((await key.post('/v2/models/ppocr-cls/infer', clsJob())).status).toBe(200)
    await network.edge.runScheduled() // settled: the balance on-chain is now 0
    expect(await balanceOf(account.address)).toBe(0n)
    expectPaymentRequired(await key.post('/v2/models/ppocr-cls/infer', clsJob()), 'payer')
    // One job's worth more: the fresh balance read after this deposit already reflects the
    // settlement, so the settled job must not hold against it again (it did for ~30 s).
    await deposit(account, PRICE)
    const again = await key.post('/v2/models/ppocr-cls/infer', clsJob())
    expect(again.status, again.text).toBe(200)
    expectPaymentRequired(await key.post('/v2/models/ppocr-cls/infer', clsJob()), 'payer')
  })

  it('reads the balance at the latest block when the node answering does not have the pinned one', async () => {
    await deposit(payers.e, PRICE)
    rpc.mode = 'behind'
    try {
      const methods = rpc.methods.length
      const response = await keys.e.post('/v2/models/ppocr-cls/infer', clsJob())
      expect(response.status, response.text).toBe(200)
      expect(rpc.methods.slice(methods).filter((m) => m === 'eth_call').length).toBeGreaterThanOrEqual(2) // pinned, refused, then latest
    } finally {
      rpc.mode = 'pass'
    }
  })

  it('shows each model\'s price in its metadata, and refuses a job dearer than the caller\'s max_price_wei with 409, sending and holding nothing', async () => {
    expect((await keys.c.get('/v2/models/ppocr-cls')).body.parameters).toMatchObject({ price_wei: String(PRICE) })
    expect((await keys.c.get('/v2/models/ppocr-cls/versions/1')).body.parameters).toMatchObject({ price_wei: String(PRICE) })
    expect((await keys.c.get('/v2/models/ppocr-det')).body.parameters).toMatchObject({ price_wei: String(DET_PRICE) })

    const held = await account(keys.c)
    const wire = await wireQuiet()
    const capped = (max: unknown) => ({ ...clsJob(), parameters: { max_price_wei: max } })
    for (const client of [keys.c, noPayer]) {
      const refused = await client.post('/v2/models/ppocr-cls/infer', capped(String(PRICE - 1n)))
      expect(refused.status, refused.text).toBe(409)
      expect(refused.headers.get('content-type')).toMatch(/application\/problem\+json/)
      expect(refused.body).toMatchObject({ type: 'urn:depinfer:problem:price-above-limit', field: 'parameters.max_price_wei' })
      expect(refused.body.detail).toContain(`costs ${PRICE} wei per inference, more than parameters.max_price_wei (${PRICE - 1n})`)
    }
    expect(await wireQuiet()).toBe(wire)
    expect(await account(keys.c)).toMatchObject({ reserved: { jobs: 0, wei: '0' }, chargedUnsettled: held.chargedUnsettled })

    // At the price exactly, as a string or a JSON number: runs and is charged that price.
    await paidInfer('c', '/v2/models/ppocr-cls/infer', capped(String(PRICE)), PRICE)
    await paidInfer('c', '/v2/models/ppocr-cls/versions/1/infer', capped(Number(PRICE)), PRICE)
    await paidInfer('c', '/v2/models/ppocr-det/infer', { ...detJob(32), parameters: { max_price_wei: String(PRICE) } }, DET_PRICE)
    for (const bad of ['', '1.5', '-1', 'lots', -1, 1.5, true, { wei: 1 }]) {
      const response = await keys.c.post('/v2/models/ppocr-cls/infer', capped(bad))
      expect(response.body, JSON.stringify(bad)).toMatchObject({ status: 400, field: 'parameters.max_price_wei' })
    }
  })

  it("leaves out the jobs of a payer who withdrew while they were unsettled, and settles everyone else's, this batch and the next", async () => {
    // A payer whose two answered jobs were not settled within its withdrawal delay (here: the
    // settlement was recorded, but its transaction never left, as in an outage).
    await network.edge.runScheduled() // settles what earlier cases left unsettled: this case starts clean
    const leaver = devAccount(8)
    const leaverKey = apiClient(network.edge.url, await network.edge.createApiKey('payer-leaving', undefined, leaver.address))
    await deposit(leaver, 2n * PRICE)
    for (let i = 0; i < 2; i++) expect((await leaverKey.post('/v2/models/ppocr-cls/infer', clsJob())).status).toBe(200)
    await paidInfer('c', '/v2/models/ppocr-cls/infer', clsJob(), PRICE)
    const debitedBefore = await escrowTotal('totalDebited')
    const developerBefore = BigInt((await payout(developer)).cumulative)
    rpc.mode = 'lose-send-result'
    await network.edge.runScheduled() // posts the batch (answer lost)
    rpc.mode = 'refuse-send'
    await network.edge.runScheduled() // records the batch posted and its settlement; the settlement is not sent
    rpc.mode = 'pass'
    const [recorded] = (await noPayer.get('/api/batches?limit=1')).body.batches as { settlement: { status: string; jobs: number; lastError: string | null } }[]
    expect(recorded!.settlement).toMatchObject({ status: 'pending', jobs: expect.any(Number) as number })
    expect(recorded!.settlement.lastError).toMatch(/refused by the test proxy/)

    // The payer leaves with everything: its withdrawal's delay passes before anything settles.
    const escrowAs = wallet(leaver)
    await publicClient.waitForTransactionReceipt({ hash: await escrowAs.writeContract({ address: escrow, abi: escrowAbi, functionName: 'requestWithdrawal', args: [2n * PRICE] }) })
    const testClient = createTestClient({ chain: foundry, mode: 'anvil', transport: http(network.chain!.rpcUrl) })
    await testClient.increaseTime({ seconds: 24 * 3600 + 1 })
    await testClient.mine({ blocks: 1 })
    await publicClient.waitForTransactionReceipt({ hash: await escrowAs.writeContract({ address: escrow, abi: escrowAbi, functionName: 'withdraw' }) })
    expect(await balanceOf(leaver.address)).toBe(0n)

    // The next tick finds the recorded settlement overdrawn, records it again without the
    // leaver's jobs, and settles it: everyone else is debited and paid as ever.
    await network.edge.runScheduled()
    const [settled] = (await noPayer.get('/api/batches?limit=1')).body.batches as { settlement: { status: string; unfundedJobs: number } }[]
    expect(settled!.settlement).toMatchObject({ status: 'confirmed', unfundedJobs: 2 })
    expect(await escrowTotal('totalDebited')).toBe(debitedBefore + PRICE)
    expect(await balanceOf(payers.c.address)).toBe(deposits.get(payers.c.address)! - spent.get(payers.c.address)!)
    // The developer earned from the other payer's jobs only.
    const developerAfter = BigInt((await payout(developer)).cumulative)
    expect(developerAfter - developerBefore).toBe(DEV_SHARE)

    // And the next batch settles too: nothing is stuck behind the leaver.
    await paidInfer('c', '/v2/models/ppocr-cls/infer', clsJob(), PRICE)
    await network.edge.runScheduled()
    const [next] = (await noPayer.get('/api/batches?limit=1')).body.batches as { settlement: { status: string; unfundedJobs: number } }[]
    expect(next!.settlement).toMatchObject({ status: 'confirmed', unfundedJobs: 0 })
    expect(await balanceOf(payers.c.address)).toBe(deposits.get(payers.c.address)! - spent.get(payers.c.address)!)
  })

  it('does not take a settlement whose answer was lost, and which landed, for one its payer can no longer cover', async () => {
    // A payer whose two jobs take its whole deposit: once settled, its balance is below what
    // the settlement asks of it, as if it had withdrawn.
    const exact = devAccount(1)
    const exactKey = apiClient(network.edge.url, await network.edge.createApiKey('payer-exact', undefined, exact.address))
    await network.edge.runScheduled() // a clean start
    await deposit(exact, 2n * PRICE)
    for (let i = 0; i < 2; i++) expect((await exactKey.post('/v2/models/ppocr-cls/infer', clsJob())).status).toBe(200)
    const developerBefore = BigInt((await payout(developer)).cumulative)
    rpc.mode = 'lose-send-result'
    await network.edge.runScheduled() // posts the batch (answer lost)
    await network.edge.runScheduled() // records the batch posted, sends the settlement: it lands, its answer is lost
    rpc.mode = 'pass'
    expect(await balanceOf(exact.address)).toBe(0n)
    await network.edge.runScheduled() // finds it settled on-chain and confirms it
    const [batch] = (await noPayer.get('/api/batches?limit=1')).body.batches as { settlement: { status: string; unfundedJobs: number; lastError: string | null } }[]
    expect(batch!.settlement).toMatchObject({ status: 'confirmed', unfundedJobs: 0, lastError: null })
    expect(BigInt((await payout(developer)).cumulative) - developerBefore).toBe(2n * DEV_SHARE)
  })
})
