/**
 * The event queue of the simulation: a binary min-heap on (time, insertion order). Ties in time
 * pop in insertion order, so a run never depends on heap internals and stays deterministic.
 * Times, sequence numbers and values sit in parallel arrays (no wrapper object per event).
 */
export class EventHeap<T> {
  readonly #times: number[] = []
  readonly #seqs: number[] = []
  readonly #values: T[] = []
  #nextSeq = 0

  get size(): number {
    return this.#values.length
  }

  /** Time of the earliest event, Infinity when empty. */
  peekTime(): number {
    return this.#values.length > 0 ? this.#times[0]! : Infinity
  }

  push(time: number, value: T): void {
    const times = this.#times
    const seqs = this.#seqs
    const values = this.#values
    const seq = this.#nextSeq++
    // Sift up with a hole: move parents down until the new event's slot is found.
    let i = values.length
    times.push(time)
    seqs.push(seq)
    values.push(value)
    while (i > 0) {
      const parent = (i - 1) >> 1
      const pt = times[parent]!
      if (pt < time || (pt === time && seqs[parent]! < seq)) break
      times[i] = pt
      seqs[i] = seqs[parent]!
      values[i] = values[parent]!
      i = parent
    }
    times[i] = time
    seqs[i] = seq
    values[i] = value
  }

  /** Removes and returns the earliest event, or undefined when empty. */
  pop(): T | undefined {
    const times = this.#times
    const seqs = this.#seqs
    const values = this.#values
    const n = values.length
    if (n === 0) return undefined
    const top = values[0]!
    const lastTime = times.pop()!
    const lastSeq = seqs.pop()!
    const lastValue = values.pop()!
    const size = n - 1
    if (size === 0) return top
    // Sift the last event down from the root, again with a hole.
    let i = 0
    for (;;) {
      let child = 2 * i + 1
      if (child >= size) break
      const right = child + 1
      if (right < size && (times[right]! < times[child]! || (times[right] === times[child] && seqs[right]! < seqs[child]!))) {
        child = right
      }
      const ct = times[child]!
      if (lastTime < ct || (lastTime === ct && lastSeq < seqs[child]!)) break
      times[i] = ct
      seqs[i] = seqs[child]!
      values[i] = values[child]!
      i = child
    }
    times[i] = lastTime
    seqs[i] = lastSeq
    values[i] = lastValue
    return top
  }
}
