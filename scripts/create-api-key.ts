/**
 * `npm run key:create -- <label>` — makes a new API key for a deployed edge. Prints the key
 * (shown once; only its SHA-256 is stored) and the wrangler command that stores the hash in D1.
 */
import { randomBytes } from 'node:crypto'
import { sha256Hex } from '@depinfer/shared'

const label = (process.argv[2] ?? 'default').replace(/'/g, "''")
const key = `dpi_${randomBytes(24).toString('base64url')}`
console.log(`API key (store it now, it is not kept anywhere): ${key}\n`)
console.log('Store its hash in the production D1 database:')
console.log(
  `  npx wrangler d1 execute depinfer --remote --command "INSERT INTO api_keys (key_hash, label, created_at) VALUES ('${sha256Hex(key)}', '${label}', ${Date.now()})"`,
)
