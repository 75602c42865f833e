/** Bindings and variables of the edge Worker, as declared in wrangler.toml. */
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
}

export function numberVar(value: string | undefined, fallback: number): number {
  const parsed = Number(value)
  return value !== undefined && value !== '' && Number.isFinite(parsed) && parsed > 0 ? parsed : fallback
}
