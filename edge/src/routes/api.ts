/** Marketplace and operations routes under `/api` (API key required). */
import { Hono } from 'hono'
import type { Env } from '../env.js'
import { DepinferError } from '../errors/base.js'
import { apiKeyAuth } from '../middleware/auth.js'

export const api = new Hono<{ Bindings: Env }>()

api.use('*', apiKeyAuth)

/** Where attestations go on-chain, so anyone can check proofs with their own client. */
api.get('/chain', (c) => {
  const chainId = Number(c.env.CHAIN_ID)
  if (!Number.isSafeInteger(chainId) || chainId <= 0 || !/^0x[0-9a-fA-F]{40}$/.test(c.env.REGISTRY_ADDRESS ?? '')) {
    throw new DepinferError(503, 'chain-not-configured', 'No chain configured',
      'this edge has no CHAIN_ID / REGISTRY_ADDRESS configured (see README "Production")', { retryAfterSec: 60 })
  }
  return c.json({
    chainId,
    rpcUrl: c.env.CHAIN_RPC_URL || null,
    contracts: { attestationRegistry: c.env.REGISTRY_ADDRESS },
  })
})
