/** Download progress as shown on a terminal and in a log. */
import { describe, expect, it } from 'vitest'
import { describeProgress, loggedProgress, progressBar, terminalProgress } from './progress.js'

describe('download progress', () => {
  it('says percent, MB and MB/s, or just MB when the size is unknown', () => {
    expect(describeProgress(4_500_000, 9_800_000, 3_200_000)).toBe('45% 4.5/9.8 MB 3.2 MB/s')
    expect(describeProgress(4_500_000, undefined, 1_000_000)).toBe('4.5 MB 1.0 MB/s')
    expect(progressBar(1, 4, 8)).toBe('[##......]')
  })

  it('redraws one terminal line in place, at most every redraw interval, and ends it with a newline', () => {
    let clock = 0
    const written: string[] = []
    const progress = terminalProgress({ write: (text) => written.push(text), columns: 120 }, 100, () => clock)('m v1')
    progress.start(10_000_000, 0)
    clock = 50
    progress.update(1_000_000) // too soon: not drawn
    clock = 1_000
    progress.update(5_000_000)
    progress.end(true)
    expect(written).toEqual([
      `\r\x1b[Km v1 [${'.'.repeat(24)}] 0% 0.0/10.0 MB 0.0 MB/s`,
      `\r\x1b[Km v1 [${'#'.repeat(12)}${'.'.repeat(12)}] 50% 5.0/10.0 MB 5.0 MB/s`,
      `\r\x1b[Km v1 [${'#'.repeat(12)}${'.'.repeat(12)}] 50% 5.0/10.0 MB 5.0 MB/s`,
      '\n',
    ])
  })

  it('logs the start, a line per interval with the speed of this transfer (not the resumed part), and the end', () => {
    let clock = 0
    const lines: string[] = []
    const progress = loggedProgress((line) => lines.push(line), 5_000, () => clock)('m v1')
    progress.start(10_000_000, 2_000_000)
    clock = 1_000
    progress.update(3_000_000)
    clock = 5_000
    progress.update(6_000_000)
    clock = 8_000
    progress.update(10_000_000)
    progress.end(true)
    expect(lines).toEqual([
      'downloading m v1 (10.0 MB, resuming at 2.0 MB)',
      'downloading m v1: 60% 6.0/10.0 MB 0.8 MB/s',
      // 8 MB of the 10 came in those 8 s: the whole file did not.
      'downloaded m v1: 10.0 MB (the last 8.0 MB, resumed at 2.0 MB, in 8.0 s, 1.0 MB/s)',
    ])
  })

  it('names the transfer with the words given (uploads in the CLI)', () => {
    let clock = 0
    const lines: string[] = []
    const progress = loggedProgress((line) => lines.push(line), 5_000, () => clock, { doing: 'uploading', done: 'uploaded' })('m.onnx')
    progress.start(4_000_000, 0)
    clock = 2_000
    progress.update(4_000_000)
    progress.end(true)
    expect(lines).toEqual(['uploading m.onnx (4.0 MB)', 'uploaded m.onnx: 4.0 MB in 2.0 s (2.0 MB/s)'])
  })
})
