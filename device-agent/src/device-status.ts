/** What the agent advertises about this device on `devices/{id}/status` (retained). */
import { arch, cpus, totalmem } from 'node:os'
import { PROTOCOL_VERSION, type DeviceStatus, type ModelDescriptor } from '@depinfer/shared'
import { describe, type LoadedModel } from './runtime/loaded-model.js'
import { AGENT_VERSION, ORT_VERSION } from './version.js'

export function deviceStatus(deviceId: string, models: readonly LoadedModel[], online: boolean): DeviceStatus {
  return {
    protocol: PROTOCOL_VERSION,
    deviceId,
    online,
    // Only models whose file was read and hashed; one that failed to load is not servable.
    models: models.map((model) => describe(model)).filter((m): m is ModelDescriptor => m !== undefined),
    hw: { arch: arch(), cpus: cpus().length, memMB: Math.round(totalmem() / 2 ** 20), accel: [] },
    agentVersion: AGENT_VERSION,
    runtime: { name: 'onnxruntime-node', version: ORT_VERSION, executionProviders: ['cpu'] },
  }
}
