/**
 * Device public keys decoded once, with precomputed tables (`preparePublicKey`), so verifying a
 * result costs no point decompression or key recovery. Keyed by device id and replaced when a
 * device advertises a different key. A key counts only with the device's proof that it holds it
 * (shared/device-key-proof.ts): otherwise any device could advertise a staked device's public
 * key and be routed jobs on its stake.
 */
import { preparePublicKey, verifyDeviceKeyProof, type DeviceStatus, type PreparedPublicKey } from '@depinfer/shared'
import { hexToBytes } from 'viem'

type AdvertisedKey = Pick<DeviceStatus, 'deviceId' | 'publicKey' | 'keyProof'>

export class DeviceKeys {
  readonly #keys = new Map<string, { publicKey: string; keyProof: string; prepared: PreparedPublicKey | undefined }>()

  /**
   * The prepared key of the device's advertised public key (0x hex, compressed), or undefined
   * when it has none, it is not a point on the curve, or the device does not prove it holds it.
   */
  keyOf({ deviceId, publicKey, keyProof }: AdvertisedKey): PreparedPublicKey | undefined {
    if (publicKey === undefined || keyProof === undefined) return undefined
    const known = this.#keys.get(deviceId)
    if (known?.publicKey === publicKey && known.keyProof === keyProof) return known.prepared
    let prepared: PreparedPublicKey | undefined
    try {
      const bytes = hexToBytes(publicKey as `0x${string}`)
      prepared = verifyDeviceKeyProof(bytes, deviceId, keyProof) ? preparePublicKey(bytes) : undefined
    } catch {
      prepared = undefined
    }
    // Refusals are remembered too: the proof is checked once per status, not per job.
    this.#keys.set(deviceId, { publicKey, keyProof, prepared })
    return prepared
  }

  forget(deviceId: string): void {
    this.#keys.delete(deviceId)
  }
}
