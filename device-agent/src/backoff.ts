/**
 * Jittered exponential back-off, for reconnecting to the broker and retrying downloads: a fleet
 * that lost the same broker or edge at the same moment comes back spread out, not all at once.
 */

/**
 * The delay before retry `attempt` (0 for the first): uniform in [min, min(max, min × 2^(attempt+1))).
 * Every attempt is jittered, the first too: after a broker restart a fleet's first reconnects
 * spread over [min, 2·min) instead of all landing at `min` (AWS architecture blog, "full jitter",
 * with `min` as its floor).
 */
export function backoffMs(attempt: number, minMs: number, maxMs: number, random = Math.random): number {
  const cap = Math.min(maxMs, minMs * 2 ** (attempt + 1))
  return minMs + Math.floor(random() * Math.max(0, cap - minMs))
}
