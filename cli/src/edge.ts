/**
 * Talking to the edge: its URL (DEPINFER_URL, checked before anything is read or quantized) and
 * one request, whose failures, unreachable edge, error answer or unreadable answer, all become
 * an EdgeError naming the URL or the edge's problem.
 */
import { messageOf } from '@depinfer/shared'
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
  return messageOf(error)
}

/**
 * How long a request may go without progress (a chunk of its body sent, its answer arriving)
 * before it is given up: a host that takes the connection and never answers would otherwise
 * hold the command for undici's 5 minutes. DEPINFER_EDGE_TIMEOUT_SEC changes it (30 s).
 */
export function edgeIdleTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const seconds = Number(env.DEPINFER_EDGE_TIMEOUT_SEC || 30)
  // Node's timers take at most 2^31 - 1 ms (about 24.8 days); beyond, they fire at once.
  if (!(seconds > 0 && seconds * 1000 <= MAX_TIMER_MS)) {
    throw new CliError(`DEPINFER_EDGE_TIMEOUT_SEC must be a number of seconds above 0 and at most ${Math.floor(MAX_TIMER_MS / 1000)}, got ${JSON.stringify(env.DEPINFER_EDGE_TIMEOUT_SEC)}`, 2)
  }
  return seconds * 1000
}
const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * Once an upload's body is all handed to fetch, what is still in the sockets' buffers must reach
 * the edge, which then hashes, checks and stores it: the answer is awaited longer by the time
 * the whole body would take at this rate (a slow uplink), on top of the idle timeout.
 */
const SLOW_UPLINK_BYTES_PER_SEC = 256 * 1024
export const uploadDrainMs = (bodyBytes: number) => (bodyBytes / SLOW_UPLINK_BYTES_PER_SEC) * 1000

/**
 * Sends `init` to `url` (on `edge`) and returns the status and JSON answer; throws EdgeError for
 * an edge that cannot be reached or stops answering (edgeIdleTimeoutMs without progress),
 * answers an error (`what` failed: its detail and field), or answers something other than JSON.
 * `init` may be a function of `progress`, for a body that says when it sends a chunk (and, with
 * the extra time its buffers may need, when it has handed over its last).
 */
export async function requestEdge(
  edge: URL,
  url: URL,
  init: RequestInit | ((progress: (extraMs?: number) => void) => RequestInit),
  what: string,
  idleTimeoutMs = edgeIdleTimeoutMs(),
): Promise<{ status: number; json: Record<string, unknown> }> {
  const abort = new AbortController()
  let timer: NodeJS.Timeout | undefined
  let settled = false
  const progress = (extraMs = 0) => {
    // A body pulled after the answer (an early 413, say) must not start a timer again.
    if (settled) return
    clearTimeout(timer)
    const ms = Math.min(idleTimeoutMs + extraMs, MAX_TIMER_MS)
    timer = setTimeout(() => abort.abort(new Error(`no answer for ${Math.round(ms / 1000)} s`)), ms)
  }
  let response: Response
  let text: string
  try {
    progress()
    response = await fetch(url, { ...(typeof init === 'function' ? init(progress) : init), signal: abort.signal })
    progress()
    text = await response.text()
  } catch (error) {
    const why = abort.signal.aborted ? (abort.signal.reason as Error).message : transportFailure(error)
    throw new EdgeError(`cannot reach the edge at ${edge.origin} (DEPINFER_URL): ${why}`, undefined, undefined, { cause: error })
  } finally {
    settled = true
    clearTimeout(timer)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    // Not JSON: a proxy's or another server's page; reported below with the raw text.
  }
  const object = json !== null && typeof json === 'object' && !Array.isArray(json) ? (json as Record<string, unknown>) : undefined
  if (!response.ok) {
    const detail = typeof object?.detail === 'string' ? object.detail : text.trim() ? text.slice(0, 300).replace(/\s+/g, ' ') : 'an empty answer (is DEPINFER_URL the depinfer edge?)'
    const field = typeof object?.field === 'string' ? object.field : undefined
    throw new EdgeError(`${what} failed (${response.status}): ${detail}${field ? ` [${field}]` : ''}`, response.status, field)
  }
  if (!object) throw new EdgeError(`${what}: ${url.origin} answered ${response.status} with something other than JSON; is DEPINFER_URL the depinfer edge?`, response.status)
  return { status: response.status, json: object }
}
