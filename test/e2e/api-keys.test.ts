/**
 * Self-service API keys end to end (POST/GET/DELETE /api/keys) on the real edge in Miniflare
 * with the local chain: a key for the caller's own account, a key tied to another payer only with
 * that payer's signature (and its priced jobs charged to that payer), refusals that leave no key
 * behind, listing and revoking (a revoked key is refused at once by the same edge), and
 * `npm run key:create -- --edge` as a user runs it.
 */
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createHash, randomBytes } from 'node:crypto'
import { createPublicClient, createWalletClient, http, parseEther, toHex, type Address } from 'viem'
import { generatePrivateKey, mnemonicToAccount, privateKeyToAccount, type HDAccount } from 'viem/accounts'
import { foundry } from 'viem/chains'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { escrowAbi } from '../../contracts/generated/index.js'
import { bundledModelPath } from '../../device-agent/src/models/bundled.js'
import { payerBindingMessage, type PayerBindingDomain } from '../../edge/src/keys/payer-binding.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { REPO_ROOT } from '../../scripts/local/paths.js'
import { temporaryDirectory } from '../helpers/temporary-directory.js'
import { apiClient, waitForModelReady, type ApiResponse } from './support.js'

/** anvil's well-known dev mnemonic: accounts funded with 10,000 ETH each. */
const ANVIL_MNEMONIC = 'test test test test test test test test test test test junk'
const devAccount = (index: number) => mnemonicToAccount(ANVIL_MNEMONIC, { addressIndex: index })
const privateKeyOf = (account: HDAccount) => toHex(account.getHdKey().privateKey!)
/** What the developer charges per ppocr-cls job (no provider or protocol fee on this edge). */
const PRICE = 1_000_003n
const clsJob = () => ({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, 48, 32], data: new Array(3 * 48 * 32).fill(0.25) }] })
const newKey = () => `dpi_${randomBytes(24).toString('base64url')}`
const hashOf = (key: string) => createHash('sha256').update(key).digest('hex')

interface KeyView {
  id: string
  label: string
  payer: string | null
  createdAt: number
  revokedAt: number | null
  createdBy: string | null
  current: boolean
  key?: string
}

function runKeyCreate(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const { DEPINFER_URL: _url, DEPINFER_API_KEY: _key, DEPINFER_PAYER_PRIVATE_KEY: _payer, ...base } = process.env
  return new Promise((resolve) => {
    execFile('npm', ['run', '--silent', 'key:create', '--', ...args], { cwd: REPO_ROOT, env: { ...base, ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr })
    })
  })
}

describe('self-service API keys', () => {
  let network: LocalNetwork
  let publicClient: ReturnType<typeof createPublicClient>
  /** The network's key: payer anvil #1, the model developer here. */
  let main: string
  const developerPayer = devAccount(1)
  const userPayer = devAccount(2)
  const stranger = devAccount(3)
  const cliPayer = devAccount(4)
  const payout = privateKeyToAccount(generatePrivateKey()).address

  const call = (key: string, method: string, path: string, body?: unknown): Promise<ApiResponse> => apiClient(network.edge.url, key).request(method, path, body)
  const create = (key: string, body: unknown) => call(key, 'POST', '/api/keys', body)
  const list = async (key: string) => {
    const reply = await call(key, 'GET', '/api/keys')
    expect(reply.status, reply.text).toBe(200)
    return reply.body as { payer: string | null; keys: KeyView[] }
  }
  const accountOf = async (key: string) => {
    const reply = await call(key, 'GET', '/api/account')
    expect(reply.status, reply.text).toBe(200)
    return reply.body as { apiKeyLabel: string; payer: string | null; chargedUnsettled?: { jobs: number; wei: string } }
  }
  const expectProblem = (reply: ApiResponse, status: number, field: string) => {
    expect(reply.status, reply.text).toBe(status)
    expect(reply.headers.get('content-type')).toMatch(/application\/problem\+json/)
    expect(reply.body).toMatchObject({ status, field, instance: expect.stringMatching(/^\/api\/keys/) })
  }
  /** A key for `payer`, made by the client, with `signer`'s signature over `signedHash`. */
  const signedRequest = async (payer: Address, signer: HDAccount, options: { signedHash?: string; label?: string; domain?: PayerBindingDomain } = {}) => {
    const key = newKey()
    const keyHash = hashOf(key)
    const domain = options.domain ?? { chainId: network.chain!.chainId, escrow: network.chain!.escrowAddress }
    const signature = await signer.signMessage({ message: payerBindingMessage(options.signedHash ?? keyHash, payer, domain) })
    return { key, keyHash, body: { label: options.label ?? 'user', payer, key_hash: keyHash, signature } }
  }

  beforeAll(async () => {
    network = await startLocalNetwork({ build: false, chain: true, payer: developerPayer.address, agents: [{ deviceId: 'keys-device', models: 'ppocr-cls' }] })
    main = network.apiKey
    publicClient = createPublicClient({ chain: foundry, transport: http(network.chain!.rpcUrl) })
    await waitForModelReady(apiClient(network.edge.url, main), 'ppocr-cls')
    // The developer (payer #1's key) prices the model; the user's key below pays for it.
    const bytes = readFileSync(bundledModelPath('ppocr-cls'))
    const published = await apiClient(network.edge.url, main).post(`/api/models?name=ppocr-cls&price_wei=${PRICE}&payout_address=${payout}`, new Uint8Array(bytes), {
      'Content-Type': 'application/octet-stream',
    })
    expect(published.status, published.text).toBe(201)
  })
  afterAll(async () => {
    await network?.close()
  })

  it('grants no browser origin while CORS_ALLOW_ORIGINS is unset: a preflight is a 405', async () => {
    const preflight = await fetch(`${network.edge.url}/api/keys`, {
      method: 'OPTIONS',
      headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization' },
    })
    expect(preflight.status).toBe(405)
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull()
    const listed = await fetch(`${network.edge.url}/api/keys`, { headers: { Origin: 'https://app.example', Authorization: `Bearer ${main}` } })
    expect(listed.status).toBe(200)
    expect(listed.headers.get('access-control-allow-origin')).toBeNull()
  })

  it('makes a key of the same account (server-made, shown once) that works at once', async () => {
    const reply = await create(main, { label: 'rotation' })
    expect(reply.status, reply.text).toBe(201)
    expect(reply.headers.get('cache-control')).toBe('no-store')
    const made = reply.body as unknown as KeyView
    expect(made).toMatchObject({ label: 'rotation', payer: developerPayer.address.toLowerCase(), revokedAt: null, createdBy: hashOf(main).slice(0, 16) })
    expect(made.key).toMatch(/^dpi_[A-Za-z0-9_-]{32}$/)
    expect(made.id).toBe(hashOf(made.key!).slice(0, 16))
    expect(await accountOf(made.key!)).toMatchObject({ apiKeyLabel: 'rotation', payer: developerPayer.address.toLowerCase() })

    // A client-made key: only its hash is sent, and the key never comes back.
    const own = newKey()
    const second = await create(made.key!, { label: 'per-app', key_hash: hashOf(own) })
    expect(second.status, second.text).toBe(201)
    expect(second.body.key).toBeUndefined()
    expect(second.body).toMatchObject({ id: hashOf(own).slice(0, 16), payer: developerPayer.address.toLowerCase(), createdBy: made.id })
    expect(await accountOf(own)).toMatchObject({ apiKeyLabel: 'per-app' })

    // All three are the account's, listed to each of them (never the key itself).
    const listed = await list(own)
    expect(listed.payer).toBe(developerPayer.address.toLowerCase())
    expect(listed.keys.map((k) => [k.label, k.current])).toEqual([
      ['local', false],
      ['rotation', false],
      ['per-app', true],
    ])
    expect(JSON.stringify(listed)).not.toContain(made.key!)
    expect(JSON.stringify(listed)).not.toContain(hashOf(own))
  })

  it("ties a key to another payer only with that payer's signature, and charges its priced jobs to that payer", async () => {
    const { key, keyHash, body } = await signedRequest(userPayer.address, userPayer)
    const reply = await create(main, body)
    expect(reply.status, reply.text).toBe(201)
    expect(reply.body).toMatchObject({ id: keyHash.slice(0, 16), label: 'user', payer: userPayer.address.toLowerCase(), createdBy: hashOf(main).slice(0, 16) })
    expect(reply.body.key).toBeUndefined()

    // Without a deposit the payer's key is refused a priced job (402), like any payer.
    const unpaid = await call(key, 'POST', '/v2/models/ppocr-cls/infer', clsJob())
    expect(unpaid.status, unpaid.text).toBe(402)
    const wallet = createWalletClient({ account: userPayer, chain: foundry, transport: http(network.chain!.rpcUrl) })
    const hash = await wallet.writeContract({ address: network.chain!.escrowAddress, abi: escrowAbi, functionName: 'deposit', value: parseEther('0.01') })
    expect((await publicClient.waitForTransactionReceipt({ hash })).status).toBe('success')

    const job = await call(key, 'POST', '/v2/models/ppocr-cls/infer', clsJob())
    expect(job.status, job.text).toBe(200)
    expect((job.body.parameters as { attestation_price_wei: string }).attestation_price_wei).toBe(String(PRICE))
    expect(await accountOf(key)).toMatchObject({ apiKeyLabel: 'user', payer: userPayer.address.toLowerCase(), chargedUnsettled: { jobs: 1, wei: String(PRICE) } })
    // Not the developer's: its account was charged nothing.
    expect(await accountOf(main)).toMatchObject({ payer: developerPayer.address.toLowerCase(), chargedUnsettled: { jobs: 0, wei: '0' } })

    // The key belongs to the payer's account, not to the one that made it.
    expect((await list(key)).keys.map((k) => [k.label, k.payer, k.createdBy])).toEqual([['user', userPayer.address.toLowerCase(), hashOf(main).slice(0, 16)]])
    expect((await list(main)).keys.map((k) => k.id)).not.toContain(keyHash.slice(0, 16))
    // Keys of that account may make more keys of it without signing again.
    const more = await create(key, { label: 'user-2' })
    expect(more.status, more.text).toBe(201)
    expect(more.body).toMatchObject({ payer: userPayer.address.toLowerCase() })
  })

  it('refuses a missing, malformed, foreign or replayed signature, and no key is made', async () => {
    const payer = userPayer.address
    const before = (await list(main)).keys.length
    const refusedKeys: string[] = []

    // No signature, no key hash, a malformed signature.
    const missing = await signedRequest(payer, userPayer)
    refusedKeys.push(missing.key)
    expectProblem(await create(main, { label: 'x', payer, key_hash: missing.keyHash }), 400, 'signature')
    expectProblem(await create(main, { label: 'x', payer, signature: missing.body.signature }), 400, 'key_hash')
    expectProblem(await create(main, { ...missing.body, signature: '0x1234' }), 400, 'signature')
    expectProblem(await create(main, { ...missing.body, signature: `0x${'00'.repeat(65)}` }), 400, 'signature')

    // Signed by another account (#3) for payer #2.
    const foreign = await signedRequest(payer, stranger)
    refusedKeys.push(foreign.key)
    const foreignReply = await create(main, foreign.body)
    expectProblem(foreignReply, 403, 'signature')
    expect(foreignReply.body.detail).toContain(stranger.address.toLowerCase())

    // The payer's genuine signature, but for another deployment's Escrow (a staging edge's).
    const elsewhere = await signedRequest(payer, userPayer, { domain: { chainId: network.chain!.chainId, escrow: `0x${'ee'.repeat(20)}` } })
    refusedKeys.push(elsewhere.key)
    expectProblem(await create(main, elsewhere.body), 403, 'signature')

    // The payer's genuine signature for one key, replayed for another key hash.
    const genuine = await signedRequest(payer, userPayer, { label: 'genuine' })
    const replayed = newKey()
    refusedKeys.push(replayed)
    expectProblem(await create(main, { ...genuine.body, key_hash: hashOf(replayed) }), 403, 'signature')
    // And for the very same key, to tie it to a third payer instead.
    expectProblem(await create(main, { ...genuine.body, payer: stranger.address }), 403, 'signature')
    // The genuine request works once; the same request again is a conflict, not a second key.
    expect((await create(main, genuine.body)).status).toBe(201)
    expectProblem(await create(main, genuine.body), 409, 'key_hash')

    // Every other field is checked and named, and nothing is stored.
    expectProblem(await create(main, { payer }), 400, 'label')
    expectProblem(await create(main, { label: '   ' }), 400, 'label')
    expectProblem(await create(main, { label: 'x'.repeat(101) }), 400, 'label')
    expectProblem(await create(main, { label: 'a\nb' }), 400, 'label')
    expectProblem(await create(main, { label: 'x', payer: '0x12' }), 400, 'payer')
    expectProblem(await create(main, { label: 'x', payer: 7 }), 400, 'payer')
    expectProblem(await create(main, { label: 'x', key_hash: 'nothex' }), 400, 'key_hash')
    expectProblem(await create(main, { label: 'x', expires_at: 1 }), 400, 'expires_at')
    expectProblem(await create(main, 'not json'), 400, 'body')
    expectProblem(await create(main, [1]), 400, 'body')

    for (const key of refusedKeys) expect((await call(key, 'GET', '/api/account')).status).toBe(401)
    expect((await list(main)).keys.length).toBe(before)
  })

  it('lists and revokes the account’s own keys; a revoked key is refused at once', async () => {
    const made = (await create(main, { label: 'temporary' })).body as unknown as KeyView
    // Used once, so this isolate's auth has it cached as valid.
    expect((await call(made.key!, 'GET', '/api/account')).status).toBe(200)
    const revoked = await call(main, 'DELETE', `/api/keys/${made.id}`)
    expect(revoked.status, revoked.text).toBe(200)
    expect(revoked.body).toMatchObject({ id: made.id, label: 'temporary', revokedAt: expect.any(Number) })
    const refused = await call(made.key!, 'GET', '/api/account')
    expectProblemOutsideKeys(refused)
    expect((await call(made.key!, 'POST', '/api/keys', { label: 'revival' })).status).toBe(401)
    expect((await list(main)).keys.find((k) => k.id === made.id)).toMatchObject({ revokedAt: revoked.body.revokedAt })
    // Again: still revoked, same time.
    expect((await call(main, 'DELETE', `/api/keys/${made.id}`)).body).toMatchObject({ revokedAt: revoked.body.revokedAt })

    // A key revokes itself too.
    const self = (await create(main, { label: 'self' })).body as unknown as KeyView
    expect((await call(self.key!, 'DELETE', `/api/keys/${self.id}`)).status).toBe(200)
    expect((await call(self.key!, 'GET', '/api/keys')).status).toBe(401)

    // Unknown ids, malformed ids and other accounts' keys.
    expectProblem(await call(main, 'DELETE', `/api/keys/${'0'.repeat(16)}`), 404, 'id')
    expectProblem(await call(main, 'DELETE', '/api/keys/zz'), 400, 'id')
    const { key: userKey, body } = await signedRequest(userPayer.address, userPayer, { label: 'not-yours' })
    expect((await create(main, body)).status).toBe(201)
    expectProblem(await call(main, 'DELETE', `/api/keys/${hashOf(userKey).slice(0, 16)}`), 404, 'id')
    expect((await call(userKey, 'GET', '/api/account')).status).toBe(200)

    // Known paths, other methods: 405 with Allow, before the key check.
    const put = await fetch(`${network.edge.url}/api/keys`, { method: 'PUT' })
    expect(put.status).toBe(405)
    expect(put.headers.get('allow')?.split(', ').sort()).toEqual(['GET', 'HEAD', 'POST'])
    const get = await fetch(`${network.edge.url}/api/keys/${made.id}`)
    expect(get.status).toBe(405)
    expect(get.headers.get('allow')).toBe('DELETE')
  })

  it('makes a key without a payer: an account of its own, which keeps its own keys', async () => {
    const free = (await create(main, { label: 'developer', payer: null })).body as unknown as KeyView
    expect(free).toMatchObject({ label: 'developer', payer: null })
    expect(await accountOf(free.key!)).toMatchObject({ payer: null })
    const sibling = (await create(free.key!, { label: 'developer-ci' })).body as unknown as KeyView
    expect(sibling).toMatchObject({ payer: null, createdBy: free.id })
    expect((await list(sibling.key!)).keys.map((k) => k.label)).toEqual(['developer', 'developer-ci'])
    expect((await list(main)).keys.map((k) => k.label)).not.toContain('developer')
    expectProblem(await call(main, 'DELETE', `/api/keys/${sibling.id}`), 404, 'id')
    expect((await call(free.key!, 'DELETE', `/api/keys/${sibling.id}`)).status).toBe(200)
    expect((await call(sibling.key!, 'GET', '/api/account')).status).toBe(401)
    // A key without a payer cannot tie a key to a payer without that payer's signature.
    expectProblem(await create(free.key!, { label: 'x', payer: developerPayer.address, key_hash: hashOf(newKey()) }), 400, 'signature')
  })

  it('npm run key:create -- --edge makes keys through the edge, signing for another payer', async () => {
    const edge = network.edge.url
    // The four runs at once (each script start takes seconds): each makes or refuses a key of
    // its own label, and none of the labels is another's.
    const [signed, same, unsigned, wrong] = await Promise.all([
      // Another payer: signed with its private key from the environment.
      runKeyCreate(['cli-user', '--edge', edge, '--payer', cliPayer.address], { DEPINFER_API_KEY: main, DEPINFER_PAYER_PRIVATE_KEY: privateKeyOf(cliPayer) }),
      // The caller's own account, the edge from DEPINFER_URL.
      runKeyCreate(['cli-rotation'], { DEPINFER_URL: edge, DEPINFER_API_KEY: main }),
      // Another payer without its private key: the edge refuses, and the script says what to set.
      runKeyCreate(['cli-nosig', '--edge', edge, '--payer', cliPayer.address], { DEPINFER_API_KEY: main }),
      // A private key that is not the payer's: refused before anything is sent.
      runKeyCreate(['cli-wrong', '--edge', edge, '--payer', cliPayer.address], { DEPINFER_API_KEY: main, DEPINFER_PAYER_PRIVATE_KEY: privateKeyOf(stranger) }),
    ])
    expect(signed.code, signed.stderr).toBe(0)
    const key = /API key \(store it now, it is not kept anywhere\): (dpi_\S+)/.exec(signed.stdout)?.[1]
    expect(key, signed.stdout).toBeDefined()
    expect(signed.stdout.split(key!).length - 1).toBe(1) // printed once
    expect(await accountOf(key!)).toMatchObject({ apiKeyLabel: 'cli-user', payer: cliPayer.address.toLowerCase() })

    expect(same.code, same.stderr).toBe(0)
    const sameKey = /(dpi_\S+)/.exec(same.stdout)![1]!
    expect(await accountOf(sameKey)).toMatchObject({ apiKeyLabel: 'cli-rotation', payer: developerPayer.address.toLowerCase() })

    expect(unsigned.code).toBe(1)
    expect(unsigned.stderr).toContain('field signature')
    expect(unsigned.stderr).toContain('DEPINFER_PAYER_PRIVATE_KEY')
    expect(unsigned.stdout).not.toMatch(/dpi_/)
    expect(wrong.code).toBe(2)
    expect(wrong.stderr).toContain(stranger.address)
    expect((await list(main)).keys.map((k) => k.label)).not.toContain('cli-nosig')
  })
})

/** A 401 problem outside /api/keys (the revoked key's own call). */
function expectProblemOutsideKeys(reply: ApiResponse): void {
  expect(reply.status, reply.text).toBe(401)
  expect(reply.headers.get('content-type')).toMatch(/application\/problem\+json/)
  expect(reply.body).toMatchObject({ field: 'Authorization', detail: 'API key not recognised or revoked' })
}

describe('npm run key:create without an edge', () => {
  it('prints a wrangler command that stores the label exactly, whatever the shell would make of it', async () => {
    const label = `ops $(id -un) 'x' \`date\` "q" key`
    // Run as pasted into a shell, against a local D1 instead of the remote one.
    const persist = temporaryDirectory('key-create-d1-')
    const sh = (line: string) =>
      new Promise<string>((resolve, reject) =>
        execFile('sh', ['-c', line], { cwd: REPO_ROOT, timeout: 120_000 }, (error, stdout) => (error ? reject(error) : resolve(stdout))),
      )
    // The schema is made while the script runs: it does not touch the database.
    const [created] = await Promise.all([runKeyCreate([label], {}), sh(`npx wrangler d1 migrations apply depinfer --local --persist-to ${persist}`)])
    expect(created.code, created.stderr).toBe(0)
    const command = /npx wrangler d1 execute depinfer --remote --command .*/.exec(created.stdout)?.[0]
    expect(command, created.stdout).toBeDefined()
    await sh(command!.replace('--remote', `--local --persist-to ${persist}`))
    const stored = JSON.parse(await sh(`npx wrangler d1 execute depinfer --local --persist-to ${persist} --json --command "SELECT label FROM api_keys"`)) as { results: { label: string }[] }[]
    expect(stored[0]!.results).toEqual([{ label }])
  })

  it('refuses a missing label, or one the edge would refuse, before making a key', async () => {
    const cases = [[], ['a\tb'], ['x'.repeat(101)]]
    const runs = await Promise.all(cases.map((args) => runKeyCreate(args, {})))
    for (const [i, refused] of runs.entries()) {
      expect(refused.code, cases[i]!.join(' ')).toBe(2)
      expect(refused.stderr).toMatch(/^key:create: (a label is required|label must)/)
      expect(refused.stdout).not.toMatch(/dpi_/)
    }
  })
})
