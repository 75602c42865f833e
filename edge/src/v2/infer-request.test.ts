/** Parsing v2 inference requests: every rejection is a 400 naming the offending field. */
import { describe, expect, it } from 'vitest'
import { MAX_TENSOR_BYTES } from '@depinfer/shared'
import { parseInferRequest } from './infer-request.js'

const f32 = (name: string, data: unknown[] = [1, 2]) => ({ name, datatype: 'FP32', shape: [data.length], data })
const rejects = (body: unknown, field: string, binary?: Uint8Array) =>
  expect(() => parseInferRequest(body, binary)).toThrow(expect.objectContaining({ status: 400, field }))

describe('parseInferRequest', () => {
  it('refuses an input or an output named twice, naming the second', () => {
    rejects({ inputs: [f32('a'), f32('b'), f32('a')] }, 'inputs[2].name')
    rejects({ inputs: [f32('a')], outputs: [{ name: 'y' }, { name: 'z' }, { name: 'y' }] }, 'outputs[2].name')
    expect(parseInferRequest({ inputs: [f32('a')], outputs: [{ name: 'y' }, { name: 'z' }] }).outputs).toEqual(['y', 'z'])
  })

  it('takes null in an optional field as the field left out, as schema-class clients send it', () => {
    const withNulls = parseInferRequest({
      id: null,
      parameters: null,
      inputs: [{ ...f32('a'), parameters: null }],
      outputs: [{ name: 'y', parameters: null }],
    })
    expect(withNulls).toMatchObject({ id: undefined, outputs: ['y'] })
    expect(withNulls.binaryOutputs('y')).toBe(false)
    expect(parseInferRequest({ inputs: [f32('a')], outputs: null }).outputs).toEqual([])
    // A parameter set to null is one left out too: no binary size, flag or limit.
    const nullParameters = parseInferRequest({
      parameters: { timeout_ms: null, binary_data_output: null, max_price_wei: null },
      inputs: [{ ...f32('a'), parameters: { binary_data_size: null } }],
      outputs: [{ name: 'y', parameters: { binary_data: null } }],
    })
    expect(nullParameters).toMatchObject({ timeoutMs: undefined, maxPriceWei: undefined, inputs: [{ name: 'a', shape: [2] }] })
    expect(nullParameters.binaryOutputs('y')).toBe(false)
    // Not where a value is required.
    rejects({ inputs: [{ ...f32('a'), shape: null }] }, 'inputs[0].shape')
    rejects({ inputs: null }, 'inputs')
  })

  it('refuses the shared-memory extension on an input or an output, naming the parameter', () => {
    rejects({ inputs: [{ name: 'a', datatype: 'FP32', shape: [2], parameters: { shared_memory_region: 'r', shared_memory_byte_size: 8 } }] }, 'inputs[0].parameters.shared_memory_region')
    rejects({ inputs: [f32('a')], outputs: [{ name: 'y', parameters: { shared_memory_region: 'r' } }] }, 'outputs[0].parameters.shared_memory_region')
  })

  it('refuses floats the datatype cannot hold, naming the element', () => {
    rejects({ inputs: [f32('a', [1, 1e39])] }, 'inputs[0].data[1]')
    rejects({ inputs: [{ name: 'h', datatype: 'FP16', shape: [2], data: [1, 70000] }] }, 'inputs[0].data[1]')
    expect(parseInferRequest({ inputs: [{ name: 'h', datatype: 'FP16', shape: [1], data: [65504] }] }).inputs[0]!.data).toEqual(Uint8Array.of(0xff, 0x7b))
  })

  it("refuses inputs whose tensor data would not fit one broker message (413 naming the input that crosses it)", () => {
    // 5.3 M zeros as JSON are ~10.5 MB of text, but 42 MB as INT64: past MAX_TENSOR_BYTES.
    const count = Math.floor(MAX_TENSOR_BYTES / 8) + 1
    const zeros = new Array<number>(count).fill(0)
    expect(() => parseInferRequest({ inputs: [{ name: 'ids', datatype: 'INT64', shape: [count], data: zeros }] })).toThrow(
      expect.objectContaining({ status: 413, field: 'inputs[0].data' }),
    )
    // Two inputs under the limit each, over it together: the second is named.
    const half = new Array<number>(Math.ceil(count / 2)).fill(0)
    const two = [0, 1].map((i) => ({ name: `ids${i}`, datatype: 'INT64', shape: [half.length], data: half }))
    expect(() => parseInferRequest({ inputs: two })).toThrow(expect.objectContaining({ status: 413, field: 'inputs[1].data' }))
    // Exactly at the limit is fine.
    const atLimit = new Array<number>(MAX_TENSOR_BYTES / 8).fill(0)
    expect(parseInferRequest({ inputs: [{ name: 'ids', datatype: 'INT64', shape: [atLimit.length], data: atLimit }] }).inputs[0]!.data.byteLength).toBe(MAX_TENSOR_BYTES)
  })

  it('refuses a binary BOOL byte other than 0 or 1', () => {
    const header = { inputs: [{ name: 'b', datatype: 'BOOL', shape: [3], parameters: { binary_data_size: 3 } }] }
    rejects(header, 'inputs[0].parameters.binary_data_size', Uint8Array.of(0, 1, 2))
    expect(parseInferRequest(header, Uint8Array.of(0, 1, 1)).inputs[0]!.data).toEqual(Uint8Array.of(0, 1, 1))
  })

  it("lets an output's own binary_data override binary_data_output, both ways", () => {
    const outputs = [{ name: 'json', parameters: { binary_data: false } }, { name: 'plain' }]
    const byDefault = parseInferRequest({ inputs: [f32('a')], parameters: { binary_data_output: true }, outputs }).binaryOutputs
    expect([byDefault('json'), byDefault('plain'), byDefault('unlisted')]).toEqual([false, true, true])
    const optIn = parseInferRequest({ inputs: [f32('a')], outputs: [{ name: 'bin', parameters: { binary_data: true } }] }).binaryOutputs
    expect([optIn('bin'), optIn('other')]).toEqual([true, false])
  })

  it('refuses binary flags that are not booleans, and the classification extension, naming the field', () => {
    rejects({ inputs: [f32('a')], parameters: { binary_data_output: 'true' } }, 'parameters.binary_data_output')
    rejects({ inputs: [f32('a')], outputs: [{ name: 'y' }, { name: 'z', parameters: { binary_data: 1 } }] }, 'outputs[1].parameters.binary_data')
    rejects({ inputs: [f32('a')], outputs: [{ name: 'y', parameters: { classification: 3 } }] }, 'outputs[0].parameters.classification')
  })

  it('reads a 64-bit integer JSON number beyond 2^53 exactly from the text, or asks for a string', () => {
    const text = '{"inputs":[{"name":"i","datatype":"INT64","shape":[2],"data":[1,9007199254740993]}]}'
    const body: unknown = JSON.parse(text)
    // Without the text there is nothing to read again.
    rejects(body, 'inputs[0].data[1]')
    // JSON.parse source text access: in workerd's V8 (test/e2e/datatypes.test.ts), not in Node 20's.
    const sourceAccess = JSON.parse('1', (_key: string, value: unknown, context?: { source?: string }) => context?.source === '1') as boolean
    if (sourceAccess) {
      const data = parseInferRequest(body, undefined, text).inputs[0]!.data
      expect([...new BigInt64Array(data.buffer, data.byteOffset, 2)]).toEqual([1n, 9007199254740993n])
    } else {
      expect(() => parseInferRequest(body, undefined, text)).toThrow(
        expect.objectContaining({ status: 400, field: 'inputs[0].data[1]', message: expect.stringContaining('decimal string') }),
      )
    }
  })

  it('asks for a string when a body with a 64-bit integer beyond 2^53 is nested too deep to read again', () => {
    // The second reading's reviver walks the value recursively: 100,000 levels overflowed the stack (a 500).
    const text = `{"inputs":[{"name":"i","datatype":"INT64","shape":[2],"data":[1,9007199254740993]}],"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}`
    expect(() => parseInferRequest(JSON.parse(text), undefined, text)).toThrow(
      expect.objectContaining({ status: 400, field: 'inputs[0].data[1]', message: expect.stringContaining('decimal string') }),
    )
  })

  it('refuses a parameter of any size or depth quickly, showing the start of its value', () => {
    // A 30 MB body can hold one array nested 15 million deep: writing all of it into the message
    // held the edge for minutes (and overflowed the stack in Node).
    let deep: unknown[] = []
    for (let depth = 0; depth < 1_000_000; depth++) deep = [deep]
    for (const [body, field, binary] of [
      [{ inputs: [f32('a')], parameters: { binary_data_output: deep } }, 'parameters.binary_data_output'],
      [{ inputs: [f32('a')], parameters: { max_price_wei: deep } }, 'parameters.max_price_wei'],
      [{ inputs: [f32('a')], outputs: [{ name: 'y', parameters: { binary_data: { deep } } }] }, 'outputs[0].parameters.binary_data'],
      [{ inputs: [{ name: 'a', datatype: 'FP32', shape: [1], parameters: { binary_data_size: deep } }] }, 'inputs[0].parameters.binary_data_size', new Uint8Array(4)],
    ] as const) {
      let caught: unknown
      try {
        parseInferRequest(body, binary)
      } catch (error) {
        caught = error
      }
      expect(caught).toEqual(expect.objectContaining({ status: 400, field }))
      expect((caught as Error).message).toMatch(/got (\[\[\[\[|\{"deep":\[\[)/)
      expect((caught as Error).message.length).toBeLessThan(250)
    }
    // A value short enough is shown whole, as before.
    rejects({ inputs: [f32('a')], parameters: { binary_data_output: 'true' } }, 'parameters.binary_data_output')
    expect(() => parseInferRequest({ inputs: [f32('a')], parameters: { binary_data_output: 'true' } })).toThrow('got "true"')
  })
})
