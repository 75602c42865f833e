/**
 * `npm run key:create -- <label> [--payer 0x… | --no-payer] [--edge <url>] [--wrangler]` —
 * makes a new API key. Prints the key once (only its SHA-256 is ever stored).
 *
 * Two ways to store it:
 *
 * - **Through a running edge** (`--edge <url>`, or `DEPINFER_URL`; with `DEPINFER_API_KEY`, a
 *   key the edge knows): `POST /api/keys` with the new key's hash. Works the same under
 *   `npm start` (D1 in Miniflare) and in production. Without `--payer` the new key gets the
 *   calling key's payer (or none); `--no-payer` makes a key without one (free jobs only). A
 *   `--payer` other than the calling key's needs the payer's consent: the script signs the
 *   message edge/src/keys/payer-binding.ts defines (key hash, payer, the edge's chain and
 *   Escrow from GET /api/chain; EIP-191 personal_sign) with
 *   `DEPINFER_PAYER_PRIVATE_KEY`, the payer's private key (never printed nor sent).
 * - **Into the production D1 directly** (no `--edge` and no `DEPINFER_URL`, or `--wrangler`):
 *   prints the wrangler command that stores the hash. `--payer` ties the key to an Escrow
 *   depositor without any signature: whoever runs wrangler against the database is trusted.
 *
 * Exit codes: 2 for a bad command line or environment, 1 when the edge refuses or cannot be reached.
 */
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { privateKeyToAccount } from 'viem/accounts'
import { addressProblem, sha256Hex, messageOf } from '@depinfer/shared'
import { labelProblem } from '../edge/src/keys/label.js'
import { payerBindingMessage, type PayerBindingDomain } from '../edge/src/keys/payer-binding.js'

// A reader that stops early closes the pipe (`npm run key:create -- ci | head -1`, to take the
// key's line): the key is made by then, and the rest of the output goes nowhere, as it would for
// any Unix tool. Without this, the next write's EPIPE crashed the script with a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error
  process.exit(0)
})

function fail(code: 1 | 2, message: string): never {
  console.error(`key:create: ${message}`)
  process.exit(code)
}

let parsed
try {
  parsed = parseArgs({
    options: {
      payer: { type: 'string' },
      'no-payer': { type: 'boolean' },
      edge: { type: 'string' },
      wrangler: { type: 'boolean' },
    },
    allowPositionals: true,
  })
} catch (error) {
  fail(2, `${messageOf(error)}\nusage: npm run key:create -- <label> [--payer 0x… | --no-payer] [--edge <url>] [--wrangler]`)
}
const { values, positionals } = parsed
/** An edge that takes the connection and never answers is given up after this (undici would wait 5 minutes). */
const EDGE_TIMEOUT_MS = 30_000
/** Why fetch failed, in a few words: the timeout, or undici's cause (e.g. connect ECONNREFUSED). */
const whyUnreachable = (error: unknown): string =>
  (error as Error).name === 'TimeoutError' ? `no answer for ${EDGE_TIMEOUT_MS / 1000} s` : String((error as Error).cause ?? messageOf(error))
const payer = values.payer
if (payer !== undefined && addressProblem(payer) !== undefined) fail(2, `--payer ${addressProblem(payer)}, got ${JSON.stringify(payer)}`)
if (payer !== undefined && values['no-payer']) fail(2, '--payer and --no-payer exclude each other')
if (positionals.length > 1) fail(2, `one label expected, got ${positionals.length} words (quote a label with spaces)`)
const label = (positionals[0] ?? fail(2, 'a label is required: npm run key:create -- <label> (a name for the key)')).trim()
const labelRefused = labelProblem(label)
if (labelRefused) fail(2, labelRefused)
const key = `dpi_${randomBytes(24).toString('base64url')}`
const keyHash = sha256Hex(key)

const edgeUrl = values.wrangler ? undefined : (values.edge ?? process.env.DEPINFER_URL)
if (values.wrangler && values.edge !== undefined) fail(2, '--edge and --wrangler exclude each other')

if (edgeUrl === undefined) printWranglerCommand()
else await createThroughEdge(edgeUrl)

function printWranglerCommand(): void {
  if (values['no-payer']) fail(2, '--no-payer needs --edge: without a payer the wrangler command already makes a key without one')
  console.log(`API key (store it now, it is not kept anywhere): ${key}\n`)
  if (payer) console.log(`Payer: ${payer} (deposit from that account: DEPINFER_PRIVATE_KEY=<its key> npx depinfer escrow deposit <eth>)\n`)
  console.log('Store its hash in the production D1 database:')
  const payerSql = payer ? `'${payer.toLowerCase()}'` : 'NULL'
  const sql = `INSERT INTO api_keys (key_hash, label, created_at, payer_address) VALUES ('${keyHash}', '${label.replace(/'/g, "''")}', ${Date.now()}, ${payerSql})`
  // Single-quoted for the shell: a label with $(…), backticks or quotes is pasted as text, not run.
  console.log(`  npx wrangler d1 execute depinfer --remote --command '${sql.replace(/'/g, `'\\''`)}'`)
  console.log('\nOr let a running edge store it: --edge <url> (or DEPINFER_URL) with DEPINFER_API_KEY set to a key it knows.')
}

/** The chain and Escrow the edge charges (GET /api/chain): what a payer's signature names. */
async function escrowOf(base: URL, apiKey: string): Promise<PayerBindingDomain> {
  let response: Response
  let text: string
  try {
    response = await fetch(new URL('/api/chain', base), { headers: { Authorization: `Bearer ${apiKey}` }, signal: AbortSignal.timeout(EDGE_TIMEOUT_MS) })
    text = await response.text()
  } catch (error) {
    fail(1, `cannot reach the edge at ${base.origin}: ${whyUnreachable(error)}`)
  }
  let body: { chainId?: unknown; contracts?: { escrow?: unknown } } = {}
  try {
    body = JSON.parse(text)
  } catch {
    // not the edge's JSON: refused below
  }
  if (!response.ok || typeof body.chainId !== 'number' || typeof body.contracts?.escrow !== 'string') {
    fail(1, `the edge at ${base.origin} names no Escrow (GET /api/chain answered ${response.status}): it charges no payer, so no key can be tied to one`)
  }
  return { chainId: body.chainId, escrow: body.contracts.escrow }
}

async function createThroughEdge(url: string): Promise<void> {
  let base: URL
  try {
    base = new URL(url)
  } catch {
    fail(2, `the edge URL (--edge or DEPINFER_URL) must be an http(s) URL, got ${JSON.stringify(url)}`)
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') fail(2, `the edge URL (--edge or DEPINFER_URL) must be an http(s) URL, got ${JSON.stringify(url)}`)
  const apiKey = process.env.DEPINFER_API_KEY
  if (!apiKey) fail(2, 'DEPINFER_API_KEY must be set to a key the edge knows (it authorises the new key; the new key joins its account unless --payer says otherwise)')

  const body: Record<string, unknown> = { label, key_hash: keyHash }
  if (values['no-payer']) body.payer = null
  if (payer !== undefined) {
    body.payer = payer
    const privateKey = process.env.DEPINFER_PAYER_PRIVATE_KEY
    if (privateKey !== undefined && privateKey !== '') {
      if (!/^0x[0-9a-fA-F]{64}$/.test(privateKey)) fail(2, 'DEPINFER_PAYER_PRIVATE_KEY must be 0x and 64 hex digits (the payer account\'s private key)')
      const account = privateKeyToAccount(privateKey as `0x${string}`)
      if (account.address.toLowerCase() !== payer.toLowerCase()) {
        fail(2, `DEPINFER_PAYER_PRIVATE_KEY is the key of ${account.address}, not of --payer ${payer}`)
      }
      // The payer's consent to this one key (its hash), on the Escrow this edge charges: see
      // edge/src/keys/payer-binding.ts. GET /api/chain names it.
      body.signature = await account.signMessage({ message: payerBindingMessage(keyHash, payer, await escrowOf(base, apiKey)) })
    }
  }

  const endpoint = new URL('/api/keys', base)
  let response: Response
  let text: string
  try {
    response = await fetch(endpoint, {
      method: 'POST',
      headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(EDGE_TIMEOUT_MS),
    })
    text = await response.text()
  } catch (error) {
    fail(1, `cannot reach the edge at ${endpoint.origin}: ${whyUnreachable(error)}`)
  }
  let answer: Record<string, unknown> = {}
  try {
    answer = JSON.parse(text)
  } catch {
    // reported below as text
  }
  if (response.status !== 201) {
    const detail = typeof answer.detail === 'string' ? answer.detail : text.slice(0, 300)
    const field = typeof answer.field === 'string' ? ` (field ${answer.field})` : ''
    const hint =
      answer.field === 'signature' && body.signature === undefined
        ? `\n  --payer ${payer} is not the payer of DEPINFER_API_KEY: set DEPINFER_PAYER_PRIVATE_KEY to that payer's private key so the script can sign its consent`
        : ''
    fail(1, `the edge refused the key (${response.status})${field}: ${detail}${hint}`)
  }
  console.log(`API key (store it now, it is not kept anywhere): ${key}\n`)
  console.log(`  id:     ${String(answer.id)}`)
  console.log(`  label:  ${String(answer.label)}`)
  console.log(`  payer:  ${answer.payer === null ? 'none (free jobs only)' : String(answer.payer)}`)
  if (answer.payer) console.log(`\nIts priced jobs are charged to ${String(answer.payer)}'s Escrow balance (deposit from that account: DEPINFER_PRIVATE_KEY=<its key> npx depinfer escrow deposit <eth>).`)
}
