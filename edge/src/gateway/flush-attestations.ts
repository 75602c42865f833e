/**
 * For readers of D1 that must see every answered job (the cron tick, the proofs, batches and
 * account APIs): asks the Gateway to move the attestations in its outbox to D1 first.
 */
import { messageOf } from '@depinfer/shared'
import type { Env } from '../env.js'
import { gatewayStub } from './stub.js'

/**
 * How many answered jobs are still not in D1 after the flush (0: D1 has every one), or
 * undefined when the Gateway could not be asked. Never throws: the caller goes on with what D1
 * has and decides what an incomplete flush means for it.
 */
export async function flushGatewayAttestations(env: Env): Promise<number | undefined> {
  try {
    // A failed flush is logged by the Gateway; its `pending` says enough here.
    return (await gatewayStub(env).flushAttestations()).pending
  } catch (error) {
    console.warn(`asking the gateway to flush its attestations: ${messageOf(error)}`)
    return undefined
  }
}
