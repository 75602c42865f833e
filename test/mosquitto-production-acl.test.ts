/**
 * README "Production" gives the Mosquitto ACL file brokers run with. This runs a real Mosquitto
 * with that file (read from the README itself), password logins and `use_username_as_clientid`,
 * and checks what the protocol relies on: a device publishes only its own status and its own
 * results topic (so a result's topic names its sender), reads only its own jobs; the gateway
 * user reads and writes everything.
 */
import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt, { type MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MOSQUITTO_BIN, startMosquitto } from '../scripts/local/mosquitto.js'
import type { LocalBroker } from '../scripts/local/broker.js'
import { deviceJobsTopic, deviceStatusTopic, gatewayResultsFilter, gatewayResultsTopic } from '../shared/src/index.js'

const PASSWORD = 'test-password'

/** The ACL block of README "Production": the first code block after "Broker ACL". */
function readmeAcl(): string {
  const readme = readFileSync(join(import.meta.dirname, '../README.md'), 'utf8')
  const after = readme.slice(readme.indexOf('Broker ACL (Mosquitto `acl_file`'))
  return /```\n([\s\S]*?)```/.exec(after)![1]!
}

describe.skipIf(!existsSync(MOSQUITTO_BIN) && !process.env.CI)('Mosquitto with the README\'s production ACL', () => {
  let broker: LocalBroker
  let gateway: MqttClient
  let dir = ''
  const received: string[] = []

  beforeAll(async () => {
    // Mosquitto started as root drops to its own user, which must reach and read both files:
    // the tests' temp root (0700) is opened for traversal only.
    chmodSync(tmpdir(), 0o711)
    dir = mkdtempSync(join(tmpdir(), 'depinfer-mosquitto-acl-'))
    const passwordFile = join(dir, 'passwords')
    const aclFile = join(dir, 'acl')
    writeFileSync(aclFile, readmeAcl())
    for (const [i, user] of ['gateway', 'dev1', 'dev2'].entries()) {
      execFileSync(join(MOSQUITTO_BIN, '../../bin/mosquitto_passwd'), [...(i === 0 ? ['-c'] : []), '-b', passwordFile, user, PASSWORD])
    }
    chmodSync(dir, 0o755)
    for (const file of [passwordFile, aclFile]) chmodSync(file, 0o644)
    broker = await startMosquitto({ secured: { passwordFile, aclFile } })
    gateway = await login('gateway')
    gateway.on('message', (topic, payload) => received.push(`${topic} ${payload.toString()}`))
    await gateway.subscribeAsync([gatewayResultsFilter('gw'), deviceStatusTopic('+')], { qos: 1 })
  })
  afterAll(async () => {
    await gateway?.endAsync(true)
    await broker?.close()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  const login = (username: string) => mqtt.connectAsync(broker.tcpUrl, { username, password: PASSWORD, clientId: `ignored-${username}`, reconnectPeriod: 0 })
  /** What the gateway got once `marker` (sent after the publishes under test) arrived. */
  const receivedUntil = async (marker: string) => {
    await expect.poll(() => received.some((line) => line.endsWith(` ${marker}`))).toBe(true)
    return received
  }

  it('lets a device publish its own results and status, and nobody else\'s', async () => {
    const dev1 = await login('dev1')
    await dev1.publishAsync(gatewayResultsTopic('gw', 'dev1'), 'own-result', { qos: 1 })
    await dev1.publishAsync(gatewayResultsTopic('gw', 'dev2'), 'forged-result', { qos: 1 })
    await dev1.publishAsync(deviceStatusTopic('dev2'), 'forged-status', { qos: 1 })
    await dev1.publishAsync(deviceStatusTopic('dev1'), 'own-status', { qos: 1 })
    await dev1.publishAsync(gatewayResultsTopic('gw', 'dev1'), 'marker-1', { qos: 1 })
    const got = await receivedUntil('marker-1')
    expect(got).toContain(`${gatewayResultsTopic('gw', 'dev1')} own-result`)
    expect(got).toContain(`${deviceStatusTopic('dev1')} own-status`)
    expect(got.filter((line) => line.includes('forged'))).toEqual([])
    await dev1.endAsync(true)
  })

  it('delivers a device its own jobs only', async () => {
    const dev1 = await login('dev1')
    const jobs: string[] = []
    dev1.on('message', (topic, payload) => jobs.push(`${topic} ${payload.toString()}`))
    // Mosquitto grants the subscription but delivers nothing the ACL denies reading.
    await dev1.subscribeAsync([deviceJobsTopic('dev1'), deviceJobsTopic('dev2')], { qos: 1 })
    await gateway.publishAsync(deviceJobsTopic('dev2'), 'job-for-dev2', { qos: 1 })
    await gateway.publishAsync(deviceJobsTopic('dev1'), 'job-for-dev1', { qos: 1 })
    await expect.poll(() => jobs.length).toBeGreaterThan(0)
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(jobs).toEqual([`${deviceJobsTopic('dev1')} job-for-dev1`])
    await dev1.endAsync(true)
  })

  it('refuses a login without the password', async () => {
    await expect(mqtt.connectAsync(broker.tcpUrl, { username: 'dev1', password: 'wrong', reconnectPeriod: 0 })).rejects.toThrow()
  })
})
