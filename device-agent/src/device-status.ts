/** What the agent advertises about this device on `devices/{id}/status` (retained). */
import { arch, cpus, totalmem } from 'node:os'
import { PROTOCOL_VERSION, signDeviceKeyProof, type DeviceStatus, type Hex, type ModelDescriptor } from '@depinfer/shared'
import type { DeviceKey } from './keys/device-key.js'
import type { RuntimeStatus } from './runtime/execution.js'
import { describe, type LoadedModel } from './runtime/loaded-model.js'
import { AGENT_VERSION } from './version.js'

/** The signing identity a device advertises (see keys/device-key.ts). */
export interface DeviceIdentity {
  publicKey: Uint8Array
  address: Hex
  /** signDeviceKeyProof of the device id: that it holds the key, not just knows it. */
  keyProof: Hex
}

/** The identity `deviceId` advertises with `key`, its proof of holding the key included. */
export function identityOf(key: DeviceKey, deviceId: string): DeviceIdentity {
  return { publicKey: key.publicKey, address: key.address, keyProof: signDeviceKeyProof(key.privateKey, deviceId) }
}

export function deviceStatus(
  deviceId: string,
  models: readonly LoadedModel[],
  online: boolean,
  identity: DeviceIdentity | undefined,
  /** Execution providers and session options, from OrtRuntime.status(). */
  runtime: RuntimeStatus,
  /** Stopping: answering what it holds, taking nothing new (DeviceStatus.draining). */
  draining = false,
): DeviceStatus {
  return {
    protocol: PROTOCOL_VERSION,
    deviceId,
    online,
    ...(draining && online && { draining: true }),
    ...(identity && { publicKey: `0x${Buffer.from(identity.publicKey).toString('hex')}`, address: identity.address, keyProof: identity.keyProof }),
    // Models with a spec (see describe): loaded ones, and downloads the edge's listing declares,
    // advertised as loading or failed so the edge sees them coming (it routes to ready ones only).
    models: models.map((model) => describe(model)).filter((m): m is ModelDescriptor => m !== undefined),
    hw: { arch: arch(), cpus: cpus().length, memMB: Math.round(totalmem() / 2 ** 20), accel: [] },
    agentVersion: AGENT_VERSION,
    runtime,
  }
}
