import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { BUNDLED_MODELS, bundledModelPath, type BundledModelName } from '../models/bundled.js'
import { OnnxFormatError, decodeModel, encodeModel, tensorTypeOf } from './onnx-proto.js'
import { WireWriter, seededRandom, messageOf } from '@depinfer/shared'

const names = Object.keys(BUNDLED_MODELS) as BundledModelName[]

describe('ONNX protobuf codec', () => {
  it.each(names)('decodes and re-encodes bundled %s byte for byte', (name) => {
    const bytes = readFileSync(bundledModelPath(name))
    const model = decodeModel(bytes)
    expect(model.graph?.node.length).toBeGreaterThan(10)
    expect(tensorTypeOf(model.graph!.input[0]!)).toMatchObject({ elemType: 1, shape: [expect.any(String), 3, expect.anything(), expect.any(String)] })
    const again = encodeModel(model)
    expect(again.length).toBe(bytes.length)
    expect(Buffer.compare(Buffer.from(again), bytes)).toBe(0)
  })

  it('keeps fields it does not know, at their place, and 64-bit integers exactly', () => {
    // A NodeProto with doc_string (6, kept raw), an attribute with i = -1 and ints = [INT64_MAX, -5].
    const w = new WireWriter()
    w.string(1, 'x').string(2, 'y').string(4, 'Slice')
    w.message(5, (a) => a.string(1, 'ends').int(8, 9223372036854775807n).int(8, -5n).int(20, 7))
    w.message(5, (a) => a.string(1, 'axis').int(3, -1n).int(20, 2))
    w.string(6, 'a doc string')
    const nodeBytes = w.finish()
    const withNode = new WireWriter()
    withNode.int(1, 8).message(7, (g) => g.bytes(1, nodeBytes).string(2, 'g')).message(8, (o) => o.string(1, '').int(2, 13)).string(99, 'future field')
    const bytes = withNode.finish()
    const decoded = decodeModel(bytes)
    const n = decoded.graph!.node[0]!
    expect(n.attribute[0]!.ints).toEqual([9223372036854775807n, -5n])
    expect(n.attribute[1]!.i).toBe(-1n)
    expect(n.unknown.map((f) => f.field)).toEqual([6])
    expect(decoded.unknown.map((f) => f.field)).toEqual([99])
    expect(Buffer.compare(Buffer.from(encodeModel(decoded)), Buffer.from(bytes))).toBe(0)
  })

  describe('rejects what is not a complete ONNX model with an OnnxFormatError', () => {
    const cls = readFileSync(bundledModelPath('ppocr-cls'))
    const random = seededRandom(5)
    const cases: [string, Uint8Array][] = [
      ['an empty file', new Uint8Array()],
      ['a PNG header', Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52])],
      ['JSON text', new TextEncoder().encode('{"model": "not really"}')],
      ['random bytes', Uint8Array.from({ length: 4096 }, () => Math.floor(random() * 256))],
      ['a model cut at 10%', cls.subarray(0, Math.floor(cls.length * 0.1))],
      ['a model cut at 90%', cls.subarray(0, Math.floor(cls.length * 0.9))],
      ['a model missing its last byte', cls.subarray(0, cls.length - 1)],
      ['a model without an opset import', new WireWriter().int(1, 8).message(7, (g) => g.string(2, 'g')).finish()],
    ]
    it.each(cases)('%s', (_, bytes) => {
      let error: unknown
      try {
        decodeModel(bytes)
      } catch (e) {
        error = e
      }
      expect(error).toBeInstanceOf(OnnxFormatError)
      expect(messageOf(error)).toMatch(/not an ONNX model/)
    })
  })
})
