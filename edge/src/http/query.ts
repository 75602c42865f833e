/**
 * Query parameters of the `/api` routes, read strictly: a misspelt one (`?limt=5`,
 * `?desciption=`) would otherwise be dropped unseen, and the caller would get a default they did
 * not ask for without a word.
 */
import type { Context } from 'hono'
import { InvalidRequestError } from '../errors/request.js'

/** Longest parameter name or value quoted back in an error. */
const QUOTED_MAX = 100

/**
 * Refuses (400, naming it) a query parameter not in `allowed`, and one given more than once
 * unless it is `repeatable` (a list, one value per item): which of two values was meant is not
 * for the edge to guess.
 */
export function checkQueryParameters(c: Context, allowed: readonly string[], repeatable: readonly string[] = []): void {
  for (const [parameter, values] of Object.entries(c.req.queries())) {
    const quoted = parameter.slice(0, QUOTED_MAX)
    if (!allowed.includes(parameter)) {
      const takes = allowed.length === 0 ? 'this route takes no query parameters' : `this route takes ${allowed.join(', ')}`
      throw new InvalidRequestError(`unknown parameter ${JSON.stringify(quoted)}: ${takes}`, quoted)
    }
    if (values.length > 1 && !repeatable.includes(parameter)) throw new InvalidRequestError(`${parameter} is given ${values.length} times; give it once`, parameter)
  }
}

/** An integer query parameter from `min` to `max`, or `fallback` when absent. */
export function intQuery<D extends number | undefined>(value: string | undefined, field: string, fallback: D, min: number, max: number): number | D {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!/^[0-9]+$/.test(value) || n < min || n > max) {
    throw new InvalidRequestError(`${field} must be an integer from ${min} to ${max}, got ${JSON.stringify(value.slice(0, QUOTED_MAX))}`, field)
  }
  return n
}
