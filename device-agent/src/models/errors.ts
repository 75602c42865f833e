/**
 * Why a model could not be fetched. `retryable` says whether trying again can help (network,
 * server trouble) or not (wrong key, unknown model, wrong bytes): the downloader retries only
 * the former, and the agent tries those again at its next listing of published models.
 */
export class DownloadError extends Error {
  override name = 'DownloadError'
  constructor(
    message: string,
    readonly retryable: boolean,
    options?: ErrorOptions,
  ) {
    super(message, options)
  }
}

/** The server answered with an error status; `problem` is its application/problem+json detail. */
export class HttpStatusError extends DownloadError {
  override name = 'HttpStatusError'
  constructor(
    readonly status: number,
    message: string,
  ) {
    // 408/429/5xx are the server's momentary trouble; any other 4xx will answer the same again.
    super(message, status >= 500 || status === 408 || status === 429)
  }
}

/** The bytes are not the file that was asked for. Never retried, never loaded. */
export class ChecksumMismatchError extends DownloadError {
  override name = 'ChecksumMismatchError'
  constructor(
    readonly expected: string,
    readonly actual: string,
    what: string,
  ) {
    super(`${what}: sha256 is ${actual}, expected ${expected}`, false)
  }
}

/** The connection ended (or broke) before the whole file arrived; what did arrive is kept to resume from. */
export class TruncatedDownloadError extends DownloadError {
  override name = 'TruncatedDownloadError'
  constructor(message: string, options?: ErrorOptions) {
    super(message, true, options)
  }
}

/** Nothing arrived for the stall timeout: the connection is dropped and the download resumed. */
export class StalledDownloadError extends DownloadError {
  override name = 'StalledDownloadError'
  constructor(message: string) {
    super(message, true)
  }
}

/**
 * The file does not fit in the free space of the cache now. Not retried by the downloader, but
 * tried again at the next listing (provision.ts, retryableFailure), as a full cache is.
 */
export class ModelTooLargeError extends DownloadError {
  override name = 'ModelTooLargeError'
  constructor(message: string) {
    super(message, false)
  }
}

/** Every attempt failed with a retryable error; `cause` is the last one. */
export class DownloadFailedError extends DownloadError {
  override name = 'DownloadFailedError'
  constructor(
    what: string,
    readonly attempts: number,
    cause: DownloadError,
  ) {
    super(`${what}: download failed after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${cause.message}`, true, { cause })
  }
}

/**
 * The message of an error response: the problem+json `detail` (or `title`) when there is one,
 * else the start of the body.
 */
async function responseProblem(response: Response): Promise<string> {
  const text = await response.text().catch(() => '')
  if (/json/i.test(response.headers.get('content-type') ?? '')) {
    try {
      const problem: unknown = JSON.parse(text)
      if (problem !== null && typeof problem === 'object') {
        const { detail, title } = problem as { detail?: unknown; title?: unknown }
        if (typeof detail === 'string' && detail) return detail
        if (typeof title === 'string' && title) return title
      }
    } catch {
      // not JSON after all: fall through to the raw text
    }
  }
  // One line of text: an HTML error page (a web server's, a proxy's) without its markup.
  return text.replace(/<(script|style)[^>]*>[^]*?<\/\1>/gi, ' ').replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 200).trim()
}

/**
 * An HttpStatusError whose message says what to fix, for the edge's statuses that have a usual
 * cause (`fromEdge`: the request went to the edge's API, with its API key).
 */
export async function httpStatusError(
  response: Response,
  what: string,
  fromEdge: boolean,
  /** What the edge's own 404 means for this request: default, a model file it does not have. */
  edgeNotFound = ' (is it published on the edge?)',
): Promise<HttpStatusError> {
  const problem = await responseProblem(response)
  const hint = !fromEdge
    ? ''
    : response.status === 401 || response.status === 403
      ? ' (check edge.apiKey / DEPINFER_API_KEY)'
      : response.status === 404
        ? // The edge answers every 404 as problem+json: anything else is not the edge's API.
          /problem\+json/i.test(response.headers.get('content-type') ?? '')
          ? edgeNotFound
          : ' (is edge.url the address of a depinfer edge? nothing there answers as one)'
        : ''
  return new HttpStatusError(
    response.status,
    `${what}: HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}${problem ? `: ${problem}` : ''}${hint}`,
  )
}
