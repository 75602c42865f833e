/**
 * Deterministic inputs for bench/attest.ts: device keys and realistic attestations (every field
 * non-zero, as real jobs produce), the same on every run so gas figures are comparable across
 * runs. Random-looking bytes come from an AES-CTR keystream (native, so 100,000 attestations
 * take milliseconds, not the seconds a JS hash per field would).
 */
import { createCipheriv, createHash } from 'node:crypto'
import {
  addressOf,
  type Attestation,
  type AttestationDomain,
  type Hex,
  publicKeyOf,
  signAttestation,
  signAttestations,
} from '../../shared/src/attestation.js'

/** `length` pseudo-random bytes determined by `label`. */
export function deterministicBytes(label: string, length: number): Buffer {
  const key = createHash('sha256').update(label).digest().subarray(0, 16)
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16))
  return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()])
}

export interface Device {
  privateKey: Uint8Array
  /** Compressed (33 bytes), as the edge has it registered. */
  publicKey: Uint8Array
  address: Hex
}

/** `count` device keys (private keys from the keystream: valid scalars with overwhelming odds). */
export function benchDevices(count: number): Device[] {
  const bytes = deterministicBytes('depinfer bench devices', 32 * count)
  return Array.from({ length: count }, (_, i) => {
    const privateKey = new Uint8Array(bytes.subarray(32 * i, 32 * i + 32))
    const publicKey = publicKeyOf(privateKey)
    return { privateKey, publicKey, address: addressOf(publicKey) }
  })
}

/** A handful of models, as a device fleet would serve: the model hash repeats across jobs. */
const MODEL_COUNT = 4

/**
 * `count` attestations spread round-robin over `devices` (attestation `i` is by device
 * `i % devices.length`): random job ids and input/output hashes, a price of 0.001–0.002 ETH and
 * completion times 37 ms apart. `label` picks the stream, so separate sets never collide.
 */
export function benchAttestations(label: string, count: number, devices: readonly Device[]): Attestation[] {
  const hex = deterministicBytes(`depinfer bench attestations ${label}`, 3 * 32 * count + 8 * count).toString('hex')
  const models = deterministicBytes('depinfer bench models', 32 * MODEL_COUNT).toString('hex')
  const word = (offset: number): Hex => `0x${hex.slice(2 * offset, 2 * offset + 64)}`
  const priceOffset = 3 * 32 * count
  const started = 1_764_000_000_000n
  return Array.from({ length: count }, (_, i) => {
    const model = i % MODEL_COUNT
    const base = 3 * 32 * i
    return {
      jobId: word(base),
      modelHash: `0x${models.slice(64 * model, 64 * model + 64)}`,
      inputHash: word(base + 32),
      outputHash: word(base + 64),
      device: devices[i % devices.length]!.address,
      // 0.001 to 0.002 ETH, in wei.
      price: 1_000_000_000_000_000n + (BigInt(`0x${hex.slice(2 * (priceOffset + 8 * i), 2 * (priceOffset + 8 * i) + 16)}`) % 1_000_000_000_000_000n),
      completedAt: started + BigInt(i) * 37n,
    }
  })
}

export interface SignedItem {
  attestation: Attestation
  signature: Hex
  /** Index into the devices array: the edge knows which device a result came from. */
  device: number
}

/** Each attestation signed by its device (device `i % devices.length`, as benchAttestations). */
export function signAll(attestations: readonly Attestation[], devices: readonly Device[], domain: AttestationDomain): SignedItem[] {
  return attestations.map((attestation, i) => {
    const device = i % devices.length
    return { attestation, signature: signAttestation(devices[device]!.privateKey, domain, attestation), device }
  })
}

/**
 * Each attestation signed by its device in batches of `batchSize` (as a device signs the jobs of
 * one onnxruntime batch: one signature over a Merkle root, each item carrying its proof).
 */
export function signAllInBatches(
  attestations: readonly Attestation[],
  devices: readonly Device[],
  domain: AttestationDomain,
  batchSize: number,
): SignedItem[] {
  const items: SignedItem[] = new Array(attestations.length)
  for (let device = 0; device < devices.length; device++) {
    const indices = attestations.map((_, i) => i).filter((i) => i % devices.length === device)
    for (let at = 0; at < indices.length; at += batchSize) {
      const batch = indices.slice(at, at + batchSize)
      const signatures = signAttestations(devices[device]!.privateKey, domain, batch.map((i) => attestations[i]!))
      batch.forEach((i, k) => (items[i] = { attestation: attestations[i]!, signature: signatures[k]!, device }))
    }
  }
  return items
}
