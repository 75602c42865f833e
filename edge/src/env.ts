/** Bindings and variables of the edge Worker, as declared in wrangler.toml. */
import { isAddress, type AttestationDomain, type Hex } from '@depinfer/shared'
import type { Gateway } from './gateway/gateway.js'

export interface Env {
  GATEWAY: DurableObjectNamespace<Gateway>
  DB: D1Database
  MODELS: R2Bucket
  /** Broker URL as the Worker reaches it: `ws://` locally, `wss://` in production. */
  BROKER_URL: string
  BROKER_USERNAME?: string
  BROKER_PASSWORD?: string
  /** Names this gateway's Durable Object and its results topic. */
  GATEWAY_ID: string
  /** Default time budget of one inference across all attempts, in milliseconds. */
  JOB_DEADLINE_MS: string
  /** Largest accepted request body, in bytes. */
  MAX_BODY_BYTES: string
  /** Largest model file accepted by POST /api/models, in bytes (default 95 MiB). */
  MAX_MODEL_BYTES?: string
  /** Largest model file accepted by a resumable upload (POST /api/models/uploads), in bytes (default 2 GiB). */
  MAX_UPLOAD_BYTES?: string
  /** Part size of resumable uploads, in bytes (default 8 MiB; at least 5 MiB, R2's smallest part). */
  UPLOAD_PART_BYTES?: string
  /** The chain attestations are posted to (EIP-155 id), e.g. "31337" locally. Empty: none yet. */
  CHAIN_ID: string
  /** A public JSON-RPC URL of that chain, shown to clients that want to check proofs. */
  CHAIN_RPC_URL: string
  /** Address of the deployed AttestationRegistry. */
  REGISTRY_ADDRESS: string
  /** Secret: key of the account holding SUBMITTER_ROLE, which pays for batch transactions. */
  SUBMITTER_PRIVATE_KEY?: string
  /** Secret, optional: RPC URL used for sending (e.g. a keyed provider URL); else CHAIN_RPC_URL. */
  CHAIN_SUBMIT_RPC_URL?: string
  /** Most attestations in one on-chain batch (default 10,000). */
  BATCH_MAX_LEAVES?: string
  /** How long a tick waits for a batch's receipt before leaving it to the next tick (ms). */
  BATCH_CONFIRM_TIMEOUT_MS?: string
  /**
   * Address of the deployed Escrow (pay per inference). Empty: payments are off and every job is
   * free (attested at 0 wei), whatever the models' prices.
   */
  ESCROW_ADDRESS?: string
  /** Wei the device's provider earns per job, on top of the model developer's price (default 0). */
  PROVIDER_FEE_WEI?: string
  /** The protocol's share of the developer price, in basis points, rounded down (default 0). */
  PROTOCOL_FEE_BPS?: string
  /** Where the protocol fee goes; required when PROTOCOL_FEE_BPS is above 0. */
  PROTOCOL_FEE_ADDRESS?: string
  /**
   * Optional ProviderRegistry. When set (with CHAIN_ID and a chain RPC URL), the Gateway routes
   * only to devices whose key's address `isActiveDevice` there, and a registered device's
   * provider fees go to its provider account. Empty: every device with a key is routable.
   */
  PROVIDER_REGISTRY_ADDRESS?: string
  /**
   * Days a batch's attestations (and settled reservations) stay in D1 after the batch is
   * confirmed and settled; then they move to R2 (batching/archive.ts), still served with their
   * proofs. A number ≥ 0, fractions allowed; default 30.
   */
  ATTESTATION_RETENTION_DAYS?: string
  /** How long a device's on-chain stake answer is trusted before it is re-checked (ms, default 30,000). */
  DEVICE_STAKE_TTL_MS?: string
  /**
   * Seconds a device may be gone (offline, or silent) before the Gateway forgets it and clears its
   * retained status on the broker (Gateway.forgetGoneDevices, run by the cron); default 86,400.
   */
  DEVICE_FORGET_AFTER_SEC?: string
  /**
   * Browser origins allowed to call the API (CORS), comma-separated (`https://app.example.com`),
   * or `*`. Empty: no CORS headers, and a preflight is a 405 (middleware/cors.ts).
   */
  CORS_ALLOW_ORIGINS?: string
  /**
   * Spot checks (spot-checks/spot-check.ts): the share of answered jobs re-run on another device
   * (0 to 1, default 0.01), and how far float outputs may differ there and still agree:
   * |a − b| ≤ SPOT_CHECK_ABS_TOLERANCE + SPOT_CHECK_REL_TOLERANCE × max(|a|, |b|) (defaults 1e-3, 1e-2).
   */
  SPOT_CHECK_RATE?: string
  SPOT_CHECK_ABS_TOLERANCE?: string
  SPOT_CHECK_REL_TOLERANCE?: string
  /**
   * Hedged requests (gateway/hedging.ts): a job out on its device longer than twice that
   * device's p95 for such jobs goes to a second device too. At most this many hedges per job
   * dispatched, over time (0 to 1, default 0.05); 0 turns hedging off.
   */
  HEDGE_RATE?: string
  /**
   * Bytes of job inputs the Gateway holds in flight at most (gateway/inflight-budget.ts; default
   * 64 MiB, half a Durable Object's memory); one API key's jobs at most half of it. Past either,
   * a job is refused at once: 503 gateway-busy, or 429 for the key, with Retry-After. 0: no limit.
   */
  MAX_INFLIGHT_BYTES?: string
}

/**
 * A variable holding a number from 0 to `max`: `fallback` when it is unset or empty, and when it
 * is not such a number (`invalid` hears of that, e.g. to warn).
 */
export function nonNegativeVar(value: string | undefined, fallback: number, max = Number.MAX_VALUE, invalid?: () => void): number {
  const raw = value?.trim() ?? ''
  if (raw === '') return fallback
  const parsed = Number(raw)
  if (Number.isFinite(parsed) && parsed >= 0 && parsed <= max) return parsed
  invalid?.()
  return fallback
}

export function numberVar(value: string | undefined, fallback: number): number {
  const parsed = Number(value)
  return value !== undefined && value !== '' && Number.isFinite(parsed) && parsed > 0 ? parsed : fallback
}

const ZERO_ADDRESS: Hex = '0x0000000000000000000000000000000000000000'

/**
 * The EIP-712 domain devices sign attestations under: the configured chain and registry, or
 * chain 0 and the zero address while none is configured (attestations are still signed,
 * verified and recorded; they are batched once a chain is configured).
 */
export function attestationDomain(env: Pick<Env, 'CHAIN_ID' | 'REGISTRY_ADDRESS'>): AttestationDomain {
  const chainId = /^[0-9]{1,20}$/.test(env.CHAIN_ID ?? '') ? BigInt(env.CHAIN_ID) : 0n
  const registry = isAddress(env.REGISTRY_ADDRESS ?? '') ? (env.REGISTRY_ADDRESS.toLowerCase() as Hex) : ZERO_ADDRESS
  return { chainId, verifyingContract: registry }
}
