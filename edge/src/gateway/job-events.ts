/**
 * What happens to one job in flight, in the order it happened: answers from the devices it went
 * to, their timeouts, their going offline, and the moment to hedge. The gateway's dispatch loop
 * takes them one at a time, so two devices answering at once are handled one after the other.
 */
import type { RawTensor, ResultHeader } from '@depinfer/shared'

export type JobEvent =
  | { kind: 'result'; deviceId: string; header: ResultHeader; tensors: RawTensor[] }
  | { kind: 'timeout'; deviceId: string }
  | { kind: 'lost'; deviceId: string }
  /** The attempt on this device has been out long enough to be hedged. */
  | { kind: 'hedge'; deviceId: string }

/**
 * An unbounded queue with one reader: events pushed while nobody waits are kept in order.
 *
 * @example
 * const events = new JobEvents()
 * events.push({ kind: 'timeout', deviceId: 'd1' })
 * await events.next() // { kind: 'timeout', deviceId: 'd1' }
 */
export class JobEvents {
  readonly #queued: JobEvent[] = []
  #waiting: ((event: JobEvent) => void) | undefined

  push(event: JobEvent): void {
    const waiting = this.#waiting
    if (waiting) {
      this.#waiting = undefined
      waiting(event)
    } else {
      this.#queued.push(event)
    }
  }

  /** Takes every event waiting to be read (the reader is done: they are for someone else now). */
  drain(): JobEvent[] {
    return this.#queued.splice(0)
  }

  /** The next event; only one call may wait at a time. */
  next(): Promise<JobEvent> {
    const event = this.#queued.shift()
    if (event) return Promise.resolve(event)
    return new Promise((resolve) => {
      this.#waiting = resolve
    })
  }
}
