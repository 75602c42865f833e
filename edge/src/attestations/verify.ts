/**
 * The edge's check of a device's attestation before it accepts the device's answer (issue 4):
 * the attestation must be about this job, this model file, these inputs (the salted
 * commitment), these outputs and this price, and be signed by the key of the device the job was
 * sent to. Anything else is a rejected result: the caller never receives unattested output.
 */
import {
  attestationFromWire,
  outputHash,
  verifyAttestationSignature,
  type Attestation,
  type AttestationDomain,
  type Hex,
  type PreparedPublicKey,
  type RawTensor,
  type SignedAttestation,
  type VerifiedBatchRoots,
  messageOf,
} from '@depinfer/shared'

/** What the attestation must say, known to the edge independently of the device. */
export interface ExpectedAttestation {
  jobId: Hex
  modelHash: Hex
  inputHash: Hex
  price: bigint
  domain: AttestationDomain
  /**
   * When the job may have completed, Unix epoch milliseconds: from its dispatch to now, widened
   * by the clock skew allowed between a device and the edge (CLOCK_SKEW_MS).
   */
  completedAt: { notBeforeMs: number; notAfterMs: number }
}

/** How far a device's clock may be from the edge's: devices need NTP, not perfect clocks. */
export const CLOCK_SKEW_MS = 5 * 60_000

export class AttestationRejectedError extends Error {
  override name = 'AttestationRejectedError'
}

const FIELDS_FROM_EDGE = ['jobId', 'modelHash', 'inputHash', 'price'] as const satisfies readonly (keyof Attestation)[]

/**
 * Returns the parsed attestation when it is valid for this job, these outputs and this device
 * key; throws AttestationRejectedError saying why not. A batch signature's root is checked once
 * per `verifiedRoots` (the other jobs of the batch then cost their proof only).
 */
export function verifyResultAttestation(
  wire: unknown,
  outputs: readonly RawTensor[],
  expected: ExpectedAttestation,
  deviceKey: PreparedPublicKey,
  verifiedRoots?: VerifiedBatchRoots,
): SignedAttestation {
  if (wire === undefined) throw new AttestationRejectedError('the result carries no attestation')
  let signed: SignedAttestation
  try {
    signed = attestationFromWire(wire)
  } catch (error) {
    throw new AttestationRejectedError(`malformed attestation: ${messageOf(error).slice(0, 300)}`)
  }
  const { attestation } = signed
  for (const field of FIELDS_FROM_EDGE) {
    if (attestation[field] !== expected[field]) {
      throw new AttestationRejectedError(`attestation ${field} is ${attestation[field]}, expected ${expected[field]}`)
    }
  }
  const { notBeforeMs, notAfterMs } = expected.completedAt
  if (attestation.completedAt < BigInt(notBeforeMs) || attestation.completedAt > BigInt(notAfterMs)) {
    const offMs = Number(attestation.completedAt) - (attestation.completedAt < BigInt(notBeforeMs) ? notBeforeMs : notAfterMs)
    throw new AttestationRejectedError(
      `attestation completedAt ${attestation.completedAt} is ${Math.round(Math.abs(offMs) / 1000)} s ${offMs < 0 ? 'before the job was sent' : 'in the future'}, beyond the ${CLOCK_SKEW_MS / 60_000} min allowed for clock skew: is the device's clock set (NTP)?`,
    )
  }
  if (attestation.device !== deviceKey.address) {
    throw new AttestationRejectedError(`attestation names device ${attestation.device}, but the job went to ${deviceKey.address}`)
  }
  const actualOutputHash = outputHash(outputs)
  if (attestation.outputHash !== actualOutputHash) {
    throw new AttestationRejectedError(`attestation outputHash ${attestation.outputHash} does not match the outputs returned (${actualOutputHash})`)
  }
  if (!verifyAttestationSignature(deviceKey, expected.domain, attestation, signed.signature, verifiedRoots)) {
    throw new AttestationRejectedError(`signature is not the device ${deviceKey.address}'s`)
  }
  return signed
}
