/**
 * Devices that log in to the broker with client certificates (mutual TLS), as README
 * "Production" configures Mosquitto: the README's own mosquitto.conf block (ports and paths
 * changed) with its ACL, a real Mosquitto, the edge and agents as separate processes.
 *
 * The edge reaches this broker on an extra listener in clear with its password: workerd trusts
 * public CAs only, and cannot be given this test's CA (in production the broker's certificate
 * comes from a public CA, README). The README's gateway listener is checked with an MQTT client.
 */
import { execFileSync } from 'node:child_process'
import { chmodSync, copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt from 'mqtt'
import * as ort from 'onnxruntime-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { deviceClientId, deviceStatusTopic } from '../../shared/src/index.js'
import { bundledModelPath } from '../../device-agent/src/models/bundled.js'
import type { AgentProcess } from '../../scripts/local/agent-process.js'
import { EXAMPLE_SHAPE, exampleInferRequest, exampleTextLine } from '../../scripts/local/example-input.js'
import { MOSQUITTO_BIN, freePort, spawnMosquitto, type RunningMosquitto } from '../../scripts/local/mosquitto.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { waitFor } from '../../scripts/local/wait-for.js'
import { issueClient, issueServer, makeCa, opensslInstalled, type CertificatePair } from '../helpers/test-certificates.js'
import { temporaryDirectory } from '../helpers/temporary-directory.js'
import { apiClient, outputByName, readyDevices, runDirect, waitForModelReady, type ApiClient } from './support.js'

const README = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8')
const GATEWAY_PASSWORD = 'gateway-password'

/** The first code block of README after `heading`. */
function readmeBlock(heading: string): string {
  const after = README.slice(README.indexOf(heading))
  return /```\n([\s\S]*?)```/.exec(after)![1]!
}

describe.skipIf((!existsSync(MOSQUITTO_BIN) || !opensslInstalled) && !process.env.CI)('devices with client certificates (Mosquitto, README config)', () => {
  let dir = ''
  let mosquitto: RunningMosquitto
  let network: LocalNetwork
  let api: ApiClient
  let devicePort = 0
  let deviceWssPort = 0
  let gatewayTlsPort = 0
  let caCert = ''
  const certFor = new Map<string, CertificatePair>()

  beforeAll(async () => {
    // Mosquitto started as root drops to its own user, which must reach and read the files:
    // the tests' temp root (0700) is opened for traversal only.
    chmodSync(tmpdir(), 0o711)
    dir = temporaryDirectory('broker-tls-')
    chmodSync(dir, 0o755)
    const ca = makeCa(dir, 'devices-ca')
    caCert = ca.cert
    const server = issueServer(dir, ca, 'broker')
    for (const device of ['tls-dev-1', 'tls-dev-2', 'tls-dev-3', 'wss-dev']) certFor.set(device, issueClient(dir, ca, device, device))
    const foreignCa = makeCa(dir, 'foreign-ca')
    certFor.set('foreign', issueClient(dir, foreignCa, 'foreign-tls-dev-2', 'tls-dev-2'))
    certFor.set('foreign-wss', issueClient(dir, foreignCa, 'foreign-wss-dev', 'wss-dev'))
    const aclFile = join(dir, 'acl')
    writeFileSync(aclFile, readmeBlock('Broker ACL (Mosquitto `acl_file`'))
    const passwordFile = join(dir, 'passwd')
    execFileSync(join(MOSQUITTO_BIN, '../../bin/mosquitto_passwd'), ['-c', '-b', passwordFile, 'gateway', GATEWAY_PASSWORD])
    for (const file of [aclFile, passwordFile]) chmodSync(file, 0o644)
    ;[devicePort, deviceWssPort, gatewayTlsPort] = [await freePort(), await freePort(), await freePort()]
    const gatewayPort = await freePort()
    const files: Record<string, string> = {
      '/etc/mosquitto/certs/broker.crt': server.cert,
      '/etc/mosquitto/certs/broker.key': server.key,
      '/etc/mosquitto/certs/devices-ca.crt': ca.cert,
      '/etc/mosquitto/acl': aclFile,
      '/etc/mosquitto/passwd': passwordFile,
    }
    const readmeConfig = readmeBlock('**Devices with client certificates**')
      .split('\n')
      .map((line) => line.replace(/^listener 8883$/, `listener ${devicePort} 127.0.0.1`).replace(/^listener 8884$/, `listener ${gatewayTlsPort} 127.0.0.1`))
      .map((line) => line.replace(/\/etc\/mosquitto\/\S+/, (path) => files[path] ?? path))
    expect(readmeConfig.filter((line) => line.startsWith('listener '))).toHaveLength(2)
    const edgeListener = [`listener ${gatewayPort} 127.0.0.1`, `password_file ${passwordFile}`, 'use_username_as_clientid true', `acl_file ${aclFile}`]
    // The devices' listener again, over WebSocket (wss://), for agents behind proxies that pass HTTPS only.
    const deviceWss = readmeConfig.slice(readmeConfig.indexOf(`listener ${devicePort} 127.0.0.1`), readmeConfig.indexOf(`listener ${gatewayTlsPort} 127.0.0.1`))
      .filter((line) => line.trim() !== '' && !line.startsWith('#'))
      .map((line) => (line.startsWith('listener ') ? `listener ${deviceWssPort} 127.0.0.1\nprotocol websockets` : line))
    mosquitto = await spawnMosquitto([...readmeConfig, ...edgeListener, ...deviceWss], [devicePort, deviceWssPort, gatewayTlsPort, gatewayPort])
    const broker = { tcpUrl: `mqtt://127.0.0.1:${gatewayPort}`, wsUrl: '', tcpPort: gatewayPort, wsPort: 0, close: async () => {} }
    network = await startLocalNetwork({
      broker,
      build: false,
      edgeVars: { BROKER_USERNAME: 'gateway', BROKER_PASSWORD: GATEWAY_PASSWORD },
      agents: [{ deviceId: 'tls-dev-1', models: 'ppocr-cls', env: tlsEnv('tls-dev-1') }],
    })
    api = apiClient(network.edge.url, network.apiKey)
    await waitForModelReady(api, 'ppocr-cls')
  })
  afterAll(async () => {
    await network?.close()
    await mosquitto?.close()
  })

  /** The agent's environment for the devices' listener, with the files of `pair` (none: no client certificate). */
  function tlsEnv(pair: string | undefined, ca = caCert): Record<string, string> {
    const cert = pair === undefined ? undefined : certFor.get(pair)!
    return {
      DEPINFER_BROKER_URL: `mqtts://127.0.0.1:${devicePort}`,
      DEPINFER_BROKER_CA_FILE: ca,
      ...(cert && { DEPINFER_BROKER_CERT_FILE: cert.cert, DEPINFER_BROKER_KEY_FILE: cert.key }),
    }
  }

  const waitForOutput = (agent: AgentProcess, pattern: RegExp) => waitFor(`agent ${agent.deviceId} to log ${pattern}`, async () => (pattern.test(agent.output()) ? true : undefined), 20_000)

  it('answers through a device logged in by its certificate, as onnxruntime computes directly', async () => {
    const response = await api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(21))
    expect(response.status).toBe(200)
    expect((response.body.parameters as Record<string, unknown>).attestation_device).toBeDefined()
    const direct = await runDirect(bundledModelPath('ppocr-cls'), {
      x: new ort.Tensor('float32', Float32Array.from(exampleTextLine(21)), [...EXAMPLE_SHAPE]),
    })
    expect(outputByName(response.body, 'softmax_0.tmp_0').data).toEqual(Array.from(direct['softmax_0.tmp_0']!.data as Float32Array))
  })

  /** An agent with a certificate of another CA, then the right one put in its files' place: it must connect without a restart. */
  async function rotatedCertificateServes(deviceId: string, model: string, url: string, foreign: string) {
    const certDir = temporaryDirectory('broker-tls-device-')
    const certFile = join(certDir, 'device.crt')
    const keyFile = join(certDir, 'device.key')
    copyFileSync(certFor.get(foreign)!.cert, certFile)
    copyFileSync(certFor.get(foreign)!.key, keyFile)
    // Short back-off, so the next attempt after the renewal comes soon.
    const configPath = join(certDir, 'agent.json')
    writeFileSync(configPath, JSON.stringify({ reconnect: { minMs: 100, maxMs: 1_000 } }))
    const agent = network.startAgent({
      deviceId,
      models: model,
      configPath,
      env: { ...tlsEnv(undefined), DEPINFER_BROKER_URL: url, DEPINFER_BROKER_CERT_FILE: certFile, DEPINFER_BROKER_KEY_FILE: keyFile },
    })
    await waitForOutput(agent, /the broker refuses this client certificate/)
    expect(await readyDevices(api, model)).toBe(0)
    expect(agent.child.exitCode).toBeNull()
    // Renewed on disk (as a certificate rotation does): taken at the next reconnect, no restart.
    copyFileSync(certFor.get(deviceId)!.cert, certFile)
    copyFileSync(certFor.get(deviceId)!.key, keyFile)
    await waitForModelReady(api, model)
    expect(agent.output()).toContain(`connected to ${url}`)
    return agent
  }

  it('keeps out a device with a certificate of another CA, saying so; one put in its place is used at the next attempt, over TLS and over wss', async () => {
    const overTls = await rotatedCertificateServes('tls-dev-2', 'ppocr-det', `mqtts://127.0.0.1:${devicePort}`, 'foreign')
    expect((await api.post('/v2/models/ppocr-det/infer', detRequest())).status).toBe(200)
    await overTls.stop()
    const overWss = await rotatedCertificateServes('wss-dev', 'ppocr-det', `wss://127.0.0.1:${deviceWssPort}/mqtt`, 'foreign-wss')
    expect((await api.post('/v2/models/ppocr-det/infer', detRequest())).status).toBe(200)
    await overWss.stop()
  })

  it('keeps out a device without a certificate, and says what to set; and one that does not trust the broker', async () => {
    const noCertificate = network.startAgent({ deviceId: 'tls-dev-3', models: 'ppocr-rec', env: tlsEnv(undefined) })
    await waitForOutput(noCertificate, /the broker wants a client certificate: set broker\.tls\.certFile and keyFile/)
    const untrusting = network.startAgent({ deviceId: 'tls-dev-3b', models: 'ppocr-rec', env: { ...tlsEnv('tls-dev-3'), DEPINFER_BROKER_CA_FILE: '' } })
    await waitForOutput(untrusting, /not signed by a CA this agent trusts: set broker\.tls\.caFile/)
    expect(await readyDevices(api, 'ppocr-rec')).toBe(0)
    await Promise.all([noCertificate.stop(), untrusting.stop()])
  })

  it('does not let a device take over another device\'s client id', async () => {
    // tls-dev-3's certificate, connecting with tls-dev-1's client id: the broker makes its client
    // id its certificate's CN (use_username_as_clientid), so tls-dev-1 stays connected.
    const cert = certFor.get('tls-dev-3')!
    const victim = network.agents.find((agent) => agent.deviceId === 'tls-dev-1')!
    const connections = () => victim.output().match(/connected to /g)?.length ?? 0
    const connectedBefore = connections()
    const intruder = await mqtt.connectAsync(`mqtts://127.0.0.1:${devicePort}`, {
      clientId: deviceClientId('tls-dev-1'),
      ca: readFileSync(caCert),
      cert: readFileSync(cert.cert),
      key: readFileSync(cert.key),
      reconnectPeriod: 0,
    })
    // Its publish as tls-dev-1 is dropped by the ACL: the edge still sees tls-dev-1 ready.
    await intruder.publishAsync(deviceStatusTopic('tls-dev-1'), JSON.stringify({ deviceId: 'tls-dev-1', online: false, models: [] }), { qos: 1, retain: true })
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    expect(await readyDevices(api, 'ppocr-cls')).toBe(1)
    expect(connections()).toBe(connectedBefore)
    expect((await api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(22))).status).toBe(200)
    await intruder.endAsync(true)
  })

  it('lets the gateway log in with its password on the README\'s TLS listener, and no one without it', async () => {
    const login = (password: string) =>
      mqtt.connectAsync(`mqtts://127.0.0.1:${gatewayTlsPort}`, { username: 'gateway', password, ca: readFileSync(caCert), reconnectPeriod: 0, connectTimeout: 5_000 }, false)
    const gateway = await login(GATEWAY_PASSWORD)
    expect(gateway.connected).toBe(true)
    await gateway.endAsync(true)
    await expect(login('wrong')).rejects.toThrow(/Not authorized|Bad username or password/)
  })
})

/** A ppocr-det request: a 1×3×32×32 image of zeros. */
function detRequest() {
  return { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, 32, 32], data: new Array(3 * 32 * 32).fill(0) }] }
}
