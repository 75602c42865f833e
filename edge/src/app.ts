/** The edge's HTTP application: middleware, routes, error mapping. */
import { Hono } from 'hono'
import { requestId } from 'hono/request-id'
import type { Env } from './env.js'
import { onError, onNotFound } from './middleware/problem.js'
import { api } from './routes/api.js'
import { models } from './routes/models.js'
import { v2 } from './routes/v2.js'

export const app = new Hono<{ Bindings: Env }>()

app.use('*', requestId())
app.route('/v2', v2)
app.route('/api/models', models)
app.route('/api', api)
app.onError(onError)
app.notFound(onNotFound)
