/**
 * `npm run key:create -- <label> [--payer 0x…]` — makes a new API key for a deployed edge.
 * Prints the key (shown once; only its SHA-256 is stored) and the wrangler command that stores
 * the hash in D1. `--payer` ties the key to an Escrow depositor: its priced jobs are charged to
 * that address (without one the key only runs free jobs).
 */
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { sha256Hex } from '@depinfer/shared'

const { values, positionals } = parseArgs({ options: { payer: { type: 'string' } }, allowPositionals: true })
const payer = values.payer
if (payer !== undefined && !/^0x[0-9a-fA-F]{40}$/.test(payer)) {
  console.error(`--payer must be an address (0x and 40 hex digits), got ${JSON.stringify(payer)}`)
  process.exit(2)
}
const label = (positionals[0] ?? 'default').replace(/'/g, "''")
const key = `dpi_${randomBytes(24).toString('base64url')}`
console.log(`API key (store it now, it is not kept anywhere): ${key}\n`)
if (payer) console.log(`Payer: ${payer} (deposit with Escrow.deposit() from that account)\n`)
console.log('Store its hash in the production D1 database:')
const payerSql = payer ? `'${payer.toLowerCase()}'` : 'NULL'
console.log(
  `  npx wrangler d1 execute depinfer --remote --command "INSERT INTO api_keys (key_hash, label, created_at, payer_address) VALUES ('${sha256Hex(key)}', '${label}', ${Date.now()}, ${payerSql})"`,
)
