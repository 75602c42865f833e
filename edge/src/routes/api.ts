/** Marketplace and operations routes under `/api` (API key required). */
import { addressProblem, isAddress } from '@depinfer/shared'
import { Hono } from 'hono'
import type { Env } from '../env.js'
import { attestationCounts, jobAttestation, listBatches } from '../batching/proofs.js'
import { DepinferError } from '../errors/base.js'
import { ForbiddenError, InvalidRequestError, NotFoundError } from '../errors/request.js'
import { AttestationNotStoredYetError } from '../errors/routing.js'
import { flushGatewayAttestations } from '../gateway/flush-attestations.js'
import { checkQueryParameters, intQuery } from '../http/query.js'
import { apiKeyAuth, type AuthVariables } from '../middleware/auth.js'
import { listSpotChecks, spotCheckOfJob } from '../spot-checks/store.js'
import type { SpotCheckVerdict } from '../spot-checks/spot-check.js'
import { payments } from './payments.js'
import { paymentsSetting } from '../payments/config.js'
import { PaymentsMisconfiguredError } from '../errors/payment.js'

export const api = new Hono<{ Bindings: Env; Variables: AuthVariables }>()

api.use('*', apiKeyAuth)
api.route('/', payments)

/** Where attestations go on-chain, so anyone can check proofs with their own client. */
api.get('/chain', (c) => {
  const chainId = Number(c.env.CHAIN_ID)
  if (!Number.isSafeInteger(chainId) || chainId <= 0 || !isAddress(c.env.REGISTRY_ADDRESS ?? '')) {
    throw new DepinferError(503, 'chain-not-configured', 'No chain configured',
      'this edge has no CHAIN_ID / REGISTRY_ADDRESS configured (see README "Production")', { retryAfterSec: 60 })
  }
  return c.json({
    chainId,
    rpcUrl: c.env.CHAIN_RPC_URL || null,
    contracts: {
      attestationRegistry: c.env.REGISTRY_ADDRESS,
      // Pay per inference: deposits, settlements and payout claims (null: payments are off, or
      // misconfigured: then no job runs, and clients must not deposit to an address the edge refused).
      escrow: escrowInUse(c.env),
      // Staking: only devices active here are routed to (null: every device with a key is, or
      // the address is refused, and then no device is).
      providerRegistry: addressProblem(c.env.PROVIDER_REGISTRY_ADDRESS ?? '') === undefined ? c.env.PROVIDER_REGISTRY_ADDRESS! : null,
    },
  })
})

/** The Escrow the edge charges through, as its payment settings read it (null when payments are off or misconfigured). */
function escrowInUse(env: Env): string | null {
  try {
    const setting = paymentsSetting(env)
    return setting.enabled ? env.ESCROW_ADDRESS! : null
  } catch (error) {
    if (error instanceof PaymentsMisconfiguredError) return null
    throw error
  }
}

/** A job's attestation, its leaf and, once batched, the batch and the Merkle proof. */
api.get('/jobs/:jobId/attestation', async (c) => {
  const jobId = c.req.param('jobId')
  if (!/^0x[0-9a-fA-F]{64}$/.test(jobId)) {
    throw new InvalidRequestError(`job id must be 0x and 32 bytes of hex (the job_id response parameter), got ${JSON.stringify(jobId.slice(0, 80))}`, 'jobId')
  }
  // A job answered a moment ago may still be in the Gateway's outbox: it goes to D1 first.
  const pending = await flushGatewayAttestations(c.env)
  const view = await jobAttestation(c.env, jobId)
  // The job's spot check, when it had one (null: none, or not finished yet).
  if (view) return c.json({ ...view, spotCheck: (await spotCheckOfJob(c.env.DB, jobId)) ?? null })
  if (pending !== 0) {
    const gateway = pending === undefined ? 'the gateway could not be asked for the jobs it has not stored yet' : `the gateway has ${pending} answered job(s) not stored yet`
    throw new AttestationNotStoredYetError(`job ${jobId} is not in the attestation log, and ${gateway}: it may be one of them`)
  }
  throw new NotFoundError(`no attested job ${jobId}`, 'jobId')
})

/** Posted and pending batches, newest first: `?limit=` (1–500, default 50), `?before=<fromSeq>`. */
api.get('/batches', async (c) => {
  checkQueryParameters(c, ['limit', 'before'])
  const limit = intQuery(c.req.query('limit'), 'limit', 50, 1, 500)
  const before = intQuery(c.req.query('before'), 'before', undefined, 1, Number.MAX_SAFE_INTEGER)
  // Answered jobs still in the Gateway's outbox count as pending (not batched) attestations.
  const unstored = (await flushGatewayAttestations(c.env)) || 0
  const [batches, stored] = await Promise.all([listBatches(c.env.DB, limit, before), attestationCounts(c.env.DB)])
  return c.json({ batches, attestations: { total: stored.total + unstored, pending: stored.pending + unstored } })
})

const SPOT_CHECK_VERDICTS: readonly SpotCheckVerdict[] = ['confirmed', 'refuted', 'inconclusive']

/**
 * Spot checks (re-runs of answered jobs on other devices), newest first: `?verdict=`,
 * `?device=` (id or address: checks it answered or ran), `?limit=` (1–500, default 50),
 * `?before=` (a row's `cursor`, for the next page). For the operator's keys only: the rows name
 * every user's jobs and quote their outputs (a job's own check is on its attestation).
 */
api.get('/spot-checks', async (c) => {
  if (!c.get('apiKeyByOperator')) {
    throw new ForbiddenError(
      'spot checks are listed to the operator\'s keys only (stored in D1 directly: `npm run key:create -- <label> --wrangler`, or the key `npm start` prints; not one made through POST /api/keys, as `key:create` with DEPINFER_URL does); a job\'s own check is at /api/jobs/{jobId}/attestation',
    )
  }
  checkQueryParameters(c, ['limit', 'before', 'verdict', 'device'])
  const limit = intQuery(c.req.query('limit'), 'limit', 50, 1, 500)
  const before = intQuery(c.req.query('before'), 'before', undefined, 1, Number.MAX_SAFE_INTEGER)
  const verdict = c.req.query('verdict')
  if (verdict !== undefined && !SPOT_CHECK_VERDICTS.includes(verdict as SpotCheckVerdict)) {
    throw new InvalidRequestError(`verdict must be one of ${SPOT_CHECK_VERDICTS.join(', ')}, got ${JSON.stringify(verdict.slice(0, 80))}`, 'verdict')
  }
  const device = c.req.query('device')
  if (device !== undefined && (device.length === 0 || device.length > 256)) {
    throw new InvalidRequestError('device must be a device id or address (1 to 256 characters)', 'device')
  }
  const spotChecks = await listSpotChecks(c.env.DB, {
    limit,
    ...(before !== undefined && { before }),
    ...(verdict !== undefined && { verdict: verdict as SpotCheckVerdict }),
    ...(device !== undefined && { device }),
  })
  return c.json({ spotChecks })
})
