/**
 * CORS for browser clients, off unless `CORS_ALLOW_ORIGINS` names origins (comma-separated, or
 * `*`). Keys travel in `Authorization`, not cookies, so credentials are never allowed and `*` is
 * safe to offer; but a browser page holding an API key is the operator's choice, hence opt-in.
 *
 * With it on, a preflight (OPTIONS with Origin and Access-Control-Request-Method) is a 204 with
 * the methods and request headers the API takes, before the 405 check and before
 * authentication (browsers send no Authorization on a preflight); every other answer, problems
 * included, carries Access-Control-Allow-Origin for an allowed origin and exposes the headers a
 * client reads (binary tensors' Inference-Header-Content-Length, Retry-After…).
 */
import type { MiddlewareHandler } from 'hono'
import { cors } from 'hono/cors'
import type { Env } from '../env.js'
import { HEADER_LENGTH_HEADER } from '../v2/binary-body.js'

/** The request headers a browser client may send (beyond the CORS-safelisted ones). */
const ALLOWED_REQUEST_HEADERS = ['Authorization', 'Content-Type', 'Content-Encoding', HEADER_LENGTH_HEADER, 'X-Request-Id', 'Range', 'If-Range']

/** The response headers a browser client may read (beyond the CORS-safelisted ones). */
const EXPOSED_RESPONSE_HEADERS = [
  HEADER_LENGTH_HEADER,
  'X-Request-Id',
  'Retry-After',
  'Allow',
  'Accept-Encoding',
  'Location',
  'ETag',
  'Accept-Ranges',
  'Content-Range',
  'Content-Length',
  'X-Model-Sha256',
  'WWW-Authenticate',
]

/**
 * The origins `CORS_ALLOW_ORIGINS` lists: `*`, or origins (scheme://host[:port]) in the form
 * browsers send them (`new URL(entry).origin`: lower-case host, no default port, no trailing
 * slash). An entry that is not an origin (has a path, a query, no scheme) can never match and is
 * left out.
 */
export function allowedOrigins(setting: string | undefined): '*' | ReadonlySet<string> {
  const entries = (setting ?? '').split(',').map((o) => o.trim()).filter(Boolean)
  if (entries.includes('*')) return '*'
  const origins = new Set<string>()
  for (const entry of entries) {
    let url: URL
    try {
      url = new URL(entry)
    } catch {
      continue
    }
    if (url.origin === 'null' || url.pathname !== '/' || url.search !== '' || url.hash !== '' || entry.includes('@')) continue
    origins.add(url.origin)
  }
  return origins
}

/** The last setting read and what it allows: the setting is fixed per deployment, so parsed once. */
let parsed: { setting: string; allowed: '*' | ReadonlySet<string> } | undefined

const corsHandler = cors({
  origin: (origin, c) => {
    const setting = (c.env as Env).CORS_ALLOW_ORIGINS ?? ''
    if (parsed?.setting !== setting) parsed = { setting, allowed: allowedOrigins(setting) }
    const { allowed } = parsed
    if (allowed === '*') return '*'
    return allowed.has(origin) ? origin : null
  },
  // PUT: a resumable upload's parts (PUT /api/models/uploads/{id}/parts/{n}).
  allowMethods: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE'],
  allowHeaders: ALLOWED_REQUEST_HEADERS,
  exposeHeaders: EXPOSED_RESPONSE_HEADERS,
  // Chromium caps it at 2 hours, Firefox at 24; 10 minutes keeps a changed setting from lingering.
  maxAge: 600,
})

export const corsWhenConfigured: MiddlewareHandler<{ Bindings: Env }> = async (c, next) => {
  const setting = c.env.CORS_ALLOW_ORIGINS
  if (setting === undefined || setting.trim() === '') return next()
  // Only a preflight is answered here; any other OPTIONS goes on to the 405 like any method a path lacks.
  if (c.req.method === 'OPTIONS' && (c.req.header('Origin') === undefined || c.req.header('Access-Control-Request-Method') === undefined)) return next()
  return corsHandler(c, next)
}
