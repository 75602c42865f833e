import { describe, expect, it } from 'vitest'
import {
  addressOf,
  attestationToWire,
  inputCommitment,
  outputHash,
  preparePublicKey,
  publicKeyOf,
  signAttestation,
  type Attestation,
  type Hex,
  type RawTensor,
} from '@depinfer/shared'
import { AttestationRejectedError, CLOCK_SKEW_MS, verifyResultAttestation, type ExpectedAttestation } from './verify.js'

const deviceKey = new Uint8Array(32).fill(3)
const otherKey = new Uint8Array(32).fill(4)
const device = preparePublicKey(publicKeyOf(deviceKey), { windowSize: 4 })
const salt = new Uint8Array(32).fill(9)
const inputs: RawTensor[] = [{ name: 'x', datatype: 'UINT8', shape: [2], data: Uint8Array.of(1, 2) }]
const outputs: RawTensor[] = [{ name: 'y', datatype: 'UINT8', shape: [1], data: Uint8Array.of(7) }]
const expected: ExpectedAttestation = {
  jobId: `0x${'01'.repeat(32)}`,
  modelHash: `0x${'02'.repeat(32)}`,
  inputHash: inputCommitment(salt, inputs),
  price: 5n,
  domain: { chainId: 31337n, verifyingContract: `0x${'aa'.repeat(20)}` },
  completedAt: { notBeforeMs: 1_700_000_000_000 - CLOCK_SKEW_MS, notAfterMs: 1_700_000_001_000 + CLOCK_SKEW_MS },
}
const honest: Attestation = {
  jobId: expected.jobId,
  modelHash: expected.modelHash,
  inputHash: expected.inputHash,
  outputHash: outputHash(outputs),
  device: addressOf(publicKeyOf(deviceKey)),
  price: 5n,
  completedAt: 1_700_000_000_000n,
}
const wire = (a: Attestation, key = deviceKey) => attestationToWire(a, signAttestation(key, expected.domain, a))

describe('verifyResultAttestation', () => {
  it('accepts the device’s own attestation of exactly this job and these outputs', () => {
    expect(verifyResultAttestation(wire(honest), outputs, expected, device).attestation).toEqual(honest)
  })

  it.each<[string, () => unknown, RawTensor[], RegExp]>([
    ['no attestation', () => undefined, outputs, /no attestation/],
    ['a malformed one', () => ({ ...wire(honest), signature: '0x12' }), outputs, /malformed/],
    ['another job', () => wire({ ...honest, jobId: `0x${'0f'.repeat(32)}` }), outputs, /jobId/],
    ['another model file', () => wire({ ...honest, modelHash: `0x${'0e'.repeat(32)}` }), outputs, /modelHash/],
    ['other inputs', () => wire({ ...honest, inputHash: inputCommitment(new Uint8Array(32), inputs) }), outputs, /inputHash/],
    ['another price', () => wire({ ...honest, price: 6n }), outputs, /price/],
    ['another device', () => wire({ ...honest, device: addressOf(publicKeyOf(otherKey)) }, otherKey), outputs, /names device/],
    ['a signature by another key', () => wire(honest, otherKey), outputs, /signature/],
    ['outputs changed after signing', () => wire(honest), [{ ...outputs[0]!, data: Uint8Array.of(8) }], /outputHash/],
    ['a completion time before the job was sent', () => wire({ ...honest, completedAt: 0n }), outputs, /completedAt 0 is .* before the job was sent/],
    ['a completion time in the future', () => wire({ ...honest, completedAt: 2n ** 64n - 1n }), outputs, /in the future/],
    ['a completion time just past the skew allowed', () => wire({ ...honest, completedAt: BigInt(expected.completedAt.notAfterMs + 1) }), outputs, /clock/],
  ])('refuses %s', (_case, make, returned, reason) => {
    expect(() => verifyResultAttestation(make(), returned, expected, device)).toThrow(AttestationRejectedError)
    expect(() => verifyResultAttestation(make(), returned, expected, device)).toThrow(reason)
  })

  it('accepts a completion time anywhere within the clock skew allowed', () => {
    for (const completedAt of [expected.completedAt.notBeforeMs, expected.completedAt.notAfterMs]) {
      const a = { ...honest, completedAt: BigInt(completedAt) }
      expect(verifyResultAttestation(wire(a), outputs, expected, device).attestation.completedAt).toBe(BigInt(completedAt))
    }
  })

  it('refuses a signature made for another chain or registry', () => {
    const a = honest
    const elsewhere = attestationToWire(a, signAttestation(deviceKey, { ...expected.domain, chainId: 1n }, a))
    expect(() => verifyResultAttestation(elsewhere, outputs, expected, device)).toThrow(/signature/)
    const signature = signAttestation(deviceKey, { ...expected.domain, verifyingContract: `0x${'bb'.repeat(20)}` as Hex }, a)
    expect(() => verifyResultAttestation(attestationToWire(a, signature), outputs, expected, device)).toThrow(/signature/)
  })
})
