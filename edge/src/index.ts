/**
 * Worker entry: the HTTP app, the scheduled batcher and settler, and the Gateway Durable Object
 * class.
 */
import { app } from './app.js'
import { runBatchTick } from './batching/batcher.js'
import type { Env } from './env.js'
import { runSettlementTick } from './payments/settler.js'

export { Gateway } from './gateway/gateway.js'

export default {
  fetch: app.fetch,
  // Awaited rather than waitUntil: the invocation then lasts as long as the tick, and a caller
  // of the scheduled event (tests, `npm start`) sees it finished.
  async scheduled(_controller, env) {
    await runBatchTick(env)
    // Settles the batches just confirmed (and any left from earlier ticks), in batch order.
    await runSettlementTick(env)
  },
} satisfies ExportedHandler<Env>
