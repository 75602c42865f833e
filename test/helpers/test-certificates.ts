/**
 * Certificates for TLS tests, made with the openssl command (Node can read X.509 certificates but
 * not issue them): a CA, a broker certificate for 127.0.0.1 and localhost, and client
 * certificates issued by it. PEM files, readable by others (Mosquitto drops root to its own user).
 */
import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export const OPENSSL_BIN = '/usr/bin/openssl'
export const opensslInstalled = existsSync(OPENSSL_BIN)

export interface CertificatePair {
  cert: string
  key: string
}

const openssl = (args: string[], cwd: string) => execFileSync(OPENSSL_BIN, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })

/** A P-256 key and a certificate request for `subject`, signed by the CA in `dir` (see makeCa). */
function issue(dir: string, ca: CertificatePair, name: string, subject: string, extensions?: string): CertificatePair {
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) }
  const request = join(dir, `${name}.csr`)
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', pair.key, '-out', request, '-subj', subject], dir)
  const extensionArgs: string[] = []
  if (extensions) {
    const file = join(dir, `${name}.ext`)
    writeFileSync(file, extensions)
    extensionArgs.push('-extfile', file)
  }
  openssl(['x509', '-req', '-in', request, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', pair.cert, '-days', '2', ...extensionArgs], dir)
  for (const file of [pair.cert, pair.key]) chmodSync(file, 0o644)
  return pair
}

/** A self-signed CA in `dir`, named `name`. */
export function makeCa(dir: string, name: string): CertificatePair {
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) }
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', pair.key, '-out', pair.cert, '-days', '2', '-subj', `/CN=${name}`], dir)
  for (const file of [pair.cert, pair.key]) chmodSync(file, 0o644)
  return pair
}

/** A server certificate for 127.0.0.1 and localhost. */
export const issueServer = (dir: string, ca: CertificatePair, name: string) =>
  issue(dir, ca, name, '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1,DNS:localhost\n')

/** A client certificate with subject CN `commonName`. */
export const issueClient = (dir: string, ca: CertificatePair, name: string, commonName: string) => issue(dir, ca, name, `/CN=${commonName}`)
