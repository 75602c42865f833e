/**
 * One base error for the edge. Every failure a caller can see is a DepinferError that knows its
 * HTTP status, its RFC 9457 problem type, the offending field and whether it is transient
 * (transient ones carry Retry-After). The problem middleware turns them into responses.
 */

/** The RFC 9457 problem details body depinfer sends, plus its extension members. */
export interface ProblemDetails {
  type: string
  title: string
  status: number
  detail: string
  /** The offending field as a path into the request, e.g. `inputs[0].shape`. */
  field?: string
  /** Seconds a client should wait before retrying a transient failure. */
  retryAfterSec?: number
}

export interface DepinferErrorOptions {
  field?: string
  retryAfterSec?: number
  cause?: unknown
}

/** Problem type URIs are URNs: stable identifiers, not pages that must exist. */
export const problemType = (slug: string) => `urn:depinfer:problem:${slug}`

export class DepinferError extends Error {
  override name = 'DepinferError'
  readonly field: string | undefined
  readonly retryAfterSec: number | undefined

  constructor(
    readonly status: number,
    readonly slug: string,
    readonly title: string,
    /** What exactly went wrong, including the offending value. */
    readonly detail: string,
    options: DepinferErrorOptions = {},
  ) {
    super(detail, { cause: options.cause })
    this.field = options.field
    this.retryAfterSec = options.retryAfterSec
  }

  get transient(): boolean {
    return this.retryAfterSec !== undefined
  }

  toProblem(): ProblemDetails {
    return {
      type: problemType(this.slug),
      title: this.title,
      status: this.status,
      detail: this.detail,
      ...(this.field !== undefined && { field: this.field }),
      ...(this.retryAfterSec !== undefined && { retryAfterSec: this.retryAfterSec }),
    }
  }

  /** Rebuilds an error from its problem (Durable Object RPC carries plain objects only). */
  static fromProblem(problem: ProblemDetails): DepinferError {
    const slug = problem.type.replace(problemType(''), '')
    return new DepinferError(problem.status, slug, problem.title, problem.detail, {
      ...(problem.field !== undefined && { field: problem.field }),
      ...(problem.retryAfterSec !== undefined && { retryAfterSec: problem.retryAfterSec }),
    })
  }
}
