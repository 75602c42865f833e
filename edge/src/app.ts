/** The edge's HTTP application: middleware, routes, error mapping. */
import { Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { requestId } from 'hono/request-id'
import { numberVar, type Env } from './env.js'
import { PayloadTooLargeError } from './errors/request.js'
import { onError, onNotFound } from './middleware/problem.js'
import { v2 } from './routes/v2.js'

const DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024

export const app = new Hono<{ Bindings: Env }>()

app.use('*', requestId())
app.use('*', async (c, next) => {
  const maxSize = numberVar(c.env.MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES)
  return bodyLimit({
    maxSize,
    onError: () => {
      throw new PayloadTooLargeError(maxSize)
    },
  })(c, next)
})
app.route('/v2', v2)
app.onError(onError)
app.notFound(onNotFound)
