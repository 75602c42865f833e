import { decodeFrames, encodeFrame } from '@depinfer/shared'
import { describe, expect, it } from 'vitest'
import { FrameOutbox, groupFrames } from './frame-outbox.js'

const frame = (jobId: string, bytes = 0) =>
  encodeFrame({ jobId }, bytes > 0 ? [{ name: 'y', datatype: 'UINT8', shape: [bytes], data: new Uint8Array(bytes).fill(7) }] : [])
const nextTurn = () => new Promise((resolve) => setImmediate(resolve))

function recordingOutbox() {
  const sent: { topic: string; jobIds: unknown[] }[] = []
  const outbox = new FrameOutbox((topic, message) => sent.push({ topic, jobIds: [...decodeFrames(message)].map((f) => f.header.jobId) }))
  return { outbox, sent }
}

describe('FrameOutbox', () => {
  it('sends the frames of one turn for one topic as one message, in order, once the turn ends', async () => {
    const { outbox, sent } = recordingOutbox()
    outbox.send('a', frame('1'))
    await Promise.resolve()
    outbox.send('a', frame('2'))
    outbox.send('b', frame('3'))
    outbox.send('a', frame('4'))
    expect(sent).toEqual([])
    await nextTurn()
    expect(sent).toEqual([
      { topic: 'a', jobIds: ['1', '2', '4'] },
      { topic: 'b', jobIds: ['3'] },
    ])
  })

  it('sends what a later turn adds as a message of its own', async () => {
    const { outbox, sent } = recordingOutbox()
    outbox.send('a', frame('1'))
    await nextTurn()
    outbox.send('a', frame('2'))
    await nextTurn()
    expect(sent.map((m) => m.jobIds)).toEqual([['1'], ['2']])
  })

  it('flush() sends at once, and the scheduled flush then sends nothing twice', async () => {
    const { outbox, sent } = recordingOutbox()
    outbox.send('a', frame('1'))
    outbox.flush()
    expect(sent).toEqual([{ topic: 'a', jobIds: ['1'] }])
    await nextTurn()
    expect(sent).toHaveLength(1)
  })
})

describe('groupFrames', () => {
  const sizes = (groups: Uint8Array[][]) => groups.map((g) => g.map((f) => f.byteLength))

  it('keeps messages within the cap, in order, with a frame larger than the cap alone', () => {
    const frames = [new Uint8Array(40), new Uint8Array(50), new Uint8Array(20), new Uint8Array(300), new Uint8Array(10)]
    expect(sizes(groupFrames(frames, 100, 10))).toEqual([[40, 50], [20], [300], [10]])
  })

  it('joins everything that fits', () => {
    expect(sizes(groupFrames([new Uint8Array(8), new Uint8Array(8)], 16, 10))).toEqual([[8, 8]])
    expect(groupFrames([], 16, 10)).toEqual([])
  })

  it('starts a new message at the frame cap', () => {
    expect(sizes(groupFrames(Array.from({ length: 5 }, () => new Uint8Array(8)), 1_000, 2))).toEqual([[8, 8], [8, 8], [8]])
  })
})
