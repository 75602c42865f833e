/**
 * The edge as the chain commands use it: only when they need it (chain settings not given in the
 * environment, payout proofs), so DEPINFER_URL and DEPINFER_API_KEY are checked then, with the
 * reason in the message, and a provider with its own RPC and addresses needs no API key at all.
 */
import { ADDRESS_PATTERN } from '@depinfer/shared'
import { z } from 'zod'
import { EdgeError, edgeUrlFrom, requestEdge } from './edge.js'
import { CliError } from './errors.js'

export class EdgeSession {
  #url: URL | undefined

  constructor(private readonly env: NodeJS.ProcessEnv) {}

  get url(): URL {
    this.#url ??= edgeUrlFrom(this.env.DEPINFER_URL)
    return this.#url
  }

  /**
   * GETs `path` and checks the answer against `schema`; `what` names the request in errors and
   * `why` says what the edge is asked for when DEPINFER_API_KEY is missing. An answer of another
   * shape is an EdgeError (an older or foreign server), never a crash further on.
   */
  async get<T>(path: string, schema: z.ZodType<T>, what: string, why: string): Promise<T> {
    const apiKey = this.env.DEPINFER_API_KEY
    if (!apiKey) throw new CliError(`set DEPINFER_API_KEY to your API key (npm start prints one): ${why}`, 2)
    const url = new URL(path, this.url)
    const { json } = await requestEdge(this.url, url, { headers: { Authorization: `Bearer ${apiKey}` } }, what)
    const parsed = schema.safeParse(json)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      throw new EdgeError(`${what}: the edge at ${this.url.origin} answered an unexpected shape (${issue?.path.join('.') || 'answer'}: ${issue?.message}); is DEPINFER_URL a depinfer edge of this version?`)
    }
    return parsed.data
  }
}

/** A 0x address as the edge writes them (any case). */
export const addressSchema = z.string().regex(ADDRESS_PATTERN)
