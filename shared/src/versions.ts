/**
 * Model versions: what a version may be, and which of two is newer. The edge (catalog, "newest"
 * for a request without a version) and the agent (`published: "<name>"` sources) must order
 * versions alike, or a device would serve a version the edge never routes to.
 */
import { z } from 'zod'

/** 1-32 letters, digits, ".", "_" or "-" (one topic-safe, URL-safe path segment). */
export const VersionSchema = z.string().regex(/^[A-Za-z0-9._-]{1,32}$/, 'must be 1-32 letters, digits, ".", "_" or "-"')

/** Orders versions numerically where both are numbers, else lexically. */
export function compareVersions(a: string, b: string): number {
  const na = Number(a)
  const nb = Number(b)
  if (Number.isFinite(na) && Number.isFinite(nb)) return na - nb
  return a < b ? -1 : a > b ? 1 : 0
}
