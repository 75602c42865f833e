/** Worker entry: the HTTP app, the scheduled batcher and the Gateway Durable Object class. */
import { app } from './app.js'
import { runBatchTick } from './batching/batcher.js'
import type { Env } from './env.js'

export { Gateway } from './gateway/gateway.js'

export default {
  fetch: app.fetch,
  // Awaited rather than waitUntil: the invocation then lasts as long as the tick, and a caller
  // of the scheduled event (tests, `npm start`) sees it finished.
  async scheduled(_controller, env) {
    await runBatchTick(env)
  },
} satisfies ExportedHandler<Env>
