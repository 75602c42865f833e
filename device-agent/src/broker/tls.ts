/**
 * The agent's TLS material for the broker (`broker.tls`): a CA to trust for the broker's
 * certificate, and the device's own certificate and key for brokers that log devices in by
 * certificate (mutual TLS, e.g. Mosquitto's `require_certificate` + `use_identity_as_username`).
 *
 * The files are read at start, where a bad one stops the agent with the field to fix, and again
 * before every reconnect, so a certificate renewed on disk (short-lived device certificates are
 * common) is used without a restart.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { messageOf } from '@depinfer/shared'
import { ConfigError } from '../config.js'

export interface BrokerTlsFiles {
  caFile?: string | undefined
  certFile?: string | undefined
  keyFile?: string | undefined
}

/** What `tls.connect` takes (mqtt.js passes these through for mqtts:// and wss://). */
export interface BrokerTlsMaterial {
  /**
   * caFile's CAs, which replace Node's built-in ones for this connection: the broker is one known
   * host. (Adding Node's 145 roots back would cost ~60 ms of the agent's thread per reconnect.)
   */
  ca?: Buffer
  cert?: Buffer
  key?: Buffer
}

/** The client certificate's subject CN and end of validity, for the start-up checks. */
export interface ClientCertificateFacts {
  commonName: string | undefined
  validTo: Date
}

const field = (name: keyof BrokerTlsFiles) => `broker.tls.${name}`

function readPem(path: string, name: keyof BrokerTlsFiles): Buffer {
  let bytes: Buffer
  try {
    bytes = readFileSync(path)
  } catch (error) {
    throw new ConfigError(`cannot read ${field(name)} ${path}: ${messageOf(error)}`)
  }
  // DER files are common too; tls.connect takes PEM only, so say so rather than fail the handshake.
  if (!bytes.includes('-----BEGIN ')) throw new ConfigError(`${field(name)} ${path} is not a PEM file (no "-----BEGIN" line); convert DER with openssl x509 -inform der`)
  return bytes
}

/** Reads and checks the files; throws ConfigError naming the field at fault. */
export function readBrokerTls(files: BrokerTlsFiles): { material: BrokerTlsMaterial; client: ClientCertificateFacts | undefined } {
  const material: BrokerTlsMaterial = {}
  if (files.caFile) {
    const ca = readPem(files.caFile, 'caFile')
    try {
      new X509Certificate(ca)
    } catch (error) {
      throw new ConfigError(`${field('caFile')} ${files.caFile} holds no certificate: ${messageOf(error)}`)
    }
    material.ca = ca
  }
  if (!files.certFile || !files.keyFile) return { material, client: undefined }
  material.cert = readPem(files.certFile, 'certFile')
  material.key = readPem(files.keyFile, 'keyFile')
  let certificate: X509Certificate
  try {
    certificate = new X509Certificate(material.cert)
  } catch (error) {
    throw new ConfigError(`${field('certFile')} ${files.certFile} holds no certificate: ${messageOf(error)}`)
  }
  let key
  try {
    key = createPrivateKey(material.key)
  } catch (error) {
    throw new ConfigError(`${field('keyFile')} ${files.keyFile} holds no usable private key (an encrypted key is not supported): ${messageOf(error)}`)
  }
  // Otherwise the handshake fails with an opaque "key values mismatch" at every reconnect.
  if (!certificate.checkPrivateKey(key)) throw new ConfigError(`${field('keyFile')} ${files.keyFile} is not the key of ${field('certFile')} ${files.certFile}`)
  return { material, client: { commonName: commonName(certificate.subject), validTo: new Date(certificate.validTo) } }
}

/** The CN of an X509Certificate subject ("C=DE\nCN=pi-kitchen"). */
function commonName(subject: string): string | undefined {
  return subject
    .split('\n')
    .find((part) => part.startsWith('CN='))
    ?.slice('CN='.length)
}

/**
 * Reads and checks `broker.tls` (ConfigError for a bad file) and says what would keep its client
 * certificate from working as this device (see clientCertificateWarnings).
 */
export function checkBrokerTls(files: BrokerTlsFiles, deviceId: string): string[] {
  const { client } = readBrokerTls(files)
  return client ? clientCertificateWarnings(client, deviceId) : []
}

/**
 * Warnings about a client certificate that will not work as the device: expired, or naming
 * another device. Brokers that take the login from the certificate (Mosquitto's
 * `use_identity_as_username`, EMQX's `peer_cert_as_username = cn`) check the README's ACL
 * against its CN, so a CN other than the device id lets the device publish nothing: it would
 * connect and never be seen.
 */
export function clientCertificateWarnings(client: ClientCertificateFacts, deviceId: string, now = new Date()): string[] {
  const warnings: string[] = []
  if (client.validTo <= now) warnings.push(`the client certificate (broker.tls.certFile) expired at ${client.validTo.toISOString()}: the broker will refuse it`)
  if (client.commonName !== deviceId) {
    warnings.push(
      `the client certificate's CN is ${client.commonName === undefined ? 'missing' : JSON.stringify(client.commonName)}, not the device id ${JSON.stringify(deviceId)}: ` +
        'a broker that takes the login from the certificate lets this device publish nothing under the ACL',
    )
  }
  return warnings
}

/** Node's codes for a broker certificate this agent does not trust. */
const UNTRUSTED_BROKER = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
])

/** What to do about a TLS failure, as a hint after the error's own message ('' when none fits). */
export function tlsHint(error: Error): string {
  const code = (error as { code?: unknown }).code
  if (typeof code !== 'string') return ''
  if (UNTRUSTED_BROKER.has(code)) {
    return ' (the broker\'s certificate is not signed by a CA this agent trusts: set broker.tls.caFile or DEPINFER_BROKER_CA_FILE to its CA)'
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return ' (the broker\'s certificate does not name the host in broker.url: use the name it was issued for)'
  if (code === 'CERT_HAS_EXPIRED') return ' (the broker\'s certificate has expired)'
  if (code === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED' || code === 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE') {
    return ' (the broker wants a client certificate: set broker.tls.certFile and keyFile, or DEPINFER_BROKER_CERT_FILE and DEPINFER_BROKER_KEY_FILE)'
  }
  if (code === 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA' || code === 'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE' || code === 'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED') {
    return ' (the broker refuses this client certificate: is it issued by the CA the broker trusts for devices, and still valid?)'
  }
  return ''
}
