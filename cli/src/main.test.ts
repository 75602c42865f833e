/**
 * The `depinfer` CLI run as a child process, as developers run it: every expected failure is one
 * line naming what is wrong (file, URL, option, model input) with a non-zero exit code and no
 * stack trace, and a bad price or payout address is refused before anything is uploaded.
 */
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildModel, classifierWithEmbeddingModel, matmulSoftmaxModel, rawData, tinyClassifierModel } from '../../test/helpers/onnx-model.js'
import { runNode, type NodeRun as Run } from '../../test/helpers/run-node.js'
import { temporaryDirectory } from '../../test/helpers/temporary-directory.js'

const CLI = fileURLToPath(new URL('../bin/depinfer.js', import.meta.url))
const PAYOUT = '0x00000000000000000000000000000000000000aa'
const dir = temporaryDirectory('depinfer-cli-')
const modelPath = join(dir, 'tiny.onnx')
writeFileSync(modelPath, tinyClassifierModel().bytes)

/** A classifier fed token ids: its INT32 input is cast to float before the same MatMul and Softmax. */
const int32Path = join(dir, 'ids.onnx')
writeFileSync(
  int32Path,
  buildModel({
    inputs: [{ name: 'ids', datatype: 'INT32', shape: ['N', 4] }],
    outputs: [{ name: 'probs', datatype: 'FP32', shape: ['N', 3] }],
    initializers: [{ name: 'W', datatype: 'FP32', dims: [4, 3], data: rawData(tinyClassifierModel().weights) }],
    nodes: [
      { opType: 'Cast', inputs: ['ids'], outputs: ['x'], attributes: { to: { int: 1 } } },
      { opType: 'MatMul', inputs: ['x', 'W'], outputs: ['logits'] },
      { opType: 'Softmax', inputs: ['logits'], outputs: ['probs'], attributes: { axis: { int: -1 } } },
    ],
  }),
)

const runCli = (args: string[], env: Record<string, string>) => runNode(CLI, args, { DEPINFER_API_KEY: 'dpi_test', ...env })

/** The error line: the last line on stderr (a publish may have logged its upload's start before it). */
function expectOneLineError(run: Run, code: number, message: RegExp): void {
  expect(run.stderr, run.stderr).not.toMatch(/^\s+at /m) // no stack trace
  expect(run.stderr).not.toMatch(/usage:/)
  const lines = run.stderr.trim().split('\n')
  expect(lines.filter((line) => !/^upload/.test(line)), run.stderr).toHaveLength(1)
  expect(lines.at(-1)).toMatch(message)
  expect(run.code).toBe(code)
}

const publish = (file: string, env: Record<string, string>, ...options: string[]) =>
  runCli(['models', 'publish', file, '--name', 'm', '--price-wei', '1000', '--payout-address', PAYOUT, ...options], env)

/** A stand-in edge recording what reaches it; answers every request with `answer`. */
let edge: Server
let edgeUrl: string
const requests: string[] = []
let answer: { status: number; type: string; body: string } = { status: 400, type: 'application/problem+json', body: '{}' }
/** A port nothing listens on. */
let closedPortUrl: string

beforeAll(async () => {
  edge = createServer((request: IncomingMessage, response) => {
    requests.push(`${request.method} ${request.url}`)
    request.resume()
    request.once('end', () => response.writeHead(answer.status, { 'Content-Type': answer.type }).end(answer.body))
  })
  await new Promise<void>((resolve) => edge.listen(0, '127.0.0.1', resolve))
  edgeUrl = `http://127.0.0.1:${(edge.address() as AddressInfo).port}`
  const probe = createNetServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  closedPortUrl = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`
  await new Promise((resolve) => probe.close(resolve))
})
afterAll(() => new Promise((resolve) => edge.close(resolve)))

describe('depinfer CLI errors', () => {
  it('names a model file it cannot read', async () => {
    const missing = join(dir, 'nope.onnx')
    expectOneLineError(await publish(missing, { DEPINFER_URL: edgeUrl }), 1, new RegExp(`^cannot read the model file ${missing}: no such file or directory$`))
    expectOneLineError(await publish(dir, { DEPINFER_URL: edgeUrl }), 1, new RegExp(`^cannot read the model file ${dir}: `))
    const empty = join(dir, 'empty.onnx')
    writeFileSync(empty, '')
    expectOneLineError(await publish(empty, { DEPINFER_URL: edgeUrl }), 2, new RegExp(`^the model file ${empty} is empty: an \\.onnx file holds the model's graph and weights$`))
  })

  it('names an edge it cannot reach, for list and publish', async () => {
    const unreachable = new RegExp(`^cannot reach the edge at ${closedPortUrl} \\(DEPINFER_URL\\): connect ECONNREFUSED`)
    expectOneLineError(await runCli(['models', 'list'], { DEPINFER_URL: closedPortUrl }), 1, unreachable)
    expectOneLineError(await publish(modelPath, { DEPINFER_URL: closedPortUrl }), 1, unreachable)
  })

  it('gives up on an edge that takes the connection but never answers, saying so', async () => {
    const silent = createNetServer(() => {})
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`
    try {
      const started = Date.now()
      const stalled = new RegExp(`^cannot reach the edge at ${url} \\(DEPINFER_URL\\): no answer for 1 s$`)
      expectOneLineError(await runCli(['models', 'list'], { DEPINFER_URL: url, DEPINFER_EDGE_TIMEOUT_SEC: '1' }), 1, stalled)
      expectOneLineError(await publish(modelPath, { DEPINFER_URL: url, DEPINFER_EDGE_TIMEOUT_SEC: '1' }), 1, stalled)
      expect(Date.now() - started).toBeLessThan(20_000)
    } finally {
      silent.close()
    }
  })

  it('waits longer for the answer to an upload, by its size, than for a silent edge', async () => {
    // The whole body arrives, then the edge takes 2.5 s to answer: past the 1 s idle timeout,
    // within it plus the time 1 MiB takes on a slow uplink (4 s).
    const slow = createServer((request, response) => {
      request.resume()
      request.once('end', () => setTimeout(() => response.writeHead(400, { 'Content-Type': 'application/problem+json' }).end(JSON.stringify({ detail: 'checked it all', field: 'model' })), 2_500))
    })
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve))
    const big = join(dir, 'big.onnx')
    writeFileSync(big, new Uint8Array(1024 * 1024).fill(7))
    try {
      const url = `http://127.0.0.1:${(slow.address() as AddressInfo).port}`
      expectOneLineError(await publish(big, { DEPINFER_URL: url, DEPINFER_EDGE_TIMEOUT_SEC: '1' }), 1, /^publish failed \(400\): checked it all \[model\]$/)
    } finally {
      slow.close()
    }
  })

  it('refuses a timeout a timer cannot hold', async () => {
    expectOneLineError(await runCli(['models', 'list'], { DEPINFER_URL: edgeUrl, DEPINFER_EDGE_TIMEOUT_SEC: '3000000' }), 2, /^DEPINFER_EDGE_TIMEOUT_SEC must be a number of seconds above 0 and at most 2147483, got "3000000"$/)
  })

  it.each(['not a url', 'localhost:8787', 'ftp://127.0.0.1/'])('names a DEPINFER_URL that is not an http(s) URL: %s', async (url) => {
    expectOneLineError(await runCli(['models', 'list'], { DEPINFER_URL: url }), 2, new RegExp(`^DEPINFER_URL must be an http:// or https:// URL .*, got "${url}"$`))
  })

  it('names the input --int8 cannot generate samples for, before quantizing or uploading', async () => {
    const run = await publish(int32Path, { DEPINFER_URL: closedPortUrl }, '--int8')
    expectOneLineError(run, 1, new RegExp(`^${int32Path}: input "ids" is INT32; --int8 .* FP32 inputs: publish without --int8$`))
  })

  it('names an unknown --class-output and the model\'s outputs in one line, before quantizing or uploading', async () => {
    const path = join(dir, 'embedding.onnx')
    writeFileSync(path, classifierWithEmbeddingModel())
    requests.length = 0
    const run = await publish(path, { DEPINFER_URL: edgeUrl }, '--int8', '--class-output', 'logits')
    expectOneLineError(run, 2, new RegExp(`^${path}: --class-output logits: the model has no output "logits" \\(its outputs: probs, embedding\\)$`))
    expect(requests).toEqual([])
  })

  it.each([
    ['without --int8', [], /^--class-output names the output --int8 judges the int8 variant on: add --int8$/],
    ['with a variant made elsewhere', ['--int8-file', 'q.onnx', '--int8-report', 'q.json'], /^--class-output goes with --int8: a variant made elsewhere is judged as its report says/],
  ])('refuses --class-output %s', async (_case, options, message) => {
    const run = await publish(modelPath, { DEPINFER_URL: closedPortUrl }, '--class-output', 'probs', ...options)
    expect(run.code).toBe(2)
    expect(run.stderr.split('\n')[0]).toMatch(message)
  })

  it('quantizes with the sample sizes --shape gives, for an input whose sizes the file leaves open, then uploads', async () => {
    // x [N, K], W [64, 8]: the quantizer's guess for K (32) does not fit W.
    const path = join(dir, 'open-k.onnx')
    writeFileSync(path, matmulSoftmaxModel('N', 'K'))
    requests.length = 0
    const guessed = await publish(path, { DEPINFER_URL: edgeUrl }, '--int8')
    expect(guessed.code).toBe(1)
    expect(guessed.stderr).toMatch(/on inputs x=1,32: .*give those the model needs with --shape <input>=<d1,d2,…>$/m)
    expect(requests).toEqual([])
    answer = { status: 400, type: 'application/problem+json', body: JSON.stringify({ status: 400, detail: 'stop here', field: 'name' }) }
    const given = await publish(path, { DEPINFER_URL: edgeUrl }, '--int8', '--shape', 'x=1,64', '--min-agreement', '0.5')
    expect(given.stdout).toMatch(/^inputs: {6}x=1,64$/m)
    expect(given.stderr).toMatch(/^uploading the int8 variant failed \(400\): stop here \[name\]$/m)
    expect(requests.length).toBeGreaterThan(0)
  })

  it.each([
    ['without --int8', [], /^--shape sets the sizes of the sample inputs --int8 compares the int8 variant with fp32 on: add --int8$/],
    ['with a variant made elsewhere', ['--int8-file', 'q.onnx', '--int8-report', 'q.json'], /^--shape goes with --int8: a variant made elsewhere was measured as its report says/],
  ])('refuses --shape %s', async (_case, options, message) => {
    const run = await publish(modelPath, { DEPINFER_URL: closedPortUrl }, '--shape', 'x=1,4', ...options)
    expect(run.code).toBe(2)
    expect(run.stderr.split('\n')[0]).toMatch(message)
  })

  it('lists versions with their file sizes: bytes under 1 KiB, not "0 KiB"', async () => {
    const version = { name: 'tiny', version: '1', priceWei: '0', sha256: 'ab'.repeat(32), size: 300, variants: [{ kind: 'int8', size: 5_000, sha256: 'cd'.repeat(32), report: { top1Agreement: 1, maxAbsError: 0, samples: 10 }, minAgreement: 0.99 }] }
    answer = { status: 200, type: 'application/json', body: JSON.stringify({ models: [version] }) }
    const listed = await runCli(['models', 'list'], { DEPINFER_URL: edgeUrl })
    expect(listed.stdout).toMatch(/^tiny\tv1\t0 wei\t300 B\tsha256 (ab){32}\n {2}int8\t5 KiB\tsha256 (cd){32}\t/)
  })

  it('says what an edge answered when it is not the edge (no JSON)', async () => {
    answer = { status: 200, type: 'text/html', body: '<html>a proxy page</html>' }
    expectOneLineError(await runCli(['models', 'list'], { DEPINFER_URL: edgeUrl }), 1, /^list: http:\/\/127\.0\.0\.1:\d+ answered 200 with something other than JSON/)
    answer = { status: 502, type: 'text/html', body: '<html>\n<b>bad gateway</b>\n</html>' }
    expectOneLineError(await runCli(['models', 'list'], { DEPINFER_URL: edgeUrl }), 1, /^list failed \(502\): <html> <b>bad gateway<\/b> <\/html>$/)
  })

  it.each([
    ['a name the edge would refuse', ['--name', 'bad name'], /^--name must be 1-64 letters, digits, "\.", "_" or "-", starting with a letter or digit, got "bad name"$/],
    ['a price that is not a decimal integer', ['--price-wei', '1.5'], /^--price-wei must be the price per inference in wei, a decimal integer, got "1\.5"$/],
    ['a price with a leading zero', ['--price-wei', '010'], /^--price-wei must be the price per inference in wei, a decimal integer, got "010"$/],
    ['a price of 2^256', ['--price-wei', (2n ** 256n).toString()], /^--price-wei must be below 2\^256$/],
    ['a payout address that is not one', ['--payout-address', '0x12'], /^--payout-address must be an Ethereum address \(0x and 40 hex digits\), got "0x12"$/],
    ['the zero payout address', ['--payout-address', `0x${'0'.repeat(40)}`], /^--payout-address must not be the zero address: earnings paid to it would be burned$/],
    // anvil's account #3 as a wallet shows it, last digit mistyped: its EIP-55 checksum fails.
    ['a checksummed payout address with a typo', ['--payout-address', '0x90F79bf6EB2c4f870365E785982E1f101E93b907'], /^--payout-address has mixed-case letters whose EIP-55 checksum does not match/],
  ])('refuses %s before uploading anything', async (_case, options, message) => {
    requests.length = 0
    expectOneLineError(await publish(modelPath, { DEPINFER_URL: edgeUrl }, ...options), 2, message)
    expect(requests).toEqual([])
  })

  it('sends a valid price and address (up to 2^256 - 1) and reports the edge\'s refusal in one line', async () => {
    requests.length = 0
    answer = { status: 400, type: 'application/problem+json', body: JSON.stringify({ status: 400, detail: 'name is taken', field: 'name' }) }
    const run = await publish(modelPath, { DEPINFER_URL: edgeUrl }, '--price-wei', (2n ** 256n - 1n).toString(), '--payout-address', '0x90F79bf6EB2c4f870365E785982E1f101E93b906')
    expectOneLineError(run, 1, /^publish failed \(400\): name is taken \[name\]$/)
    expect(requests).toHaveLength(1)
    expect(requests[0]).toContain(`price_wei=${2n ** 256n - 1n}`)
  })
})

describe('depinfer models publish, a file that goes up in parts', () => {
  // A stand-in edge: a connection dropped in the middle of a part is a fault the real edge does
  // not produce on demand. It speaks the upload API as edge/src/routes/uploads.ts does, and drops
  // the connection on the attempts of part 1 listed in `dropPart1`.
  const PART_BYTES = 5 * 1024 * 1024
  const file = new Uint8Array(9 * 1024 * 1024).map((_, i) => i % 251) // over RESUMABLE_UPLOAD_BYTES: 2 parts
  const filePath = join(dir, 'large.onnx')
  writeFileSync(filePath, file)
  const fileSha = createHash('sha256').update(file).digest('hex')

  async function withUploadEdge(dropPart1: (attempt: number) => boolean, test: (url: string, seen: string[]) => Promise<void>): Promise<void> {
    const seen: string[] = []
    let part1Attempts = 0
    const server = createServer((request, response) => {
      const chunks: Buffer[] = []
      request.on('data', (chunk: Buffer) => chunks.push(chunk))
      const path = request.url!.split('?')[0]!
      if (request.method === 'PUT' && path === '/api/models/uploads/u1/parts/1' && dropPart1(++part1Attempts)) {
        seen.push('PUT part 1 (dropped)')
        request.once('data', () => request.socket.destroy())
        return
      }
      request.once('end', () => {
        const body = Buffer.concat(chunks)
        seen.push(`${request.method} ${path} ${body.length}`)
        const json = (status: number, value: unknown) => response.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(value))
        if (path === '/api/models/uploads') json(201, { state: 'open', id: 'u1', sha256: fileSha, size: file.length, partBytes: PART_BYTES, partCount: 2, receivedParts: [] })
        else if (path.startsWith('/api/models/uploads/u1/parts/')) json(200, { state: 'open', id: 'u1' })
        else if (path === '/api/models/uploads/u1/complete') json(201, { sha256: fileSha, size: file.length, inputs: [], outputs: [] })
        else json(201, { name: 'm', version: '1', sha256: new URL(request.url!, 'http://x').searchParams.get('sha256'), size: file.length, priceWei: '1000', inputs: [], outputs: [], variants: [] })
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      await test(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen)
    } finally {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  }

  it('sends a part again when its connection drops, then publishes the stored file by sha256 with no body', async () => {
    await withUploadEdge((attempt) => attempt === 1, async (url, seen) => {
      const run = await publish(filePath, { DEPINFER_URL: url })
      expect(run.code, run.stderr).toBe(0)
      expect(run.stdout).toMatch(/^published: m version 1, sha256 [0-9a-f]{64}/)
      expect(seen).toEqual([
        'POST /api/models/uploads 0',
        'PUT part 1 (dropped)',
        `PUT /api/models/uploads/u1/parts/1 ${PART_BYTES}`,
        `PUT /api/models/uploads/u1/parts/2 ${file.length - PART_BYTES}`,
        'POST /api/models/uploads/u1/complete 0',
        'POST /api/models 0',
      ])
    })
  })

  it('gives up on a part after 3 attempts, in one line; run again, it would resume', async () => {
    await withUploadEdge(() => true, async (url, seen) => {
      expectOneLineError(await publish(filePath, { DEPINFER_URL: url }), 1, /^cannot reach the edge at http:\/\/127\.0\.0\.1:\d+ \(DEPINFER_URL\): .*; run the same command again to resume the upload$/)
      expect(seen).toEqual(['POST /api/models/uploads 0', 'PUT part 1 (dropped)', 'PUT part 1 (dropped)', 'PUT part 1 (dropped)'])
    })
  })
})
