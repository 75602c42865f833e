/** The broker connection: back-off that only a lasting connection resets, the takeover warning, refused credentials. */
import { createServer, type AddressInfo } from 'node:net'
import { Aedes } from 'aedes'
import { describe, expect, it } from 'vitest'
import { waitFor } from '../../../scripts/local/wait-for.js'
import { connectBroker, ReconnectPolicy } from './connect.js'

/** The top of each back-off range, so a delay shows the attempt it was computed for. */
const highest = () => 0.999999

describe('reconnect policy', () => {
  it('starts over at the minimum after a connection that lasted', () => {
    const policy = new ReconnectPolicy({ minMs: 100, maxMs: 1_000, random: highest })
    expect(policy.closed(0).delayMs).toBe(199) // a failed attempt
    expect(policy.closed(100).delayMs).toBe(399)
    policy.connected(1_000)
    // Up for 2 × maxMs: a broker that restarted, not one dropping us.
    expect(policy.closed(3_000)).toEqual({ delayMs: 199, takeoverSuspected: false, droppedEarly: 0 })
  })

  it('keeps backing off while connections are dropped right after being accepted, and suspects a takeover once', () => {
    const policy = new ReconnectPolicy({ minMs: 100, maxMs: 1_000, random: highest })
    const dropAfter = (now: number, upMs: number) => {
      policy.connected(now)
      return policy.closed(now + upMs)
    }
    expect(dropAfter(0, 50)).toEqual({ delayMs: 199, takeoverSuspected: false, droppedEarly: 1 })
    expect(dropAfter(1_000, 50)).toEqual({ delayMs: 399, takeoverSuspected: false, droppedEarly: 2 })
    expect(dropAfter(2_000, 50)).toEqual({ delayMs: 799, takeoverSuspected: true, droppedEarly: 3 })
    expect(dropAfter(3_000, 50)).toEqual({ delayMs: 999, takeoverSuspected: false, droppedEarly: 4 }) // said once
    expect(dropAfter(4_000, 1_999).delayMs).toBe(999) // capped; still short of 2 × maxMs
    // A connection that lasts ends the streak, and a new streak is reported again.
    expect(dropAfter(10_000, 2_000)).toEqual({ delayMs: 199, takeoverSuspected: false, droppedEarly: 0 })
    expect([dropAfter(20_000, 10), dropAfter(21_000, 10), dropAfter(22_000, 10)].map((r) => r.takeoverSuspected)).toEqual([false, false, true])
  })

  it('does not take an unreachable broker for a takeover', () => {
    const policy = new ReconnectPolicy({ minMs: 100, maxMs: 1_000, takeoverAfter: 2 })
    policy.connected(0)
    expect(policy.closed(10).droppedEarly).toBe(1)
    expect(policy.closed(500).droppedEarly).toBe(0) // refused: not accepted, so not dropped by another client
    policy.connected(1_000)
    expect(policy.closed(1_010)).toMatchObject({ takeoverSuspected: false, droppedEarly: 1 })
  })
})

describe('connectBroker against a broker that refuses the credentials', () => {
  it('says which settings to check, naming the user name it sent', async () => {
    // A real broker (aedes) whose authentication refuses everyone but user "ok".
    const aedes = await Aedes.createBroker({
      authenticate: (_client, username, _password, callback) => {
        if (username === 'ok') return callback(null, true)
        const error = Object.assign(new Error('bad user name or password'), { returnCode: 4 as const })
        callback(error, false)
      },
    })
    const server = createServer((socket) => aedes.handle(socket))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`
    const logs: string[] = []
    const client = connectBroker({
      url,
      clientId: 'device-refused',
      username: 'pi',
      password: 'wrong',
      keepaliveSec: 10,
      will: { topic: 'depinfer/v1/devices/refused/status', payload: '{}' },
      reconnect: { minMs: 60_000, maxMs: 60_000 },
      onConnect: () => {},
      onMessage: () => {},
      log: (message) => logs.push(message),
    })
    try {
      await waitFor('the refusal', async () => (logs.some((l) => l.startsWith('broker error')) ? true : undefined), 5_000, 20)
      expect(logs.find((l) => l.startsWith('broker error'))).toMatch(
        /^broker error: .*(Bad username or password|Not authorized).* \(the broker refuses this client's credentials, user name "pi": check broker\.username and broker\.password, or DEPINFER_BROKER_USERNAME and DEPINFER_BROKER_PASSWORD\)$/i,
      )
    } finally {
      client.end(true)
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
    }
  })
})

describe('connectBroker to an mqtts:// broker that cannot be reached', () => {
  it('logs each failed attempt once', async () => {
    // A port nothing listens on: every attempt fails at the TCP connect, under TLS.
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as AddressInfo).port
    await new Promise<void>((resolve) => server.close(() => resolve()))
    const logs: string[] = []
    const client = connectBroker({
      url: `mqtts://127.0.0.1:${port}`,
      clientId: 'device-unreachable',
      keepaliveSec: 10,
      will: { topic: 'depinfer/v1/devices/unreachable/status', payload: '{}' },
      reconnect: { minMs: 60_000, maxMs: 60_000 },
      onConnect: () => {},
      onMessage: () => {},
      log: (message) => logs.push(message),
    })
    try {
      await waitFor('the attempt to end', async () => (logs.some((l) => l.startsWith('broker connection closed')) ? true : undefined), 5_000, 20)
      // Errors after the close would belong to the same attempt too.
      await new Promise((resolve) => setTimeout(resolve, 100))
      expect(logs.filter((l) => l.startsWith('broker error')), logs.join('\n')).toEqual([`broker error: connect ECONNREFUSED 127.0.0.1:${port}`])
    } finally {
      client.end(true)
    }
  })
})
