/**
 * Every datatype a model may use, end to end: a generated ONNX model (test/helpers/onnx-model)
 * with FP32, FP16, FP64, INT64, INT32, INT16, INT8, UINT8 and BOOL inputs, served by a real agent
 * from its config file, answered through the network exactly as onnxruntime answers directly.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as ort from 'onnxruntime-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { byteLength, float16BitsToNumber, toFloat16Bits, ORT_TYPE_BY_DATATYPE, type Datatype } from '../../shared/src/index.js'
import type { LocalBroker } from '../../scripts/local/broker.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { kitchenSinkModel, tinyClassifierModel } from '../helpers/onnx-model.js'
import { apiClient, BROKERS, outputByName, postBinaryInfer, runDirect, waitForModelReady, type ApiClient, type BinaryInput } from './support.js'
import { temporaryDirectory } from '../helpers/temporary-directory.js'

const dir = temporaryDirectory('depinfer-models-')
const kitchenSink = kitchenSinkModel()
const kitchenSinkPath = join(dir, 'kitchen-sink.onnx')
writeFileSync(kitchenSinkPath, kitchenSink.bytes)
const classifierPath = join(dir, 'tiny-classifier.onnx')
writeFileSync(classifierPath, tinyClassifierModel().bytes)
const configPath = join(dir, 'agent.json')
writeFileSync(
  configPath,
  JSON.stringify({
    models: [
      { name: 'kitchen-sink', version: '1', path: kitchenSinkPath },
      { name: 'tiny-classifier', version: '2', path: classifierPath },
    ],
  }),
)

/** JSON data per input (2 rows of 4), chosen to hit each type's edges. */
const JSON_DATA: Record<string, unknown[]> = {
  f32: [0.1, -2.5, 1e38, 1e-45, 0, -3, 7, 1.5],
  f16: [0.1, -2.5, 30000, 6e-8, 0, 1, 1000.5, -0.333],
  f64: [0.1, -2.5, 1e300, 5e-324, 0, 1, Math.PI, -Math.E],
  i64: ['4611686018427387903', '-4611686018427387904', '9007199254740993', 0, -1, 1, 123456789, -7],
  i32: [1073741823, -1073741824, 0, -1, 1, 2, 3, 4],
  i16: [16383, -16384, 0, -1, 1, 2, 3, 4],
  i8: [63, -64, 0, -1, 1, 2, 3, 4],
  u8: [127, 0, 1, 2, 200, 255, 3, 4],
  b: [true, false, true, true, false, false, true, false],
}

/** The same values as onnxruntime tensors, for the direct reference run. */
function directTensor(datatype: Datatype, values: unknown[]): ort.Tensor {
  const type = ORT_TYPE_BY_DATATYPE[datatype] as ort.Tensor.Type
  const data =
    datatype === 'FP16' ? Uint16Array.from(values as number[], toFloat16Bits)
      : datatype === 'INT64' ? BigInt64Array.from(values, (v) => BigInt(v as string | number))
        : datatype === 'BOOL' ? Uint8Array.from(values as boolean[], Number)
          : datatype === 'FP32' ? Float32Array.from(values as number[])
            : datatype === 'FP64' ? Float64Array.from(values as number[])
              : datatype === 'INT32' ? Int32Array.from(values as number[])
                : datatype === 'INT16' ? Int16Array.from(values as number[])
                  : datatype === 'INT8' ? Int8Array.from(values as number[])
                    : Uint8Array.from(values as number[])
  return new ort.Tensor(type, data as Float32Array, [2, 4])
}

/** A direct onnxruntime tensor's bytes, as the binary extension carries them. */
function bytesOf(tensor: ort.Tensor): Uint8Array {
  const view = tensor.data as unknown as ArrayBufferView
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength)
}

/** How a direct onnxruntime output reads in the v2 JSON answer. */
function asJson(datatype: Datatype, tensor: ort.Tensor): unknown[] {
  const data = tensor.data as ArrayLike<number | bigint>
  if (datatype === 'FP16') return Array.from(data as Uint16Array, float16BitsToNumber)
  if (datatype === 'BOOL') return Array.from(data as Uint8Array, Boolean)
  if (datatype === 'INT64') return Array.from(data as BigInt64Array, (v) => v) // compared as bigints below
  return Array.from(data as Float32Array)
}

describe.each(BROKERS)('datatypes through $name', (brokerKind) => {
  let broker: LocalBroker
  let network: LocalNetwork
  let api: ApiClient

  beforeAll(async () => {
    broker = await brokerKind.start()
    network = await startLocalNetwork({ broker, build: false, agents: [{ deviceId: 'typed-device', configPath }] })
    api = apiClient(network.edge.url, network.apiKey)
    await waitForModelReady(api, 'kitchen-sink')
  })
  afterAll(async () => {
    await network?.close()
    await broker?.close()
  })

  it('describes a model it has never seen, from the file the agent loaded', async () => {
    const meta = await api.get('/v2/models/kitchen-sink')
    expect(meta.status).toBe(200)
    expect(meta.body.inputs).toEqual(kitchenSink.inputs.map((i) => ({ name: i.name, datatype: i.datatype, shape: [-1, 4] })))
    expect((await api.get('/v2/models/tiny-classifier')).body).toMatchObject({ versions: ['2'] })
  })

  it('returns every datatype exactly as onnxruntime computes it directly', async () => {
    const response = await api.post('/v2/models/kitchen-sink/infer', {
      inputs: kitchenSink.inputs.map((input) => ({ name: input.name, datatype: input.datatype, shape: [2, 4], data: JSON_DATA[input.name] })),
    })
    expect(response.status).toBe(200)
    const direct = await runDirect(
      kitchenSinkPath,
      Object.fromEntries(kitchenSink.inputs.map((input) => [input.name, directTensor(input.datatype, JSON_DATA[input.name]!)])),
    )
    for (const output of kitchenSink.outputs) {
      const got = outputByName(response.body, output.name)
      expect(got.datatype).toBe(output.datatype)
      expect(got.shape).toEqual([2, 4])
      const expected = asJson(output.datatype, direct[output.name]!)
      if (output.datatype === 'INT64') {
        // Parse the raw JSON text so 64-bit values are not rounded on our side either.
        const raw = new RegExp(`"name":"${output.name}","datatype":"INT64","shape":\\[2,4\\],"data":\\[([^\\]]*)\\]`).exec(response.text)![1]!
        expect(raw.split(',').map(BigInt)).toEqual(expected)
      } else {
        expect(got.data).toEqual(expected)
      }
    }
  })

  it('reads 64-bit integers beyond 2^53 sent as bare JSON numbers with every digit (as numpy tolist() writes them)', async () => {
    const direct = await runDirect(
      kitchenSinkPath,
      Object.fromEntries(kitchenSink.inputs.map((input) => [input.name, directTensor(input.datatype, JSON_DATA[input.name]!)])),
    )
    const request = JSON.stringify({
      inputs: kitchenSink.inputs.map((input) => ({ name: input.name, datatype: input.datatype, shape: [2, 4], data: JSON_DATA[input.name] })),
      outputs: [{ name: 'i64_out' }, { name: 'f32_out' }],
    })
    // The i64 strings ("4611686018427387903", "9007199254740993", ...) written as bare numbers,
    // which JSON.parse alone would round.
    const bare = request.replace(/"i64","datatype":"INT64","shape":\[2,4\],"data":\[([^\]]*)\]/, (whole, list: string) => whole.replace(list, list.replaceAll('"', '')))
    expect(bare).toContain('[4611686018427387903,-4611686018427387904,9007199254740993,')
    const response = await api.post('/v2/models/kitchen-sink/infer', bare)
    expect(response.status).toBe(200)
    const raw = /"name":"i64_out","datatype":"INT64","shape":\[2,4\],"data":\[([^\]]*)\]/.exec(response.text)![1]!
    expect(raw.split(',').map(BigInt)).toEqual(asJson('INT64', direct.i64_out!))
    expect(outputByName(response.body, 'f32_out').data).toEqual(asJson('FP32', direct.f32_out!))

    // Read exactly in tensor data only: a parameter given such a number is refused as before.
    const withParameter = bare.replace('"outputs":', '"parameters":{"binary_data_output":9007199254740993},"outputs":')
    expect(await api.post('/v2/models/kitchen-sink/infer', withParameter)).toMatchObject({ status: 400, body: { field: 'parameters.binary_data_output' } })
  })

  it('shows a number JSON reads as Infinity as Infinity in the 400 (not null)', async () => {
    const request = JSON.stringify({
      inputs: kitchenSink.inputs.map((input) => ({ name: input.name, datatype: input.datatype, shape: [2, 4], data: JSON_DATA[input.name] })),
    })
    const response = await api.post('/v2/models/kitchen-sink/infer', request.replace(/("f32","datatype":"FP32","shape":\[2,4\],"data":\[)[^,]*/, (_whole, start: string) => `${start}1e400`))
    expect(response.status).toBe(400)
    expect(response.body).toMatchObject({ field: 'inputs[0].data[0]', detail: expect.stringContaining('Infinity') })
  })

  it('takes and returns every datatype as binary tensors, byte for byte what onnxruntime computes', async () => {
    const direct = await runDirect(
      kitchenSinkPath,
      Object.fromEntries(kitchenSink.inputs.map((input) => [input.name, directTensor(input.datatype, JSON_DATA[input.name]!)])),
    )
    const response = await postBinaryInfer(
      network.edge.url,
      network.apiKey,
      '/v2/models/kitchen-sink/infer',
      kitchenSink.inputs.map((input) => ({ name: input.name, datatype: input.datatype, shape: [2, 4], bytes: bytesOf(directTensor(input.datatype, JSON_DATA[input.name]!)) })),
      { parameters: { binary_data_output: true } },
    )
    expect(response.json).toMatchObject({ model_name: 'kitchen-sink' })
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('application/octet-stream')
    expect(response.outputs.size).toBe(kitchenSink.outputs.length)
    for (const output of kitchenSink.outputs) {
      expect(response.outputs.get(output.name), output.name).toEqual(bytesOf(direct[output.name]!))
    }
  })

  it.each([
    ['a binary_data_size that does not fit the shape', 0, (b: BinaryInput) => ({ ...b, bytes: b.bytes.subarray(4) }), 'inputs[0].parameters.binary_data_size'],
    // The extension's BOOL is one byte, 0 or 1: a 2 is no boolean (onnxruntime would read it as true).
    ['a binary BOOL byte other than 0 or 1', 8, (b: BinaryInput) => ({ ...b, bytes: Uint8Array.of(1, 0, 2, 1, 0, 0, 1, 0) }), 'inputs[8].parameters.binary_data_size'],
  ])('rejects %s', async (_what, index, mutate, field) => {
    const inputs: BinaryInput[] = kitchenSink.inputs.map((input) => ({ name: input.name, datatype: input.datatype, shape: [2, 4], bytes: new Uint8Array(byteLength(input.datatype, [2, 4])) }))
    inputs[index] = mutate(inputs[index]!)
    const response = await postBinaryInfer(network.edge.url, network.apiKey, '/v2/models/kitchen-sink/infer', inputs)
    expect(response.status).toBe(400)
    expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/)
    expect(response.json).toMatchObject({ status: 400, field })
  })

  it('answers an output whose own binary_data is false as JSON, the rest binary as binary_data_output asks', async () => {
    const direct = await runDirect(
      kitchenSinkPath,
      Object.fromEntries(kitchenSink.inputs.map((input) => [input.name, directTensor(input.datatype, JSON_DATA[input.name]!)])),
    )
    const asJsonOutput = 'f16_out'
    const response = await postBinaryInfer(
      network.edge.url,
      network.apiKey,
      '/v2/models/kitchen-sink/infer',
      kitchenSink.inputs.map((input) => ({ name: input.name, datatype: input.datatype, shape: [2, 4], bytes: bytesOf(directTensor(input.datatype, JSON_DATA[input.name]!)) })),
      {
        parameters: { binary_data_output: true },
        // Asked for in reverse: the JSON list and the binary sections both follow the request.
        outputs: [...kitchenSink.outputs].reverse().map((o) => ({ name: o.name, ...(o.name === asJsonOutput && { parameters: { binary_data: false } }) })),
      },
    )
    const askedOrder = [...kitchenSink.outputs].reverse().map((o) => o.name)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('application/octet-stream')
    const json = outputByName(response.json, asJsonOutput)
    expect(json).not.toHaveProperty('parameters.binary_data_size')
    expect(json.data).toEqual(asJson('FP16', direct[asJsonOutput]!))
    expect((response.json.outputs as Array<{ name: string }>).map((o) => o.name)).toEqual(askedOrder)
    expect([...response.outputs.keys()]).toEqual(askedOrder.filter((name) => name !== asJsonOutput))
    for (const [name, bytes] of response.outputs) expect(bytes, name).toEqual(bytesOf(direct[name]!))
  })

  it('rejects an input given twice with 400 naming the second, before it reaches a device', async () => {
    const inputs = kitchenSink.inputs.map((input) => ({ name: input.name, datatype: input.datatype, shape: [2, 4], data: JSON_DATA[input.name] }))
    const response = await api.post('/v2/models/kitchen-sink/infer', { inputs: [inputs[0], ...inputs] })
    expect(response.status).toBe(400)
    expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/)
    expect(response.body).toMatchObject({ status: 400, field: 'inputs[1].name', detail: expect.stringContaining('"f32"') })
  })

  it('rejects binary bodies whose header length or trailing bytes do not add up', async () => {
    const header = JSON.stringify({ inputs: [{ name: 'f32', datatype: 'FP32', shape: [2, 4], parameters: { binary_data_size: 32 } }] })
    const post = (body: Uint8Array, headerLength: string) =>
      api.post('/v2/models/kitchen-sink/infer', body, { 'Inference-Header-Content-Length': headerLength })
    const withTrailing = Buffer.concat([Buffer.from(header), new Uint8Array(40)])
    expect((await post(withTrailing, String(header.length))).body).toMatchObject({ status: 400, field: 'Inference-Header-Content-Length' })
    expect((await post(withTrailing, String(withTrailing.length + 1))).body).toMatchObject({ status: 400, field: 'Inference-Header-Content-Length' })
    expect((await post(withTrailing, 'ten')).body).toMatchObject({ status: 400, field: 'Inference-Header-Content-Length' })
    // A length past the JSON: where the JSON really ends; one short of it: a hint, not a parser's position.
    const binary = Buffer.concat([Buffer.from(header), new Uint8Array(32)])
    expect((await post(binary, String(header.length + 5))).body).toMatchObject({
      status: 400, field: 'Inference-Header-Content-Length', detail: expect.stringContaining(`the JSON ends at byte ${header.length}`),
    })
    expect((await post(binary, String(header.length - 1))).body).toMatchObject({
      status: 400, field: 'Inference-Header-Content-Length', detail: expect.stringContaining('is it the length of the JSON part alone?'),
    })
    // A binary body without the header says which header to send, and its value.
    const without = await api.post('/v2/models/kitchen-sink/infer', binary)
    expect(without.body).toMatchObject({
      status: 400, field: 'body', detail: expect.stringContaining(`send the JSON's length as Inference-Header-Content-Length (here ${header.length})`),
    })
    // binary_data_size is a number of bytes, not a string of one.
    const quoted = JSON.stringify({ inputs: [{ name: 'f32', datatype: 'FP32', shape: [2, 4], parameters: { binary_data_size: '32' } }] })
    expect((await post(Buffer.concat([Buffer.from(quoted), new Uint8Array(32)]), String(quoted.length))).body).toMatchObject({
      status: 400, field: 'inputs[0].parameters.binary_data_size', detail: 'binary_data_size must be a number of bytes (a non-negative integer), got "32"',
    })
  })

  it('writes results JSON cannot hold (Infinity) as null, as the v2 JSON form must', async () => {
    const data = { ...JSON_DATA, f32: [3.4e38, 1, 1, 1, 1, 1, 1, 1], f16: [65504, 1, 1, 1, 1, 1, 1, 1] }
    const response = await api.post('/v2/models/kitchen-sink/infer', {
      inputs: kitchenSink.inputs.map((input) => ({ name: input.name, datatype: input.datatype, shape: [2, 4], data: data[input.name as keyof typeof data] })),
      outputs: [{ name: 'f32_out' }, { name: 'f16_out' }],
    })
    expect(response.status).toBe(200)
    expect(outputByName(response.body, 'f32_out').data.slice(0, 2)).toEqual([null, 2])
    expect(outputByName(response.body, 'f16_out').data.slice(0, 2)).toEqual([null, 2])
  })

  it('returns only the outputs asked for, in the order asked (not the model\'s)', async () => {
    const response = await api.post('/v2/models/kitchen-sink/infer', {
      inputs: kitchenSink.inputs.map((input) => ({ name: input.name, datatype: input.datatype, shape: [2, 4], data: JSON_DATA[input.name] })),
      outputs: [{ name: 'b_out' }, { name: 'i8_out' }],
    })
    expect(response.status).toBe(200)
    // The model lists i8_out before b_out.
    expect((response.body.outputs as Array<{ name: string }>).map((o) => o.name)).toEqual(['b_out', 'i8_out'])
    expect(outputByName(response.body, 'b_out').data).toEqual(JSON_DATA.b!.map((v) => !v))
  })

  it.each([
    ['an INT8 value out of range', 'i8', 128, 'inputs[6].data[0]'],
    ['a fraction for INT32', 'i32', 1.5, 'inputs[4].data[0]'],
    ['a number for BOOL', 'b', 1, 'inputs[8].data[0]'],
    ['a negative UINT8', 'u8', -1, 'inputs[7].data[0]'],
    ['an INT64 beyond 64 bits', 'i64', '9223372036854775808', 'inputs[3].data[0]'],
    // Beyond the type's largest finite value: refused, not sent as Infinity.
    ['an FP32 beyond its range', 'f32', 1e39, 'inputs[0].data[0]'],
    ['an FP16 beyond its range', 'f16', 70000, 'inputs[1].data[0]'],
  ])('rejects %s with 400 naming the element', async (_what, name, badValue, field) => {
    const response = await api.post('/v2/models/kitchen-sink/infer', {
      inputs: kitchenSink.inputs.map((input) => ({
        name: input.name,
        datatype: input.datatype,
        shape: [2, 4],
        data: input.name === name ? [badValue, ...JSON_DATA[input.name]!.slice(1)] : JSON_DATA[input.name],
      })),
    })
    expect(response.status).toBe(400)
    expect(response.body).toMatchObject({ status: 400, field, detail: expect.stringContaining(String(badValue)) })
  })

  it('routes a batch through a second model on the same device', async () => {
    const response = await api.post('/v2/models/tiny-classifier/infer', {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [3, 4], data: [[5, 0, 0, 1], [0, 5, 0, 1], [0, 0, 5, 1]] }],
    })
    expect(response.status).toBe(200)
    const probs = outputByName(response.body, 'probs')
    expect(probs.shape).toEqual([3, 3])
    const direct = await runDirect(classifierPath, { x: new ort.Tensor('float32', Float32Array.from([5, 0, 0, 1, 0, 5, 0, 1, 0, 0, 5, 1]), [3, 4]) })
    expect(probs.data).toEqual(Array.from(direct.probs!.data as Float32Array))
  })
})
