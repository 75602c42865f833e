/**
 * A Map kept in least-recently-used order, bounded: what the gateway keeps per kind of job
 * (round trips, failures), where kinds come and go with the models and input sizes callers send.
 */

/**
 * The value of `key` in `map`, created by `create` when missing, and moved to the end of the
 * map's order (most recently used); the least recently used entry is dropped first to keep at
 * most `max`.
 *
 * @example
 * const counts = new Map<string, { n: number }>()
 * useRecent(counts, 'a', () => ({ n: 0 }), 64).n++
 */
export function useRecent<K, V>(map: Map<K, V>, key: K, create: () => V, max: number): V {
  let value = map.get(key)
  if (value === undefined) {
    value = create()
    if (map.size >= max) map.delete(map.keys().next().value!)
  } else {
    map.delete(key)
  }
  map.set(key, value)
  return value
}
