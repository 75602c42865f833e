/**
 * The device's signing key (secp256k1): created once by `depinfer-agent init`, kept in a file
 * only its owner can read (mode 0600, like an SSH key), never logged. Its address is what the
 * device advertises and what every attestation it signs recovers to.
 */
import { randomBytes } from 'node:crypto'
import { chmodSync, mkdirSync, statSync, writeFileSync } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { addressOf, publicKeyOf, type Hex, messageOf } from '@depinfer/shared'

/** Order of the secp256k1 group (SEC 2 §2.4.1): a private key is an integer in [1, n − 1]. */
const SECP256K1_ORDER = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n

export class DeviceKeyError extends Error {
  override name = 'DeviceKeyError'
}

export interface DeviceKey {
  privateKey: Uint8Array
  publicKey: Uint8Array
  address: Hex
}

function toBigInt(bytes: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(bytes).toString('hex')}`)
}

function fromPrivateKey(privateKey: Uint8Array): DeviceKey {
  const publicKey = publicKeyOf(privateKey)
  return { privateKey, publicKey, address: addressOf(publicKey) }
}

/**
 * Creates a new key file; refuses to overwrite one (that would change the device's identity).
 * Synchronous: run once per device, and the local network provisions keys before spawning.
 */
export function initDeviceKey(path: string): DeviceKey {
  // "keys/" meant as a directory would otherwise become a key file named "keys".
  if (/[\\/]$/.test(path)) throw new DeviceKeyError(`keyPath ${path} ends with a slash: name the key file itself, e.g. ${join(path, 'device.key')}`)
  let privateKey: Uint8Array
  do privateKey = randomBytes(32)
  while (toBigInt(privateKey) === 0n || toBigInt(privateKey) >= SECP256K1_ORDER)
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
  try {
    // 'wx': fail if it exists; the mode applies at creation, so the key is never world-readable.
    writeFileSync(path, `${Buffer.from(privateKey).toString('hex')}\n`, { flag: 'wx', mode: 0o600 })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      if (statSync(path).isDirectory()) throw new DeviceKeyError(`keyPath ${path} is a directory: name the key file itself, e.g. ${join(path, 'device.key')}`)
      throw new DeviceKeyError(`a device key already exists at ${path}; remove it first to create a new identity`)
    }
    throw error
  }
  chmodSync(path, 0o600) // in case a umask widened it
  return fromPrivateKey(privateKey)
}

/** Reads the key file, refusing one that others can read. */
export async function loadDeviceKey(path: string): Promise<DeviceKey> {
  let text: string
  try {
    const found = await stat(path)
    if (found.isDirectory()) throw new DeviceKeyError(`keyPath ${path} is a directory: name the key file itself, e.g. ${join(path, 'device.key')}`)
    const { mode } = found
    if ((mode & 0o077) !== 0) {
      throw new DeviceKeyError(`device key ${path} is readable by others (mode ${(mode & 0o777).toString(8)}); run chmod 600 ${path}`)
    }
    text = await readFile(path, 'utf8')
  } catch (error) {
    if (error instanceof DeviceKeyError) throw error
    throw new DeviceKeyError(`cannot read device key ${path} (create one with \`depinfer-agent init\`): ${messageOf(error)}`)
  }
  const hex = text.trim().replace(/^0x/, '')
  const value = /^[0-9a-f]{64}$/i.test(hex) ? BigInt(`0x${hex}`) : 0n
  if (value === 0n || value >= SECP256K1_ORDER) throw new DeviceKeyError(`device key ${path} is not a secp256k1 private key`)
  return fromPrivateKey(Uint8Array.from(Buffer.from(hex, 'hex')))
}
