/**
 * Device public keys decoded once, with precomputed tables (`preparePublicKey`), so verifying a
 * result costs no point decompression or key recovery. Keyed by device id and replaced when a
 * device advertises a different key.
 */
import { preparePublicKey, type PreparedPublicKey } from '@depinfer/shared'
import { hexToBytes } from 'viem'

export class DeviceKeys {
  readonly #keys = new Map<string, { publicKey: string; prepared: PreparedPublicKey }>()

  /**
   * The prepared key of the device's advertised public key (0x hex, compressed), or undefined
   * when it has none or it is not a point on the curve.
   */
  keyOf(deviceId: string, publicKey: string | undefined): PreparedPublicKey | undefined {
    if (publicKey === undefined) return undefined
    const known = this.#keys.get(deviceId)
    if (known?.publicKey === publicKey) return known.prepared
    try {
      const prepared = preparePublicKey(hexToBytes(publicKey as `0x${string}`))
      this.#keys.set(deviceId, { publicKey, prepared })
      return prepared
    } catch {
      return undefined
    }
  }

  forget(deviceId: string): void {
    this.#keys.delete(deviceId)
  }
}
