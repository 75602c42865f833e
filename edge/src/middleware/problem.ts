/**
 * Turns every failure into an RFC 9457 `application/problem+json` response. On `/v2` routes
 * the same body also carries the Open Inference Protocol's `"error": "<message>"` string, so v2
 * clients and problem+json clients both understand it. Transient failures get Retry-After.
 */
import type { Context } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { DepinferError } from '../errors/base.js'
import { discardUnreadBody } from '../http/read-body.js'

/**
 * Details and paths echo what the request sent (a model name, a shape): cut at this many
 * characters, or a 100 KB name comes back three times over.
 */
const MAX_ECHO_CHARS = 2_000

function capped(text: string): string {
  return text.length <= MAX_ECHO_CHARS ? text : `${text.slice(0, MAX_ECHO_CHARS)}… (${text.length - MAX_ECHO_CHARS} more characters)`
}

export function problemResponse(c: Context, error: DepinferError): Response {
  const problem = error.toProblem()
  const detail = capped(problem.detail)
  const body = {
    ...problem,
    detail,
    instance: capped(c.req.path),
    ...(c.req.path.startsWith('/v2') && { error: detail }),
  }
  const headers: Record<string, string> = { 'Content-Type': 'application/problem+json' }
  if (error.retryAfterSec !== undefined) headers['Retry-After'] = String(error.retryAfterSec)
  if (error.status === 401) headers['WWW-Authenticate'] = 'Bearer realm="depinfer"'
  return new Response(JSON.stringify(body), { status: error.status, headers })
}

export async function onError(error: Error, c: Context): Promise<Response> {
  await discardUnreadBody(c.req.raw)
  if (error instanceof DepinferError) return problemResponse(c, error)
  if (error instanceof HTTPException && error.status < 500) {
    return problemResponse(
      c,
      new DepinferError(error.status, 'http-error', 'Request rejected', error.message || 'request rejected'),
    )
  }
  // A bug, not an input problem: log it with the stack; the caller gets a plain problem.
  console.error('unhandled error', error)
  return problemResponse(
    c,
    new DepinferError(500, 'internal', 'Internal error', 'the edge failed unexpectedly; the error is logged'),
  )
}

export async function onNotFound(c: Context): Promise<Response> {
  await discardUnreadBody(c.req.raw)
  return problemResponse(
    c,
    new DepinferError(404, 'no-such-route', 'Not found', `no route ${c.req.method} ${c.req.path}`, {
      field: 'path',
    }),
  )
}
