/** The edge's HTTP application: middleware, routes, error mapping. */
import { Hono, type MiddlewareHandler } from 'hono'
import { requestId } from 'hono/request-id'
import { METHOD_NAME_ALL } from 'hono/router'
import { TrieRouter } from 'hono/router/trie-router'
import type { Env } from './env.js'
import { DepinferError } from './errors/base.js'
import { UnsupportedContentEncodingError } from './http/read-body.js'
import { corsWhenConfigured } from './middleware/cors.js'
import { onError, onNotFound } from './middleware/problem.js'
import { api } from './routes/api.js'
import { keys } from './routes/keys.js'
import { models } from './routes/models.js'
import { uploads } from './routes/uploads.js'
import { v2 } from './routes/v2.js'

/** 405: the path is a route, but not for this method; `allow` lists the methods it has. */
export class MethodNotAllowedError extends DepinferError {
  constructor(
    method: string,
    path: string,
    readonly allow: readonly string[],
  ) {
    super(405, 'method-not-allowed', 'Method not allowed', `${path} does not answer ${method}; it answers ${allow.join(', ')}`, {
      field: 'method',
    })
  }
}

export const app = new Hono<{ Bindings: Env }>()

/** The methods of every route, by path; built on first use, once every route is registered. */
let routeMethods: TrieRouter<string> | undefined

/** The methods `path` has routes for (HEAD wherever GET: Hono answers it with GET's handler). */
function allowedMethods(path: string): string[] {
  if (!routeMethods) {
    routeMethods = new TrieRouter<string>()
    // Middleware (`use`) is registered for every method: it says nothing about a path's routes.
    for (const route of app.routes) if (route.method !== METHOD_NAME_ALL) routeMethods.add(METHOD_NAME_ALL, route.path, route.method)
  }
  const allowed = new Set(routeMethods.match('GET', path)[0].map(([method]) => method))
  if (allowed.has('GET')) allowed.add('HEAD')
  return [...allowed]
}

/**
 * A known path asked with a method it has no route for is a 405 with Allow (RFC 9110 §15.5.6),
 * not the 404 of an unknown path. It runs before authentication: the health routes are open,
 * so `POST /v2/health/live` is a 405 too, and which methods a path has is no secret (README).
 */
const methodNotAllowed: MiddlewareHandler = async (c, next) => {
  const allowed = allowedMethods(c.req.path)
  if (allowed.length > 0 && !allowed.includes(c.req.method)) throw new MethodNotAllowedError(c.req.method, c.req.path, allowed)
  await next()
}

/**
 * The headers RFC 9110 asks of some problems, set on the problem response once onError has
 * written it: Allow on a 405, Accept-Encoding on a 415 for a content coding. And X-Request-Id,
 * which onError's fresh response would lack: a failed request is the one a caller traces.
 */
const problemHeaders: MiddlewareHandler = async (c, next) => {
  await next()
  if (c.error instanceof MethodNotAllowedError) c.res.headers.set('Allow', c.error.allow.join(', '))
  if (c.error instanceof UnsupportedContentEncodingError) c.res.headers.set('Accept-Encoding', c.error.acceptEncoding)
  const id = c.get('requestId') as string | undefined
  if (id !== undefined && !c.res.headers.has('X-Request-Id')) c.res.headers.set('X-Request-Id', id)
}

/**
 * HEAD answers with the headers GET would (RFC 9110 §9.3.2), Content-Length included: Hono runs
 * GET's handler and drops the body after this, and without the length health checkers that
 * compare it saw none.
 */
const headContentLength: MiddlewareHandler = async (c, next) => {
  await next()
  if (c.req.method !== 'HEAD' || c.res.body === null || c.res.headers.has('Content-Length')) return
  const length = (await c.res.clone().arrayBuffer()).byteLength
  c.res.headers.set('Content-Length', String(length))
}

app.use('*', requestId())
app.use('*', headContentLength)
app.use('*', problemHeaders)
// Before the 405 check: a preflight is an OPTIONS no route has.
app.use('*', corsWhenConfigured)
app.use('*', methodNotAllowed)
app.route('/v2', v2)
app.route('/api/models/uploads', uploads)
app.route('/api/models', models)
app.route('/api/keys', keys)
app.route('/api', api)
app.onError(onError)
app.notFound(onNotFound)
