/**
 * A device proves that it holds the key it advertises. Its status carries a signature, by that
 * key, of a message naming the device id: an EIP-191 personal message, so any Ethereum tool
 * checks it (viem's `verifyMessage`).
 *
 * Why: a public key is public (it is in every status), so without a proof a device could
 * advertise another device's key and be routed jobs on that device's stake, reading the users'
 * inputs and failing their jobs. The proof names the device id, so it cannot be replayed under
 * another id, and the broker's ACL keeps other devices off this id's topics.
 */
import { addressOf, recoverDigestSigner, signDigest, type Hex } from './attestation.js'
import { concatBytes } from './bytes.js'
import { keccak256 } from './keccak.js'

/** The message a device signs; its id is a topic level, so it needs no escaping. */
export const deviceKeyProofMessage = (deviceId: string) => `depinfer: device ${deviceId} signs with this key`

const encoder = new TextEncoder()

/** EIP-191 (version 0x45) hash of the message, what `personal_sign` signs. */
function personalMessageDigest(message: string): Uint8Array {
  const body = encoder.encode(message)
  return keccak256(concatBytes([encoder.encode(`\x19Ethereum Signed Message:\n${body.length}`), body]))
}

export function signDeviceKeyProof(privateKey: Uint8Array, deviceId: string): Hex {
  return signDigest(privateKey, personalMessageDigest(deviceKeyProofMessage(deviceId)))
}

/** True when `proof` is `publicKey`'s signature of the device id's message. */
export function verifyDeviceKeyProof(publicKey: Uint8Array, deviceId: string, proof: string): boolean {
  const signer = recoverDigestSigner(personalMessageDigest(deviceKeyProofMessage(deviceId)), proof as Hex)
  try {
    return signer !== undefined && signer === addressOf(publicKey)
  } catch {
    return false // not a point on the curve
  }
}
