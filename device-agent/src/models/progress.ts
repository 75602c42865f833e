/**
 * Transfer progress (the agent's model downloads, the CLI's uploads): a redrawn bar on a
 * terminal, plain log lines every few seconds otherwise (a service's journal or a CI log would
 * be flooded by a line per redraw).
 */

export interface TransferProgress {
  /** A transfer (re)starts with `from` bytes already on disk, of `total` (undefined: not known). */
  start(total: number | undefined, from: number): void
  /** `received` bytes of the file are on disk now (resumed prefix included). */
  update(received: number): void
  /** The transfer ended, with the whole file or not (the caller reports why not). */
  end(ok: boolean): void
}

/** One reporter per download; `label` names the model (e.g. "ppocr-cls v2"). */
export type ProgressFactory = (label: string) => TransferProgress

const MB = 1_000_000

const mb = (bytes: number): string => (bytes / MB).toFixed(1)

/** "45% 4.5/9.8 MB 3.2 MB/s"; without a known total, just the bytes so far and the speed. */
export function describeProgress(received: number, total: number | undefined, bytesPerSec: number): string {
  const speed = `${mb(bytesPerSec)} MB/s`
  if (total === undefined || total === 0) return `${mb(received)} MB ${speed}`
  const percent = Math.min(100, Math.floor((received / total) * 100))
  return `${percent}% ${mb(received)}/${mb(total)} MB ${speed}`
}

/** A bar of `width` cells filled in proportion to received/total. */
export function progressBar(received: number, total: number | undefined, width: number): string {
  if (total === undefined || total === 0) return ''
  const filled = Math.min(width, Math.round((received / total) * width))
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`
}

/** Bytes per second moved in this transfer: the resumed prefix was not downloaded now. */
class Rate {
  #from = 0
  #startedAt: number
  constructor(private readonly now: () => number) {
    this.#startedAt = now()
  }
  restart(from: number): void {
    this.#from = from
    this.#startedAt = this.now()
  }
  of(received: number): number {
    const seconds = (this.now() - this.#startedAt) / 1000
    return seconds > 0 ? (received - this.#from) / seconds : 0
  }
  get elapsedMs(): number {
    return this.now() - this.#startedAt
  }
}

/** Minimal shape of a terminal stream (process.stderr), so tests can pass a fake one. */
export interface TerminalStream {
  write(text: string): unknown
  columns?: number
}

/**
 * A bar redrawn in place (carriage return, clear line) at most every `redrawMs`. Downloads run
 * one at a time (models/provision.ts), so one line is enough.
 */
export function terminalProgress(stream: TerminalStream, redrawMs = 100, now: () => number = Date.now): ProgressFactory {
  return (label) => {
    const rate = new Rate(now)
    let total: number | undefined
    let received = 0
    let drawnAt = -Infinity
    const draw = () => {
      drawnAt = now()
      const text = `${label} ${progressBar(received, total, 24)} ${describeProgress(received, total, rate.of(received))}`
      // Clipped to the terminal's width: a wrapped line cannot be redrawn with \r.
      stream.write(`\r\x1b[K${text.slice(0, Math.max(20, (stream.columns || 80) - 1))}`)
    }
    return {
      start(size, from) {
        total = size
        received = from
        rate.restart(from)
        draw()
      },
      update(bytes) {
        received = bytes
        if (now() - drawnAt >= redrawMs) draw()
      },
      end(ok) {
        if (ok) draw()
        stream.write('\n')
      },
    }
  }
}

/** How log lines name the transfer: what it is doing, and what it did. */
export interface TransferWords {
  doing: string
  done: string
}

const DOWNLOAD: TransferWords = { doing: 'downloading', done: 'downloaded' }

/** A log line when a transfer starts, every `intervalMs` while it runs, and when it completes. */
export function loggedProgress(
  log: (message: string) => void,
  intervalMs = 5_000,
  now: () => number = Date.now,
  words: TransferWords = DOWNLOAD,
): ProgressFactory {
  return (label) => {
    const rate = new Rate(now)
    let total: number | undefined
    let received = 0
    let resumedAt = 0
    let loggedAt = 0
    return {
      start(size, from) {
        total = size
        received = from
        resumedAt = from
        rate.restart(from)
        loggedAt = now()
        const resuming = from > 0 ? `, resuming at ${mb(from)} MB` : ''
        log(`${words.doing} ${label} (${total === undefined ? 'size unknown' : `${mb(total)} MB`}${resuming})`)
      },
      update(bytes) {
        received = bytes
        if (now() - loggedAt >= intervalMs) {
          loggedAt = now()
          log(`${words.doing} ${label}: ${describeProgress(received, total, rate.of(received))}`)
        }
      },
      end(ok) {
        if (!ok) return
        const seconds = (rate.elapsedMs / 1000).toFixed(1)
        // After a resume, the time and speed are of the part fetched since, not of the whole file.
        const part = resumedAt > 0 ? ` (the last ${mb(received - resumedAt)} MB, resumed at ${mb(resumedAt)} MB, in ${seconds} s` : ` in ${seconds} s (`
        log(`${words.done} ${label}: ${mb(received)} MB${part}${resumedAt > 0 ? ', ' : ''}${mb(rate.of(received))} MB/s)`)
      },
    }
  }
}
