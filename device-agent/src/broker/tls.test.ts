import { copyFileSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../config.js'
import { checkBrokerTls, clientCertificateWarnings, readBrokerTls } from './tls.js'
import { issueClient, makeCa, opensslInstalled, type CertificatePair } from '../../../test/helpers/test-certificates.js'
import { temporaryDirectory } from '../../../test/helpers/temporary-directory.js'

describe.skipIf(!opensslInstalled && !process.env.CI)('broker TLS files', () => {
  let dir = ''
  let ca: CertificatePair
  let device: CertificatePair
  let other: CertificatePair

  beforeAll(() => {
    dir = temporaryDirectory('broker-tls-')
    ca = makeCa(dir, 'ca')
    device = issueClient(dir, ca, 'pi-1', 'pi-1')
    other = issueClient(dir, ca, 'pi-2', 'pi-2')
  })

  it('reads the CA and the client pair as PEM, and the certificate\'s CN', () => {
    const { material, client } = readBrokerTls({ caFile: ca.cert, certFile: device.cert, keyFile: device.key })
    expect(material.ca?.equals(readFileSync(ca.cert))).toBe(true)
    expect(material.cert?.equals(readFileSync(device.cert))).toBe(true)
    expect(material.key?.equals(readFileSync(device.key))).toBe(true)
    expect(client?.commonName).toBe('pi-1')
    expect(client!.validTo.getTime()).toBeGreaterThan(Date.now())
    expect(checkBrokerTls({ certFile: device.cert, keyFile: device.key }, 'pi-1')).toEqual([])
  })

  it.each([
    ['a missing file', () => ({ caFile: join(dir, 'nope.crt') }), /broker\.tls\.caFile .*nope\.crt: ENOENT/],
    ['a file that is not PEM', () => ({ caFile: writeTo('der.crt', Buffer.from([0x30, 0x82, 0x01])) }), /broker\.tls\.caFile .*not a PEM file/],
    ['a PEM that holds no certificate', () => ({ caFile: device.key }), /broker\.tls\.caFile .*holds no certificate/],
    ['a key that is not the certificate\'s', () => ({ certFile: device.cert, keyFile: other.key }), /broker\.tls\.keyFile .*pi-2\.key is not the key of broker\.tls\.certFile/],
    ['a certificate where the key belongs', () => ({ certFile: device.cert, keyFile: device.cert }), /broker\.tls\.keyFile .*holds no usable private key/],
  ])('refuses %s, naming the field', (_what, files, message) => {
    expect(() => readBrokerTls(files())).toThrow(ConfigError)
    expect(() => readBrokerTls(files())).toThrow(message)
  })

  it('warns when the certificate names another device, or has expired', () => {
    const client = { commonName: 'pi-1', validTo: new Date('2026-01-01T00:00:00Z') }
    expect(clientCertificateWarnings(client, 'pi-1', new Date('2025-12-31T00:00:00Z'))).toEqual([])
    const warnings = clientCertificateWarnings(client, 'pi-9', new Date('2026-02-01T00:00:00Z'))
    expect(warnings).toHaveLength(2)
    expect(warnings[0]).toMatch(/expired at 2026-01-01/)
    expect(warnings[1]).toMatch(/CN is "pi-1", not the device id "pi-9"/)
    expect(checkBrokerTls({ certFile: other.cert, keyFile: other.key }, 'pi-1')).toEqual([expect.stringMatching(/CN is "pi-2"/)])
  })

  it('takes the files from the config file\'s directory, or from the environment', () => {
    const configDir = temporaryDirectory('agent-tls-config-')
    copyFileSync(ca.cert, join(configDir, 'ca.crt'))
    const path = join(configDir, 'agent.json')
    writeFileSync(path, JSON.stringify({ deviceId: 'pi-1', broker: { url: 'mqtts://broker:8883', tls: { caFile: 'ca.crt' } } }))
    expect(loadConfig(path, {}).broker.tls).toEqual({ caFile: join(configDir, 'ca.crt') })
    const fromEnv = loadConfig(path, { DEPINFER_BROKER_CERT_FILE: device.cert, DEPINFER_BROKER_KEY_FILE: device.key })
    expect(fromEnv.broker.tls).toEqual({ caFile: join(configDir, 'ca.crt'), certFile: device.cert, keyFile: device.key })
  })

  function writeTo(name: string, bytes: Buffer): string {
    const path = join(dir, name)
    writeFileSync(path, bytes)
    return path
  }
})

describe('broker TLS config', () => {
  it.each([
    ['TLS files for a broker in clear', { url: 'mqtt://broker:1883', tls: { caFile: '/ca.crt' } }, {}, /broker\.tls: needs a TLS broker\.url \(mqtts:\/\/ or wss:\/\/\), not mqtt:\/\/broker:1883/],
    ['a certificate without its key', { url: 'mqtts://broker:8883', tls: { certFile: '/c.crt' } }, {}, /broker\.tls\.keyFile: certFile needs its keyFile/],
    ['a key without its certificate (from the environment)', { url: 'wss://broker/mqtt' }, { DEPINFER_BROKER_KEY_FILE: '/k.key' }, /broker\.tls\.certFile.*keyFile needs its certFile/],
    ['an unknown key', { url: 'mqtts://broker:8883', tls: { caPath: '/ca.crt' } }, {}, /unknown key "caPath" at broker\.tls .*known keys: "caFile", "certFile", "keyFile"/],
  ])('refuses %s', (_what, broker, env, message) => {
    const path = join(temporaryDirectory('agent-tls-config-'), 'agent.json')
    writeFileSync(path, JSON.stringify({ deviceId: 'pi-1', broker }))
    expect(() => loadConfig(path, env)).toThrow(message)
  })
})
