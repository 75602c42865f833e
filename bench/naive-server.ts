/**
 * The baseline a user could write in an afternoon: one Node process, one HTTP route, JSON in,
 * the same onnxruntime session, JSON out. `bench/overhead` measures depinfer against it.
 * Prints its port on stdout once listening.
 */
import { createServer } from 'node:http'
import * as ort from 'onnxruntime-node'
import { keepOrtTelemetryOff } from '../device-agent/src/runtime/ort-telemetry.js'

keepOrtTelemetryOff()

const modelPath = process.argv[2]!
const session = await ort.InferenceSession.create(modelPath, { graphOptimizationLevel: 'all' })

const server = createServer((request, response) => {
  const chunks: Buffer[] = []
  request.on('data', (chunk: Buffer) => chunks.push(chunk))
  request.on('end', async () => {
    try {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        inputs: Array<{ name: string; shape: number[]; data: number[] }>
      }
      const feeds: Record<string, ort.Tensor> = {}
      for (const input of body.inputs) feeds[input.name] = new ort.Tensor('float32', Float32Array.from(input.data), input.shape)
      const results = await session.run(feeds)
      const outputs = Object.entries(results).map(([name, t]) => ({ name, datatype: 'FP32', shape: t.dims, data: Array.from(t.data as Float32Array) }))
      response.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ outputs }))
    } catch (error) {
      response.writeHead(400).end(String(error))
    }
  })
})
server.listen(0, '127.0.0.1', () => {
  const address = server.address() as { port: number }
  console.log(address.port)
})
