/**
 * Payment routes (mounted under `/api`, behind its API-key auth):
 *
 *   GET /api/account              the key's payer: escrow balance, available, what its jobs hold
 *   GET /api/payouts/{address}    cumulative earnings and the Merkle proof to claim them
 */
import { addressProblem, type Hex } from '@depinfer/shared'
import { Hono } from 'hono'
import type { Env } from '../env.js'
import { InvalidRequestError, NotFoundError } from '../errors/request.js'
import { flushGatewayAttestations } from '../gateway/flush-attestations.js'
import type { AuthVariables } from '../middleware/auth.js'
import { claimedOnChain, escrowAccount } from '../payments/balances.js'
import { paymentsSetting } from '../payments/config.js'
import { payoutOf } from '../payments/payouts.js'
import { payerHolds } from '../payments/reservations.js'

export const payments = new Hono<{ Bindings: Env; Variables: AuthVariables }>()

payments.get('/account', async (c) => {
  const setting = paymentsSetting(c.env)
  const payer = c.get('payer')
  const base = { apiKeyLabel: c.get('apiKeyLabel'), payer, paymentsEnabled: setting.enabled }
  if (!setting.enabled || payer === null) return c.json(base)
  const { config } = setting
  // Answered jobs are charged when their attestations reach D1: flushed first, they count as
  // charged rather than reserved. The holds' total is the same either way.
  const [escrow, holds] = await Promise.all([
    escrowAccount(config, payer),
    flushGatewayAttestations(c.env).then(() => payerHolds(c.env.DB, payer)),
  ])
  return c.json({
    ...base,
    escrow: config.escrow,
    balanceWei: escrow.balance.toString(),
    availableWei: escrow.available.toString(),
    // In Unix ms like every other time in the API (the Escrow counts seconds), by the chain's clock.
    withdrawal: escrow.withdrawal && { amountWei: escrow.withdrawal.amount.toString(), availableAt: Number(escrow.withdrawal.availableAt) * 1000 },
    // Held against availableWei until settled on-chain (then the balance itself is lower).
    reserved: { jobs: holds.reserved.jobs, wei: holds.reserved.wei.toString() },
    chargedUnsettled: { jobs: holds.chargedUnsettled.jobs, wei: holds.chargedUnsettled.wei.toString() },
    spendableWei: maxZero(escrow.available - holds.reserved.wei - holds.chargedUnsettled.wei).toString(),
  })
})

payments.get('/payouts/:address', async (c) => {
  const address = c.req.param('address')
  const problem = addressProblem(address)
  if (problem !== undefined) throw new InvalidRequestError(`address ${problem}, got ${JSON.stringify(address.slice(0, 80))}`, 'address')
  const account = address.toLowerCase() as Hex
  const view = await payoutOf(c.env.DB, account)
  if (!view) throw new NotFoundError(`${address} has no earnings in a settled batch`, 'address')
  const setting = paymentsSetting(c.env)
  // What is already claimed is the chain's to say; the proof is served even when it cannot be read.
  const claimed = setting.enabled ? await claimedOnChain(setting.config, account) : undefined
  return c.json({
    ...view,
    ...(claimed !== undefined && { claimed: claimed.toString(), claimable: maxZero(BigInt(view.cumulative) - claimed).toString() }),
    ...(setting.enabled && { escrow: setting.config.escrow }),
  })
})

const maxZero = (n: bigint) => (n > 0n ? n : 0n)
