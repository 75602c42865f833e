/**
 * `npm start`'s agent supervisor: a device agent that dies (here SIGKILL, as an onnxruntime abort
 * would end it) is restarted and serves again; one that keeps dying at start is given up on,
 * saying so. Real agent processes on the embedded broker.
 */
import mqtt from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { deviceStatusTopic, gatewayClientId } from '../shared/src/index.js'
import { spawnAgent, type AgentProcess } from '../scripts/local/agent-process.js'
import { superviseAgent } from '../scripts/local/agent-supervisor.js'
import { startLocalBroker, type LocalBroker } from '../scripts/local/broker.js'
import { waitFor } from '../scripts/local/wait-for.js'

describe('the local agent supervisor', () => {
  let broker: LocalBroker
  let stopping = false
  const agents: AgentProcess[] = []
  const logs: string[] = []

  beforeAll(async () => {
    broker = await startLocalBroker({})
  })
  afterAll(async () => {
    stopping = true
    await Promise.all(agents.map((agent) => agent.stop()))
    await broker?.close()
  })

  /** The device's retained status `online` flags as they arrive, and whether it is online now. */
  async function watchStatus(deviceId: string) {
    const client = await mqtt.connectAsync(broker.tcpUrl, { clientId: gatewayClientId(`watch-${deviceId}`) })
    const seen: boolean[] = []
    client.on('message', (_topic, payload) => payload.length > 0 && seen.push((JSON.parse(payload.toString()) as { online: boolean }).online))
    await client.subscribeAsync(deviceStatusTopic(deviceId), { qos: 1 })
    return { seen, close: () => client.endAsync(true) }
  }

  it('restarts an agent that was killed, and the device comes back online', async () => {
    const status = await watchStatus('supervised')
    superviseAgent({
      start: () => {
        const agent = spawnAgent({ deviceId: 'supervised', brokerUrl: broker.tcpUrl, models: 'ppocr-cls' })
        agents.push(agent)
        return agent
      },
      stopping: () => stopping,
      log: (message) => logs.push(message),
      restartDelayMs: 100,
    })
    await waitFor('the agent online', async () => (status.seen.at(-1) === true ? true : undefined), 30_000)
    const firstPid = agents[0]!.child.pid
    await agents[0]!.kill()
    await waitFor('the restarted agent online', async () => (agents.length === 2 && status.seen.at(-1) === true && status.seen.includes(false) ? true : undefined), 30_000)
    expect(agents[1]!.child.pid).not.toBe(firstPid)
    expect(logs).toEqual(['the device agent supervised exited (signal SIGKILL); restarting it'])
    await status.close()
  })

  it('gives up on an agent that exits right after each start, and says why', async () => {
    let starts = 0
    const failing: string[] = []
    superviseAgent({
      start: () => {
        starts++
        // An invalid broker URL: the agent stops at once with a config error (exit code 1).
        const agent = spawnAgent({ deviceId: 'doomed', brokerUrl: 'http://not-a-broker', models: 'ppocr-cls' })
        agents.push(agent)
        return agent
      },
      stopping: () => stopping,
      log: (message) => failing.push(message),
      restartDelayMs: 50,
      maxQuickExits: 3,
    })
    await waitFor('the supervisor to give up', async () => (failing.some((line) => line.includes('not restarting it again')) ? true : undefined), 30_000)
    expect(starts).toBe(3)
    expect(failing).toEqual([
      'the device agent doomed exited (exit code 1); restarting it',
      'the device agent doomed exited (exit code 1); restarting it',
      expect.stringMatching(/^the device agent doomed exited \(exit code 1\), 3 times in a row within 60 s of its start: not restarting it again/),
    ])
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(starts).toBe(3)
  })
})
