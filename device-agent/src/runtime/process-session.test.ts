/**
 * Sessions in a child process of their own (ort.runIn 'child-process', and what 'auto' gives a
 * model published on the edge), against the real onnxruntime-node: they answer what onnxruntime
 * answers, and a run past its deadline or over the memory limit ends with its process, without
 * taking the model down.
 */
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as ort from 'onnxruntime-node'
import { bytesOf, type RawTensor } from '@depinfer/shared'
import { afterEach, describe, expect, it } from 'vitest'
import { buildModel, memoryHungryInputs, memoryHungryModel, rawData, slowModel, slowModelInputs, slowOnLargeInputs, slowOnLargeInputsModel } from '../../../test/helpers/onnx-model.js'
import { temporaryDirectory } from '../../../test/helpers/temporary-directory.js'
import { AgentConfigSchema } from '../config.js'
import { bundledModelPath } from '../models/bundled.js'
import { DeadlineExceededError } from './batcher.js'
import { OrtRuntime } from './execution.js'
import { loadModel, type LoadedModel } from './loaded-model.js'
import { ModelProcessError, ProcessSession, type ProcessSessionOptions } from './process-session.js'
import { InvalidJobInputError } from './run-job.js'
import { REPO_ROOT } from '../../../scripts/local/paths.js'

const MEMORY_LIMIT_MB = 384

const ortSettings = (runIn: 'auto' | 'child-process', processIdleSec = 600) =>
  AgentConfigSchema.parse({
    deviceId: 'd',
    broker: { url: 'mqtt://x' },
    models: [{ bundled: 'ppocr-cls' }],
    keyPath: '/k',
    ort: { runIn, executionProviders: ['cpu'], processMemoryLimitMb: MEMORY_LIMIT_MB, processIdleSec },
  }).ort

const loaded: LoadedModel[] = []
const opened: ProcessSession[] = []
afterEach(async () => {
  await Promise.all([...loaded.splice(0).map((model) => model.session?.release()), ...opened.splice(0).map((session) => session.release())])
})

interface LoadOptions {
  /** Where the runtime's and the model's log lines go. */
  log?: string[]
  /** Loaded as a model published on the edge ('auto' then opens it in a process), else with runIn 'child-process'. */
  fromEdge?: boolean
  processIdleSec?: number
  probeRunMs?: number
}

async function load(path: string, { log = [], fromEdge = false, processIdleSec, probeRunMs }: LoadOptions = {}): Promise<LoadedModel> {
  const runtime = new OrtRuntime(ortSettings(fromEdge ? 'auto' : 'child-process', processIdleSec), (line) => log.push(line))
  const remote = fromEdge ? { url: 'http://edge.invalid/m', sha256: createHash('sha256').update(readFileSync(path)).digest('hex'), fromEdge: true } : undefined
  const model: LoadedModel = { name: 'm', version: '1', path, state: 'loading', maxBatch: 1, ...(remote && { remote }) }
  loaded.push(model)
  await loadModel(model, { runtime, maxBatch: 8, log: (line) => log.push(line), probeRunMs })
  return model
}

/** A process session opened straight from the model's bytes, as execution.ts opens one; `reread` gives the same bytes unless the test says otherwise. */
async function openSession(bytes: Uint8Array, options: Partial<ProcessSessionOptions> = {}): Promise<ProcessSession> {
  const session = await ProcessSession.open(bytes, {}, { label: 'model m', memoryLimitBytes: MEMORY_LIMIT_MB * 2 ** 20, idleCloseMs: 0, reread: async () => bytes, lost: () => {}, log: () => {}, ...options })
  opened.push(session)
  return session
}

function modelFile(bytes: Uint8Array): string {
  const path = join(temporaryDirectory('process-session-'), 'model.onnx')
  writeFileSync(path, bytes)
  return path
}

/** Whether a process with this pid is alive (signal 0 checks without sending). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** This process's children that host a model's session, alive (Linux: read from /proc). */
function sessionHosts(): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .flatMap((name) => {
      try {
        // The fields after the command's closing parenthesis: state, ppid, …
        const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
        const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
        const host = Number(ppid) === process.pid && state !== 'Z' && readFileSync(`/proc/${name}/cmdline`, 'utf8').includes('session-host-entry')
        return host ? [Number(name)] : []
      } catch {
        return [] // it ended while read
      }
    })
}

/**
 * The processes hosting a model's session that start while `run` is pending (but `known`), in
 * the order they start; the first `kills` of them are killed (SIGKILL) as soon as seen, as the
 * kernel's OOM killer would end them. Polled every 10 ms, against the hundreds of ms a process
 * takes to start Node, load onnxruntime and open the model: each is seen, and those killed are
 * killed before their model opens (one killed later would fail its run, and the test with it).
 */
async function hostsDuring(run: Promise<unknown>, known: readonly number[], kills = 0): Promise<number[]> {
  let settled = false
  run.then(
    () => (settled = true),
    () => (settled = true),
  )
  const seen: number[] = []
  while (!settled) {
    for (const pid of sessionHosts()) {
      if (known.includes(pid) || seen.includes(pid)) continue
      seen.push(pid)
      if (seen.length <= kills) process.kill(pid, 'SIGKILL')
    }
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return seen
}

async function ortDirect(path: string, inputs: readonly RawTensor[]): Promise<Record<string, ort.Tensor>> {
  const session = await ort.InferenceSession.create(path)
  try {
    const feeds = Object.fromEntries(inputs.map((tensor) => [tensor.name, new ort.Tensor(tensor.datatype === 'INT64' ? 'int64' : 'float32', tensor.datatype === 'INT64' ? new BigInt64Array(tensor.data.slice().buffer) : new Float32Array(tensor.data.slice().buffer), [...tensor.shape])]))
    return await session.run(feeds)
  } finally {
    await session.release()
  }
}

const bytesOfOutput = (tensor: ort.Tensor) => Buffer.from(bytesOf(tensor.data as Float32Array))

describe('sessions in a child process', () => {
  it('answer exactly what onnxruntime answers, batch as on the agent, and refuse bad inputs naming the field', async () => {
    const path = bundledModelPath('ppocr-cls')
    const model = await load(path)
    expect(model.state).toBe('ready')
    expect(model.session!.thread).toBe('child-process')
    // The load-time batching probe ran in the process too.
    expect(model.maxBatch).toBe(8)
    const x = Float32Array.from({ length: 2 * 3 * 48 * 192 }, (_, i) => Math.sin(i * 0.37) * 0.8)
    const input: RawTensor = { name: 'x', datatype: 'FP32', shape: [2, 3, 48, 192], data: bytesOf(x) }
    const [output] = await model.session!.run([input], [])
    const expected = Object.values(await ortDirect(path, [input]))[0]!
    expect(output!.shape).toEqual(expected.dims)
    expect(Buffer.from(output!.data).equals(bytesOfOutput(expected))).toBe(true)
    const refused = await model.session!.run([{ ...input, shape: [2, 3, 48, 192, 1] }], []).catch((error: unknown) => error)
    expect(refused).toBeInstanceOf(InvalidJobInputError)
    expect((refused as InvalidJobInputError).field).toMatch(/^inputs/)
  })

  it('passes large inputs and outputs through its scratch file byte for byte, leaving no file behind', async () => {
    const path = modelFile(slowModel())
    const model = await load(path)
    // 4,096 rows of 64 floats: 1 MB in, 1 MB out, each past the size that goes inline.
    const x = Float32Array.from({ length: 4096 * 64 }, (_, i) => Math.sin(i * 0.01))
    const inputs: RawTensor[] = [
      { name: 'x', datatype: 'FP32', shape: [4096, 64], data: bytesOf(x) },
      { name: 'iterations', datatype: 'INT64', shape: [], data: bytesOf(BigInt64Array.of(3n)) },
    ]
    const expected = bytesOfOutput((await ortDirect(path, inputs)).y!)
    for (let i = 0; i < 3; i++) {
      const [y] = await model.session!.run(inputs, [])
      expect(y!.shape).toEqual([4096, 64])
      expect(Buffer.from(y!.data).equals(expected)).toBe(true)
    }
    // Unlinked as soon as the process held it: nothing to clean up however either process ends.
    const left = existsSync('/dev/shm') ? readdirSync('/dev/shm').filter((name) => name.startsWith('depinfer-session-')) : []
    expect(left).toEqual([])
  })

  it('is where "auto" opens a model published on the edge', async () => {
    const model = await load(bundledModelPath('ppocr-cls'), { fromEdge: true })
    expect(model.error).toBeUndefined()
    expect(model.session!.thread).toBe('child-process')
  })

  it('stops a run still going at its deadline, with its process, and opens the model again for the next run', async () => {
    const path = modelFile(slowModel())
    const log: string[] = []
    const model = await load(path, { log })
    const session = model.session as ProcessSession
    const firstPid = session.pid!
    // ~1 µs per iteration here: a run of 10^9 iterations would take many minutes.
    const started = performance.now()
    const stopped = await session.run(slowModelInputs(1e9), [], { deadlineAt: performance.now() + 300 }).catch((error: unknown) => error)
    const tookMs = performance.now() - started
    expect(stopped).toBeInstanceOf(DeadlineExceededError)
    expect(String(stopped)).toMatch(/still going at the job's deadline/)
    expect(tookMs).toBeGreaterThanOrEqual(300)
    expect(tookMs).toBeLessThan(5_000)
    expect(alive(firstPid)).toBe(false)
    expect(log.join('\n')).toMatch(/a new process opens it for the next run/)

    // The next run answers, in a new process, what onnxruntime answers.
    const inputs = slowModelInputs(50)
    const [output] = await session.run(inputs, [], { deadlineAt: performance.now() + 30_000 })
    expect(session.pid).not.toBe(firstPid)
    expect(Buffer.from(output!.data).equals(bytesOfOutput((await ortDirect(path, inputs)).y!))).toBe(true)
    expect(model.state).toBe('ready')
  })

  it('fails a job whose deadline comes while the model opens again, at its deadline, and goes on opening it for the next job', async () => {
    const bytes = slowModel()
    const log: string[] = []
    let rereads = 0
    let letOpen = () => {}
    const held = new Promise<void>((resolve) => (letOpen = resolve))
    // The opening again held at its first step (reading the model's file again) until the test
    // lets it go: an opening that outlasts the job's deadline however fast or loaded the machine.
    const reread = async () => {
      rereads++
      await held
      return bytes
    }
    const session = await openSession(bytes, { log: (line) => log.push(line), reread })
    const inputs = slowModelInputs(10)
    const [expected] = await session.run(inputs, [])
    process.kill(session.pid!, 'SIGKILL')
    await expect.poll(() => log.join('\n')).toMatch(/ended unasked/)
    try {
      const started = performance.now()
      const late = session.run(inputs, [], { deadlineAt: started + 200 })
      // Queued behind it, with a deadline far off: it waits for the same opening.
      const next = session.run(inputs, [], { deadlineAt: started + 60_000 })
      const failed = await Promise.race([late.catch((error: unknown) => error), new Promise((resolve) => setTimeout(() => resolve('still waiting for the opening'), 10_000))])
      expect(failed).toBeInstanceOf(DeadlineExceededError)
      expect(String(failed)).toMatch(/the model was still opening again \(after its process was stopped\) at the job's deadline/)
      expect(performance.now() - started).toBeGreaterThanOrEqual(199)
      expect(session.pid).toBeUndefined()

      letOpen()
      const [answer] = await next
      expect(Buffer.from(answer!.data).equals(Buffer.from(expected!.data))).toBe(true)
      // One opening served both: the late job's deadline did not end it, nor did the next job start another.
      expect(rereads).toBe(1)
    } finally {
      letOpen()
    }
  })

  it('gives up the batching probe of a model whose probe run never ends at the probe\'s limit, and serves the model unbatched', async () => {
    const path = modelFile(slowOnLargeInputsModel())
    const log: string[] = []
    const started = performance.now()
    // The probe's runs take max(x) × 10^9 iterations: hours on its inputs. 300 ms each rather than 30 s.
    const model = await load(path, { log, probeRunMs: 300 })
    expect(performance.now() - started).toBeLessThan(20_000)
    expect(model.state).toBe('ready')
    expect(model.maxBatch).toBe(1)
    expect(log.join('\n')).toMatch(/model m v1 runs unbatched: it could not be checked on probe inputs \(the run was still going at the job's deadline; its model's process was stopped\)/)

    const inputs = slowOnLargeInputs()
    const [output] = await model.session!.run(inputs, [], { deadlineAt: performance.now() + 30_000 })
    expect(Buffer.from(output!.data).equals(bytesOfOutput((await ortDirect(path, inputs)).y!))).toBe(true)
  })

  it('stops a run whose process takes more memory than the limit, saying so, and serves the next run', async () => {
    const path = modelFile(memoryHungryModel())
    const model = await load(path)
    const session = model.session as ProcessSession
    const small = memoryHungryInputs([4, 1024, 1024]) // 16 MB
    const expected = bytesOfOutput((await ortDirect(path, small)).sum!)
    expect(Buffer.from((await session.run(small, []))[0]!.data).equals(expected)).toBe(true)

    const firstPid = session.pid!
    const refused = await session.run(memoryHungryInputs([512, 1024, 1024]), []).catch((error: unknown) => error) // 2 GiB
    expect(refused).toBeInstanceOf(ModelProcessError)
    expect(String(refused)).toMatch(new RegExp(`more than ${MEMORY_LIMIT_MB} MB of memory`))
    expect(alive(firstPid)).toBe(false)

    expect(Buffer.from((await session.run(small, []))[0]!.data).equals(expected)).toBe(true)
    expect(session.pid).not.toBe(firstPid)
  })

  it('refuses outputs past the run\'s limit, naming outputs, before copying them out of its process', async () => {
    // ones = ConstantOfShape(shape): the output's size is the caller's to choose.
    const path = modelFile(
      buildModel({
        inputs: [{ name: 'shape', datatype: 'INT64', shape: [3] }],
        outputs: [{ name: 'ones', datatype: 'FP32', shape: ['a', 'b', 'c'] }],
        nodes: [{ opType: 'ConstantOfShape', inputs: ['shape'], outputs: ['ones'], attributes: { value: { tensor: { name: 'one', datatype: 'FP32', dims: [1], data: rawData(Float32Array.of(1)) } } } }],
      }),
    )
    const session = (await load(path)).session!
    const within = await session.run(memoryHungryInputs([1, 256, 1024]), [], { maxOutputBytes: 2 ** 20 }) // 1 MB: at the limit
    expect(within[0]!.data.byteLength).toBe(2 ** 20)
    expect(new Float32Array(within[0]!.data.slice().buffer).every((value) => value === 1)).toBe(true)
    const refused = await session.run(memoryHungryInputs([16, 1024, 1024]), [], { maxOutputBytes: 2 ** 20 }).catch((error: unknown) => error) // 64 MB
    expect(refused).toBeInstanceOf(InvalidJobInputError)
    expect((refused as InvalidJobInputError).field).toBe('outputs')
    // Refused in the process (its words), not after the copy.
    expect(String(refused)).toMatch(/the outputs are 67108864 bytes, more than the 1048576 the run's results may carry: ask for fewer/)
  })

  it('opens a new process after one ends unasked, and fails the model when its file no longer matches', async () => {
    const path = modelFile(slowModel())
    const log: string[] = []
    const model = await load(path, { log })
    const session = model.session as ProcessSession
    const inputs = slowModelInputs(10)
    const [first] = await session.run(inputs, [])
    // As the kernel's OOM killer would end it.
    process.kill(session.pid!, 'SIGKILL')
    await expect.poll(() => log.join('\n')).toMatch(/model's process ended unasked \(signal SIGKILL\)/)
    const [second] = await session.run(inputs, [])
    expect(Buffer.from(second!.data).equals(Buffer.from(first!.data))).toBe(true)

    process.kill(session.pid!, 'SIGKILL')
    await expect.poll(() => log.filter((line) => /ended unasked/.test(line)).length).toBe(2)
    writeFileSync(path, memoryHungryModel())
    await expect(session.run(inputs, [])).rejects.toThrow(/could not be opened again/)
    expect(model.state).toBe('failed')
    expect(model.error).toMatch(/sha256/)
  })

  /** One run's answer from `session`, then its process killed (as the OOM killer would) and the stop logged. */
  async function runThenKill(session: ProcessSession, inputs: RawTensor[], log: readonly string[]): Promise<{ expected: RawTensor; firstPid: number }> {
    const [expected] = await session.run(inputs, [])
    const firstPid = session.pid!
    process.kill(firstPid, 'SIGKILL')
    await expect.poll(() => log.join('\n')).toMatch(/ended unasked/)
    return { expected: expected!, firstPid }
  }

  it('tries the opening again when its process is killed while the model opens, and answers the run that waited', async () => {
    const bytes = slowModel()
    const log: string[] = []
    const session = await openSession(bytes, { log: (line) => log.push(line), reopenBackoffMs: 50 })
    const inputs = slowModelInputs(10)
    const { expected, firstPid } = await runThenKill(session, inputs, log)

    const running = session.run(inputs, [])
    const [killed, opened, ...more] = await hostsDuring(running, [firstPid], 1)
    const [answer] = await running
    expect(Buffer.from(answer!.data).equals(Buffer.from(expected.data))).toBe(true)
    expect(log.filter((line) => line.includes('trying again'))).toEqual(['model m: its process ended (signal SIGKILL) before opening the session; trying again'])
    expect(alive(killed!)).toBe(false)
    expect([session.pid, more]).toEqual([opened, []])
  })

  it('fails the model after its process is killed at each of the three tries at opening it, answering the run with why', async () => {
    const bytes = slowModel()
    const log: string[] = []
    const lost: Error[] = []
    const session = await openSession(bytes, { log: (line) => log.push(line), lost: (reason) => lost.push(reason), reopenBackoffMs: 50 })
    const inputs = slowModelInputs(10)
    const { firstPid } = await runThenKill(session, inputs, log)

    const running = session.run(inputs, [])
    expect(await hostsDuring(running, [firstPid], 3)).toHaveLength(3)
    const failed = await running.catch((error: unknown) => error)
    expect(String(failed)).toMatch(/^Error: model m: could not be opened again after its process was stopped: model m: its process ended \(signal SIGKILL\) before opening the session$/)
    expect(log.filter((line) => line.includes('trying again'))).toHaveLength(2)
    expect(lost).toEqual([failed])
    // Refused from then on, without another process.
    await expect(session.run(inputs, [])).rejects.toBe(failed)
    expect(sessionHosts()).toEqual([])
  })

  it('opens no process for a release that comes while it waits to try the opening again', async () => {
    const bytes = slowModel()
    const log: string[] = []
    let releasing: Promise<void> | undefined
    const session = await openSession(bytes, {
      log: (line) => {
        log.push(line)
        // Released as the first try's end is told, in the wait before the next try.
        if (line.includes('trying again')) releasing ??= session.release()
      },
      reopenBackoffMs: 200,
    })
    const inputs = slowModelInputs(10)
    const { firstPid } = await runThenKill(session, inputs, log)

    const running = session.run(inputs, [])
    const hosts = await hostsDuring(running, [firstPid], 1)
    await expect(running).rejects.toThrow(/its session was released/)
    await releasing
    // The one killed while it opened, and no other.
    expect(hosts).toHaveLength(1)
    expect(sessionHosts()).toEqual([])
  })

  it('opens no process for a release that comes while it reads the model again', async () => {
    const bytes = slowModel()
    const log: string[] = []
    let reading = () => {}
    const readStarted = new Promise<void>((resolve) => (reading = resolve))
    let letRead = () => {}
    const held = new Promise<void>((resolve) => (letRead = resolve))
    // The opening again held at its first step (reading the model's file again, long for a
    // large model) until the release has come.
    const reread = async () => {
      reading()
      await held
      return bytes
    }
    const session = await openSession(bytes, { log: (line) => log.push(line), reread })
    const inputs = slowModelInputs(10)
    await session.run(inputs, [])
    const firstPid = session.pid!
    process.kill(firstPid, 'SIGKILL')
    await expect.poll(() => log.join('\n')).toMatch(/ended unasked/)

    const running = session.run(inputs, [])
    await readStarted
    const releasing = session.release()
    letRead()
    const hosts = await hostsDuring(running, [firstPid])
    await expect(running).rejects.toThrow(/its session was released/)
    await releasing
    // Nothing was opened for it: the release had come before any process was started.
    expect(hosts).toEqual([])
    expect(sessionHosts()).toEqual([])
  })

  it('closes its process after processIdleSec without a run, and opens the model again for the next one', async () => {
    const path = modelFile(slowModel())
    const log: string[] = []
    const model = await load(path, { log, processIdleSec: 1 })
    const session = model.session as ProcessSession
    const inputs = slowModelInputs(10)
    const [first] = await session.run(inputs, [])
    const firstPid = session.pid!
    // Runs a second apart keep it open…
    for (let i = 0; i < 3; i++) {
      await new Promise((resolve) => setTimeout(resolve, 500))
      await session.run(inputs, [])
      expect(session.pid).toBe(firstPid)
    }
    // … a second without one closes it.
    await expect.poll(() => alive(firstPid), { timeout: 5_000 }).toBe(false)
    expect(session.pid).toBeUndefined()
    expect(log.join('\n')).toMatch(/model m: the model's process was closed after 1 s without a run; a new process opens it for the next run/)
    const [again] = await session.run(inputs, [])
    expect(session.pid).not.toBe(firstPid)
    expect(Buffer.from(again!.data).equals(Buffer.from(first!.data))).toBe(true)
    expect(model.state).toBe('ready')
  })

  it('ends its process on release, and refuses runs after it', async () => {
    const model = await load(modelFile(slowModel()))
    const session = model.session as ProcessSession
    const pid = session.pid!
    await session.release()
    expect(alive(pid)).toBe(false)
    await expect(session.run(slowModelInputs(1), [])).rejects.toThrow(/released/)
  })
})

describe('the agent process with sessions in child processes', () => {
  const moduleFile = (source: string) => {
    const path = join(temporaryDirectory('process-lifetime-'), 'main.mts')
    writeFileSync(path, source)
    return path
  }
  const opening = (modelPath: string) => `
    import { readFileSync } from 'node:fs'
    import { ProcessSession } from ${JSON.stringify(join(REPO_ROOT, 'device-agent/src/runtime/process-session.ts'))}
    const bytes = readFileSync(${JSON.stringify(modelPath)})
    const session = await ProcessSession.open(bytes, {}, { label: 'm', memoryLimitBytes: 2 ** 30, idleCloseMs: 0, reread: async () => bytes, lost: () => console.log('lost'), log: console.log })
    console.log('opened', session.pid)`

  it('ends by itself with an idle session left open, and not before a pending run is answered', () => {
    const run = (source: string) => spawnSync(process.execPath, ['--import', 'tsx', moduleFile(source)], { cwd: REPO_ROOT, timeout: 30_000, encoding: 'utf8' })
    const idle = run(opening(bundledModelPath('ppocr-cls')))
    expect([idle.signal, idle.status, idle.stdout]).toMatchObject([null, 0, expect.stringMatching(/^opened \d+\n$/)])
    const pending = run(`${opening(bundledModelPath('ppocr-cls'))}
      const x = { name: 'x', datatype: 'FP32', shape: [1, 3, 48, 96], data: new Uint8Array(3 * 48 * 96 * 4) }
      session.run([x], []).then((outputs) => console.log('ran', outputs[0].shape.join('x')))`)
    expect([pending.signal, pending.status, pending.stdout]).toMatchObject([null, 0, expect.stringMatching(/^opened \d+\nran 1x2\n$/)])
  })

  it('has its processes end soon after the agent is killed, also in the middle of a run', async () => {
    const agent = spawn(process.execPath, ['--import', 'tsx', moduleFile(`${opening(modelFile(slowModel()))}
      const { slowModelInputs } = await import(${JSON.stringify(join(REPO_ROOT, 'test/helpers/onnx-model.ts'))})
      void session.run(slowModelInputs(1e9), [])
      setTimeout(() => console.log('running'), 500)`)], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
    let stdout = ''
    agent.stdout.on('data', (chunk: Buffer) => (stdout += chunk))
    await expect.poll(() => stdout, { timeout: 30_000 }).toMatch(/running/)
    const pid = Number(/opened (\d+)/.exec(stdout)![1])
    expect(alive(pid)).toBe(true)
    agent.kill('SIGKILL')
    await expect.poll(() => alive(pid), { timeout: 5_000 }).toBe(false)
  })
})
