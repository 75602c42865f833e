/**
 * How fast a device works off the jobs this gateway sends it: the time it had a job of ours out
 * per answer, over about its last DRAIN_MEMORY answers or batches. Unlike a round trip, which grows with
 * the queue a job waited in, this is the device's pace under the load it had: a device answering
 * a batch of eight every 200 ms drains 25 jobs a second, however long each waited. With the jobs
 * queued there, it says how long a new job would wait (Gateway admission, DevicesBusyError).
 */

/** Answers (or batches answered at once) the figure remembers: each older one weighs 1/DRAIN_MEMORY less. */
const DRAIN_MEMORY = 32
/** Answers a device must have given before its pace is believed. */
export const MIN_DRAIN_ANSWERS = 8

export class DrainRate {
  /** When a job of ours last went out to the device while none was out there. */
  #busySince = 0
  #lastAnswerAt = 0
  /** Busy milliseconds and answers, each decayed by (1 - 1/DRAIN_MEMORY) per answer. */
  #busyMs = 0
  #weight = 0
  #answers = 0

  /** A job goes out to the device; `outBefore` of ours were out there already. */
  sent(now: number, outBefore: number): void {
    if (outBefore === 0) this.#busySince = now
  }

  /**
   * The device answered one of our jobs. The time since its previous answer, or since it became
   * busy if that came later (idle time is not its pace), is what this answer took.
   */
  answered(now: number): void {
    const tookMs = Math.max(0, now - Math.max(this.#lastAnswerAt, this.#busySince))
    // Answers at the same moment (one batch's) share its time: older figures fade per batch,
    // not per answer, or a batch's run would have faded by the time its last answer counted.
    if (tookMs > 0) {
      const keep = 1 - 1 / DRAIN_MEMORY
      this.#busyMs *= keep
      this.#weight *= keep
    }
    this.#busyMs += tookMs
    this.#weight += 1
    this.#answers++
    this.#lastAnswerAt = now
  }

  /** Milliseconds of the device's time per job answered; undefined before MIN_DRAIN_ANSWERS answers. */
  get perJobMs(): number | undefined {
    return this.#answers < MIN_DRAIN_ANSWERS ? undefined : this.#busyMs / this.#weight
  }
}
