import type { Env } from '../env.js'

/** The Gateway Durable Object this Worker routes through (one per GATEWAY_ID). */
export const gatewayStub = (env: Env) => env.GATEWAY.get(env.GATEWAY.idFromName(env.GATEWAY_ID))
