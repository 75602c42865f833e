import { describe, expect, it } from 'vitest'
import { expectProtocolError } from './testing/expect-protocol-error.js'
import { FrameError } from './errors.js'
import { decodeFrame, decodeFrames, encodeFrame, joinFrames, MAX_FRAMES_PER_MESSAGE } from './frame.js'
import { typedElements, type RawTensor } from './tensor.js'


const ascii = (text: string) => new TextEncoder().encode(text)
const roundUp8 = (n: number) => Math.ceil(n / 8) * 8

/**
 * Builds a frame by hand from the documented layout (independent of encodeFrame): "DPF1", u32 LE
 * header length, the header, then each chunk at the next 8-byte boundary.
 */
function handFrame(header: unknown, chunks: Uint8Array[] = [], options: { declaredLength?: number; rawHeader?: Uint8Array } = {}): Uint8Array {
  const headerBytes = options.rawHeader ?? ascii(JSON.stringify(header))
  let size = roundUp8(8 + headerBytes.byteLength)
  const offsets = chunks.map((chunk) => {
    const at = size
    size = roundUp8(at + chunk.byteLength)
    return at
  })
  const frame = new Uint8Array(Math.max(size, 8 + headerBytes.byteLength))
  frame.set(ascii('DPF1'), 0)
  new DataView(frame.buffer).setUint32(4, options.declaredLength ?? headerBytes.byteLength, true)
  frame.set(headerBytes, 8)
  chunks.forEach((chunk, i) => frame.set(chunk, offsets[i]!))
  return frame
}

/** Float64 bytes, little-endian. */
function fp64(values: number[]): Uint8Array {
  const bytes = new Uint8Array(values.length * 8)
  values.forEach((v, i) => new DataView(bytes.buffer).setFloat64(i * 8, v, true))
  return bytes
}

function sampleTensors(): RawTensor[] {
  const int64 = new Uint8Array(24)
  const view = new DataView(int64.buffer)
  view.setBigInt64(0, 9007199254740993n, true)
  view.setBigInt64(8, -(2n ** 63n), true)
  view.setBigInt64(16, 42n, true)
  const fp32 = new Uint8Array(24)
  for (let i = 0; i < 6; i++) new DataView(fp32.buffer).setFloat32(i * 4, i + 0.5, true)
  return [
    { name: 'image', datatype: 'FP32', shape: [2, 3], data: fp32 },
    { name: 'mask', datatype: 'BOOL', shape: [5], data: new Uint8Array([1, 0, 1, 1, 0]) },
    { name: 'ids', datatype: 'INT64', shape: [3], data: int64 },
    { name: 'half', datatype: 'FP16', shape: [3], data: new Uint8Array([0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b]) },
    { name: 'scalar', datatype: 'UINT8', shape: [], data: new Uint8Array([200]) },
    { name: 'empty', datatype: 'INT32', shape: [0, 4], data: new Uint8Array(0) },
    { name: 'weights', datatype: 'FP64', shape: [2], data: fp64([Math.PI, -1e-300]) },
  ]
}

describe('encodeFrame / decodeFrame round trip', () => {
  it('restores header fields and every tensor (name, datatype, shape, bytes)', () => {
    const header = { protocol: 3, jobId: 'job-ü-✓', replyTo: 'depinfer/v1/gateways/gw/results/pi', outputs: ['a', 'b'], nested: { deadlineMs: 5000, flag: true, none: null } }
    const tensors = sampleTensors()
    const decoded = decodeFrame(encodeFrame(header, tensors))
    expect(decoded.header).toEqual(header)
    expect(decoded.tensors).toHaveLength(tensors.length)
    decoded.tensors.forEach((tensor, i) => {
      expect(tensor.name).toBe(tensors[i]!.name)
      expect(tensor.datatype).toBe(tensors[i]!.datatype)
      expect(tensor.shape).toEqual(tensors[i]!.shape)
      expect(Array.from(tensor.data)).toEqual(Array.from(tensors[i]!.data))
    })
  })

  it('does not leave the tensors list in the decoded header', () => {
    const { header } = decodeFrame(encodeFrame({ jobId: 'x' }, sampleTensors()))
    expect(header).not.toHaveProperty('tensors')
  })

  it('ignores a tensors field of the given header in favour of the tensors passed', () => {
    const { tensors } = decodeFrame(encodeFrame({ tensors: 'bogus' }, sampleTensors().slice(0, 1)))
    expect(tensors.map((t) => t.name)).toEqual(['image'])
  })

  it('round trips a frame with no tensors', () => {
    const decoded = decodeFrame(encodeFrame({ a: 1 }, []))
    expect(decoded).toEqual({ header: { a: 1 }, tensors: [] })
  })

  it('starts every tensor at an 8-byte aligned offset in the frame, in order and without overlap', () => {
    const frame = encodeFrame({ jobId: 'abc' }, sampleTensors())
    const { tensors } = decodeFrame(frame)
    let end = 0
    for (const tensor of tensors) {
      const offset = tensor.data.byteOffset - frame.byteOffset
      expect(offset % 8).toBe(0)
      expect(offset).toBeGreaterThanOrEqual(end)
      end = offset + tensor.data.byteLength
    }
    expect(end).toBeLessThanOrEqual(frame.byteLength)
  })

  it('lets FP64 and INT64 data be viewed in place without copying', () => {
    const frame = encodeFrame({}, sampleTensors())
    const { tensors } = decodeFrame(frame)
    const weights = tensors.find((t) => t.name === 'weights')!
    const elements = typedElements('FP64', weights.data)
    expect(elements.buffer).toBe(frame.buffer)
    expect(Array.from(elements as Float64Array)).toEqual([Math.PI, -1e-300])
    const ids = typedElements('INT64', tensors.find((t) => t.name === 'ids')!.data)
    expect(ids.buffer).toBe(frame.buffer)
    expect(Array.from(ids as BigInt64Array)).toEqual([9007199254740993n, -(2n ** 63n), 42n])
  })

  it('returns tensor data as views into the frame', () => {
    const frame = encodeFrame({}, sampleTensors())
    const { tensors } = decodeFrame(frame)
    for (const tensor of tensors) expect(tensor.data.buffer).toBe(frame.buffer)
  })

  it.each([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])('round trips with a header padded by any amount (jobId of %i chars)', (n) => {
    const header = { jobId: 'j'.repeat(n) }
    const tensors: RawTensor[] = [
      { name: 'a', datatype: 'UINT8', shape: [3], data: new Uint8Array([1, 2, 3]) },
      { name: 'b', datatype: 'FP64', shape: [1], data: fp64([n + 0.25]) },
    ]
    const frame = encodeFrame(header, tensors)
    const decoded = decodeFrame(frame)
    expect(decoded.header).toEqual(header)
    expect(Array.from(decoded.tensors[0]!.data)).toEqual([1, 2, 3])
    expect((decoded.tensors[1]!.data.byteOffset - frame.byteOffset) % 8).toBe(0)
    expect(Array.from(typedElements('FP64', decoded.tensors[1]!.data) as Float64Array)).toEqual([n + 0.25])
  })
})

describe('encodeFrame layout', () => {
  it('follows the documented layout: magic, u32 LE header length, JSON header, aligned tensor bytes', () => {
    const a = new Uint8Array([1, 2, 3])
    const b = fp64([1.5])
    const frame = encodeFrame({ jobId: 'j1' }, [
      { name: 'a', datatype: 'UINT8', shape: [3], data: a },
      { name: 'b', datatype: 'FP64', shape: [1], data: b },
    ])
    expect(Array.from(frame.subarray(0, 4))).toEqual([0x44, 0x50, 0x46, 0x31]) // "DPF1"
    const headerLength = new DataView(frame.buffer, frame.byteOffset).getUint32(4, true)
    const header = JSON.parse(new TextDecoder().decode(frame.subarray(8, 8 + headerLength)))
    expect(header).toEqual({
      jobId: 'j1',
      tensors: [
        { name: 'a', datatype: 'UINT8', shape: [3] },
        { name: 'b', datatype: 'FP64', shape: [1] },
      ],
    })
    const first = roundUp8(8 + headerLength)
    expect(Array.from(frame.subarray(first, first + 3))).toEqual([1, 2, 3])
    const second = roundUp8(first + 3)
    expect(Array.from(frame.subarray(second, second + 8))).toEqual(Array.from(b))
    expect(frame.byteLength).toBe(second + 8)
  })

  it('is decoded by an independent hand-built frame reader and vice versa', () => {
    const data = fp64([2.5, -3])
    const frame = handFrame({ jobId: 'h', tensors: [{ name: 'x', datatype: 'FP64', shape: [2] }] }, [data])
    const decoded = decodeFrame(frame)
    expect(decoded.header).toEqual({ jobId: 'h' })
    expect(decoded.tensors).toHaveLength(1)
    expect(decoded.tensors[0]).toMatchObject({ name: 'x', datatype: 'FP64', shape: [2] })
    expect(Array.from(decoded.tensors[0]!.data)).toEqual(Array.from(data))
    expect(encodeFrame({ jobId: 'h' }, decoded.tensors)).toEqual(frame)
  })
})

describe('decodeFrame at an odd byteOffset', () => {
  it('decodes a frame sitting at an odd offset inside a bigger buffer', () => {
    const original = encodeFrame({ jobId: 'odd' }, sampleTensors())
    const big = new Uint8Array(original.byteLength + 16).fill(0xee)
    big.set(original, 3)
    const frame = big.subarray(3, 3 + original.byteLength)
    const decoded = decodeFrame(frame)
    expect(decoded.header).toEqual({ jobId: 'odd' })
    const expected = sampleTensors()
    decoded.tensors.forEach((tensor, i) => {
      expect(tensor).toMatchObject({ name: expected[i]!.name, datatype: expected[i]!.datatype, shape: expected[i]!.shape })
      expect(Array.from(tensor.data)).toEqual(Array.from(expected[i]!.data))
    })
    const weights = decoded.tensors.find((t) => t.name === 'weights')!
    expect(Array.from(typedElements('FP64', weights.data) as Float64Array)).toEqual([Math.PI, -1e-300])
    const ids = decoded.tensors.find((t) => t.name === 'ids')!
    expect(Array.from(typedElements('INT64', ids.data) as BigInt64Array)).toEqual([9007199254740993n, -(2n ** 63n), 42n])
  })

  it('does not read tensor bytes past the end of the view even if the buffer continues', () => {
    const data = fp64([1, 2])
    const original = handFrame({ tensors: [{ name: 'x', datatype: 'FP64', shape: [2] }] }, [data])
    const big = new Uint8Array(original.byteLength + 16)
    big.set(original, 5)
    // Cut the view one byte short of the tensor's end; the bytes still exist in `big`.
    const truncated = big.subarray(5, 5 + original.byteLength - 1)
    expectProtocolError(FrameError, () => decodeFrame(truncated), 'tensors[0]')
  })

  it('reads the header length relative to the view, not the underlying buffer', () => {
    const original = handFrame({ tensors: [] })
    const big = new Uint8Array(original.byteLength + 8).fill(0xff)
    big.set(original, 7)
    expect(decodeFrame(big.subarray(7, 7 + original.byteLength))).toEqual({ header: {}, tensors: [] })
  })
})

describe('decodeFrame rejects malformed frames', () => {
  const good = () => handFrame({ tensors: [{ name: 'x', datatype: 'UINT8', shape: [2] }] }, [new Uint8Array([1, 2])])

  it.each([
    ['an empty frame', new Uint8Array(0)],
    ['only the magic', ascii('DPF1')],
    ['a 7-byte prefix', new Uint8Array([0x44, 0x50, 0x46, 0x31, 0, 0, 0])],
    ['the wrong version', ascii('DPF2\x02\x00\x00\x00{}')],
    ['lowercase magic', ascii('dpf1\x02\x00\x00\x00{}')],
    ['JSON without a prefix', ascii('{"tensors":[]}')],
  ])('%s → bad magic on field "frame"', (_case, frame) => {
    expectProtocolError(FrameError, () => decodeFrame(frame), 'frame')
  })

  it('rejects a wrong magic on an otherwise valid frame', () => {
    const frame = good()
    frame[0] = 0x45
    expectProtocolError(FrameError, () => decodeFrame(frame), 'frame')
  })

  it('rejects a header length beyond the frame', () => {
    const header = ascii('{"tensors":[]}')
    expectProtocolError(FrameError, () => decodeFrame(handFrame(null, [], { rawHeader: header, declaredLength: 1000 })), 'frame')
    expectProtocolError(FrameError, () => decodeFrame(handFrame(null, [], { rawHeader: header, declaredLength: 0xffffffff })), 'frame')
  })

  it('rejects a truncated header', () => {
    const frame = good()
    const headerLength = new DataView(frame.buffer).getUint32(4, true)
    expectProtocolError(FrameError, () => decodeFrame(frame.subarray(0, 8 + headerLength - 1)), 'frame')
    expectProtocolError(FrameError, () => decodeFrame(frame.subarray(0, 9)), 'frame')
  })

  it.each([
    ['cut-off JSON', '{"tensors":['],
    ['plain text', 'hello'],
    ['an empty header', ''],
    ['single quotes', "{'tensors':[]}"],
  ])('rejects a non-JSON header (%s) on field "header"', (_case, text) => {
    expectProtocolError(FrameError, () => decodeFrame(handFrame(null, [], { rawHeader: ascii(text) })), 'header')
  })

  it.each([['[]'], ['null'], ['42'], ['"text"'], ['true']])('rejects header %s that is not a JSON object', (text) => {
    expectProtocolError(FrameError, () => decodeFrame(handFrame(null, [], { rawHeader: ascii(text) })), 'header')
  })

  it.each([
    ['missing', { jobId: 'x' }],
    ['null', { tensors: null }],
    ['an object', { tensors: {} }],
    ['a string', { tensors: 'x' }],
  ])('rejects a tensors list that is %s, on field "tensors"', (_case, header) => {
    expectProtocolError(FrameError, () => decodeFrame(handFrame(header)), 'tensors')
  })

  it.each([
    ['missing', { datatype: 'UINT8', shape: [1] }],
    ['a number', { name: 3, datatype: 'UINT8', shape: [1] }],
  ])('rejects a tensor name that is %s', (_case, descriptor) => {
    expectProtocolError(FrameError, () => decodeFrame(handFrame({ tensors: [descriptor] }, [new Uint8Array(1)])), 'tensors[0].name')
  })

  it('rejects a null tensor descriptor', () => {
    expectProtocolError(FrameError, () => decodeFrame(handFrame({ tensors: [null] })), 'tensors[0].name')
  })

  it.each([['FP8'], ['fp32'], ['BYTES'], ['STRING'], ['BF16'], [''], [7], [null], [undefined]])(
    'rejects unknown datatype %j on field tensors[i].datatype',
    (datatype) => {
      const tensors = [
        { name: 'ok', datatype: 'UINT8', shape: [1] },
        { name: 'bad', datatype, shape: [1] },
      ]
      expectProtocolError(FrameError, () => decodeFrame(handFrame({ tensors }, [new Uint8Array(1), new Uint8Array(8)])), 'tensors[1].datatype')
    },
  )

  it.each([
    ['a negative dimension', [-1]],
    ['a negative later dimension', [2, -3]],
    ['a non-integer dimension', [1.5]],
    ['a string dimension', ['2']],
    ['a null dimension', [null]],
    ['an unsafe integer dimension', [2 ** 53]],
    ['a non-list shape', 4],
    ['a missing shape', undefined],
  ])('rejects %s on field tensors[i].shape', (_case, shape) => {
    expectProtocolError(FrameError, () => decodeFrame(handFrame({ tensors: [{ name: 'x', datatype: 'UINT8', shape }] }, [new Uint8Array(8)])), 'tensors[0].shape')
  })

  it('rejects tensor bytes beyond the frame, naming the tensor', () => {
    // Declares 4 FP32 (16 bytes) but carries 8.
    const short = handFrame({ tensors: [{ name: 'x', datatype: 'FP32', shape: [4] }] }, [new Uint8Array(8)])
    expectProtocolError(FrameError, () => decodeFrame(short), 'tensors[0]')
    // The first tensor fits; the second does not.
    const second = handFrame(
      { tensors: [{ name: 'a', datatype: 'UINT8', shape: [2] }, { name: 'b', datatype: 'FP64', shape: [3] }] },
      [new Uint8Array(2), new Uint8Array(16)],
    )
    expectProtocolError(FrameError, () => decodeFrame(second), 'tensors[1]')
  })

  it('rejects a frame whose last tensor is cut short by one byte', () => {
    const frame = handFrame({ tensors: [{ name: 'x', datatype: 'INT16', shape: [3] }] }, [new Uint8Array(6)])
    const headerLength = new DataView(frame.buffer).getUint32(4, true)
    const end = roundUp8(8 + headerLength) + 6
    expect(decodeFrame(frame.subarray(0, end)).tensors[0]!.data.byteLength).toBe(6)
    expectProtocolError(FrameError, () => decodeFrame(frame.subarray(0, end - 1)), 'tensors[0]')
  })

  it('rejects an enormous declared shape without allocating', () => {
    const frame = handFrame({ tensors: [{ name: 'x', datatype: 'FP64', shape: [2 ** 40, 2 ** 12] }] })
    expectProtocolError(FrameError, () => decodeFrame(frame), 'tensors[0]')
  })
})

describe('encodeFrame input checks', () => {
  it('refuses a tensor whose bytes do not match its datatype and shape', () => {
    const tensor: RawTensor = { name: 'x', datatype: 'FP32', shape: [2, 2], data: new Uint8Array(12) }
    expectProtocolError(FrameError, () => encodeFrame({}, [tensor]), 'tensors[0].data')
  })
})

describe('several frames in one message (joinFrames / decodeFrames)', () => {
  const frames = () => [
    encodeFrame({ jobId: 'a' }, sampleTensors()),
    encodeFrame({ jobId: 'bb', error: { code: 'internal' } }, []),
    encodeFrame({ jobId: 'ccc' }, [{ name: 'w', datatype: 'FP64', shape: [2], data: fp64([1.25, -2]) }]),
  ]

  it('yields every frame in order with its own header and tensors', () => {
    const decoded = [...decodeFrames(joinFrames(frames()))]
    expect(decoded.map((f) => f.header)).toEqual([{ jobId: 'a' }, { jobId: 'bb', error: { code: 'internal' } }, { jobId: 'ccc' }])
    const expected = sampleTensors()
    decoded[0]!.tensors.forEach((tensor, i) => {
      expect(tensor).toMatchObject({ name: expected[i]!.name, datatype: expected[i]!.datatype, shape: expected[i]!.shape })
      expect(Array.from(tensor.data)).toEqual(Array.from(expected[i]!.data))
    })
    expect(decoded[1]!.tensors).toEqual([])
    expect(Array.from(typedElements('FP64', decoded[2]!.tensors[0]!.data) as Float64Array)).toEqual([1.25, -2])
  })

  it('starts every frame, and so every tensor, 8-byte aligned in the message', () => {
    const message = joinFrames(frames())
    for (const frame of decodeFrames(message)) {
      for (const tensor of frame.tensors) expect((tensor.data.byteOffset - message.byteOffset) % 8).toBe(0)
    }
  })

  it('reads a one-frame message as before, and decodeFrame reads the first frame of many', () => {
    const [first] = frames()
    expect([...decodeFrames(first!)].map((f) => f.header)).toEqual([{ jobId: 'a' }])
    expect(decodeFrame(joinFrames(frames())).header).toEqual({ jobId: 'a' })
  })

  it('takes a last frame its sender did not pad to 8 bytes', () => {
    const header = { tensors: [{ name: 'u', datatype: 'UINT8', shape: [3] }] }
    const padded = handFrame(header, [new Uint8Array([7, 8, 9])])
    const unpadded = padded.subarray(0, roundUp8(8 + JSON.stringify(header).length) + 3)
    expect(unpadded.byteLength % 8).not.toBe(0)
    const decoded = [...decodeFrames(joinFrames([frames()[1]!, unpadded]))]
    expect(decoded.map((f) => f.header)).toEqual([{ jobId: 'bb', error: { code: 'internal' } }, {}])
    expect(Array.from(decoded[1]!.tensors[0]!.data)).toEqual([7, 8, 9])
  })

  it('yields the frames before a malformed one, then throws FrameError', () => {
    const [first] = frames()
    const message = new Uint8Array([...first!, ...ascii('XXXX'), 0, 0, 0, 0])
    const seen: unknown[] = []
    expectProtocolError(FrameError, () => {
      for (const frame of decodeFrames(message)) seen.push(frame.header)
    }, 'frame')
    expect(seen).toEqual([{ jobId: 'a' }])
  })

  it(`reads at most MAX_FRAMES_PER_MESSAGE frames of a message`, () => {
    const tiny = encodeFrame({}, [])
    expect([...decodeFrames(joinFrames(Array(MAX_FRAMES_PER_MESSAGE).fill(tiny)))]).toHaveLength(MAX_FRAMES_PER_MESSAGE)
    let seen = 0
    expectProtocolError(FrameError, () => {
      for (const _frame of decodeFrames(joinFrames(Array(MAX_FRAMES_PER_MESSAGE + 1).fill(tiny)))) seen++
    }, 'frame')
    expect(seen).toBe(MAX_FRAMES_PER_MESSAGE)
  })

  it('refuses trailing bytes too short to be a frame', () => {
    const message = new Uint8Array([...frames()[1]!, 0x44, 0x50, 0x46])
    expectProtocolError(FrameError, () => [...decodeFrames(message)], 'frame')
  })
})
