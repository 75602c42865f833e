/**
 * A one-line progress bar for transfers: redrawn in place on a TTY, a plain line every few
 * seconds otherwise (CI logs, pipes), so a long transfer is never silent.
 */
export interface Progress {
  update(doneBytes: number): void
  finish(): void
}

const MiB = 1024 * 1024

export function progressBar(label: string, totalBytes: number, stream: NodeJS.WriteStream = process.stderr): Progress {
  const started = Date.now()
  let lastDraw = 0
  let done = 0
  const line = () => {
    const seconds = Math.max((Date.now() - started) / 1000, 1e-3)
    const fraction = totalBytes > 0 ? Math.min(done / totalBytes, 1) : 1
    const width = 30
    const filled = Math.round(fraction * width)
    return `${label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ` +
      `${(done / MiB).toFixed(1)}/${(totalBytes / MiB).toFixed(1)} MiB ${(done / MiB / seconds).toFixed(1)} MiB/s`
  }
  const draw = (force: boolean) => {
    const now = Date.now()
    if (stream.isTTY) {
      if (force || now - lastDraw >= 100) {
        stream.write(`\r${line()}`)
        lastDraw = now
      }
    } else if (force || now - lastDraw >= 2_000) {
      stream.write(`${line()}\n`)
      lastDraw = now
    }
  }
  return {
    update(doneBytes) {
      done = doneBytes
      draw(false)
    },
    finish() {
      draw(true)
      if (stream.isTTY) stream.write('\n')
    },
  }
}
