/**
 * Talking to the edge: its URL (DEPINFER_URL, checked before anything is read or quantized) and
 * one request, whose failures, unreachable edge, error answer or unreadable answer, all become
 * an EdgeError naming the URL or the edge's problem.
 */
import { CliError } from './errors.js'

/** What `npm start` runs. */
const DEFAULT_EDGE_URL = 'http://127.0.0.1:8787'

/** An error answer of the edge (its RFC 9457 problem, with the field it names), or a transport failure. */
export class EdgeError extends CliError {
  override name = 'EdgeError'
  constructor(message: string, readonly status?: number, readonly field?: string, options?: ErrorOptions) {
    super(message, 1, options)
  }
}

/** The edge's base URL from DEPINFER_URL (empty or unset: the default); anything but http(s) is an error naming the value. */
export function edgeUrlFrom(value: string | undefined): URL {
  const text = value || DEFAULT_EDGE_URL
  // URL.canParse accepts "localhost:8787" as a URL of scheme "localhost:", which fetch cannot use.
  const url = URL.canParse(text) ? new URL(text) : undefined
  if (url?.protocol !== 'http:' && url?.protocol !== 'https:') {
    throw new CliError(`DEPINFER_URL must be an http:// or https:// URL (e.g. ${DEFAULT_EDGE_URL}), got ${JSON.stringify(text)}`, 2)
  }
  return url
}

/**
 * Why fetch failed: undici throws `TypeError: fetch failed` and keeps the reason (e.g. `connect
 * ECONNREFUSED 127.0.0.1:8787`, `getaddrinfo ENOTFOUND edge.example`) in `cause`.
 */
function transportFailure(error: unknown): string {
  const cause = error instanceof Error ? error.cause : undefined
  if (cause instanceof Error) return cause.message
  return error instanceof Error ? error.message : String(error)
}

/**
 * Sends `init` to `url` (on `edge`) and returns the status and JSON answer; throws EdgeError for
 * an edge that cannot be reached, answers an error (`what` failed: its detail and field), or
 * answers something other than JSON.
 */
export async function requestEdge(edge: URL, url: URL, init: RequestInit, what: string): Promise<{ status: number; json: Record<string, unknown> }> {
  let response: Response
  let text: string
  try {
    response = await fetch(url, init)
    text = await response.text()
  } catch (error) {
    throw new EdgeError(`cannot reach the edge at ${edge.origin} (DEPINFER_URL): ${transportFailure(error)}`, undefined, undefined, { cause: error })
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    // Not JSON: a proxy's or another server's page; reported below with the raw text.
  }
  const object = json !== null && typeof json === 'object' && !Array.isArray(json) ? (json as Record<string, unknown>) : undefined
  if (!response.ok) {
    const detail = typeof object?.detail === 'string' ? object.detail : text.slice(0, 300).replace(/\s+/g, ' ')
    const field = typeof object?.field === 'string' ? object.field : undefined
    throw new EdgeError(`${what} failed (${response.status}): ${detail}${field ? ` [${field}]` : ''}`, response.status, field)
  }
  if (!object) throw new EdgeError(`${what}: ${url.origin} answered ${response.status} with something other than JSON; is DEPINFER_URL the depinfer edge?`, response.status)
  return { status: response.status, json: object }
}
