/**
 * How far the serving agent's V8 heap may grow before a major garbage collection.
 *
 * Every job brings several young ArrayBuffers of its input's size (the socket's reads, mqtt.js's
 * packet, the batch's stacked input). After each ~32 MB of them V8 runs a scavenge ("external
 * memory pressure"), and with its default growing factor (the old generation's limit about twice
 * the live heap: 23 → 47 MB here) it then started marking the whole heap right after nearly every
 * such scavenge, with the old generation at half its limit; as far as we can tell, the buffers
 * still count against the limit until they are swept. Under load (c=32, [1,3,48,192] FP32) that
 * was a mark-compact every 100–200 ms, each freeing little, and a third of the agent's CPU on V8's
 * marking and sweeping threads (`--trace-gc --trace-incremental-marking`, `perf`).
 *
 * A growing factor of 4 leaves ~70 MB of headroom over the ~23 MB live heap, more than one round
 * of buffers. In paired runs of 6,000 jobs the mark-compacts fell from 38–132 to 2 (3 in 15,000
 * jobs) and the agent's CPU per job from 1.7–2.3 ms to 1.35–1.6 ms (bench/RESULTS.md,
 * 2026-12-05 "the agent's garbage collector").
 * The cost is memory: the heap may reach ~4x its live size (here ~100 MB) before it is collected.
 * V8's maximum heap size (node's --max-old-space-size) still caps it.
 */
import { setFlagsFromString } from 'node:v8'

/** V8's `--heap-growing-percent`: the old generation's limit is (1 + this/100) x the live heap. */
const HEAP_GROWING_PERCENT = 300

/**
 * Applies the factor to this process's V8. V8 reads it each time it recomputes the limit (after
 * every mark-compact), so setting it after start-up takes effect. Sizes V8 fixes when the heap is
 * set up (the young generation's) could only be given on node's command line.
 */
export function tuneGarbageCollection(): void {
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
}
