/** Worker entry: the HTTP app and the Gateway Durable Object class. */
import { app } from './app.js'
import type { Env } from './env.js'

export { Gateway } from './gateway/gateway.js'

export default {
  fetch: app.fetch,
} satisfies ExportedHandler<Env>
