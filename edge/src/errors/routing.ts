/** Errors of the network rather than the caller: transient ones carry Retry-After. */
import { DepinferError } from './base.js'

export class NoCapacityError extends DepinferError {
  constructor(detail: string, retryAfterSec = 2) {
    super(503, 'no-capacity', 'No device can serve this model now', detail, {
      field: 'model',
      retryAfterSec,
    })
  }
}

/** The gateway holds as many jobs' inputs as it may (MAX_INFLIGHT_BYTES): gateway/inflight-budget.ts. */
export class GatewayBusyError extends DepinferError {
  constructor(detail: string) {
    super(503, 'gateway-busy', 'Gateway busy', detail, { retryAfterSec: 1 })
  }
}

/** The caller's own jobs in flight hold its share of the gateway's budget: gateway/inflight-budget.ts. */
export class CallerBusyError extends DepinferError {
  constructor(detail: string) {
    super(429, 'too-many-jobs-in-flight', 'Too many jobs in flight for this account', detail, { retryAfterSec: 1 })
  }
}

/**
 * Every device that could run the job has a queue it would wait in past its deadline: refused at
 * once rather than answered 504 when the deadline ends (the Gateway's admission).
 */
export class DevicesBusyError extends DepinferError {
  constructor(detail: string, retryAfterSec: number) {
    super(503, 'devices-busy', 'Every device serving this model is busy', detail, { field: 'model', retryAfterSec })
  }
}

export class ModelNotReadyError extends DepinferError {
  constructor(detail: string, retryAfterSec = 5) {
    super(503, 'model-not-ready', 'Model is still loading', detail, { field: 'model', retryAfterSec })
  }
}

export class BrokerUnavailableError extends DepinferError {
  constructor(detail: string, cause?: unknown) {
    super(503, 'broker-unavailable', 'Message broker unreachable', detail, {
      retryAfterSec: 2,
      cause,
    })
  }
}

/** Every attempt timed out: the job was tried on the devices named in the detail. */
export class DeviceTimeoutError extends DepinferError {
  /** `retryAfterSec` null: asking again as it was asked will not help (a deadline shorter than the devices take). */
  constructor(detail: string, retryAfterSec: number | null = 1) {
    // Without Retry-After, the caller's own deadline was too short: that is the field to change.
    super(504, 'device-timeout', 'Device did not answer in time', detail, {
      retryAfterSec: retryAfterSec ?? undefined,
      ...(retryAfterSec === null && { field: 'parameters.timeout_ms' }),
    })
  }
}

/**
 * A job's attestation was asked for while the Gateway could not move every answered job's
 * attestation to D1: it may be one of those, so this is not a 404 (yet).
 */
export class AttestationNotStoredYetError extends DepinferError {
  constructor(detail: string, retryAfterSec = 5) {
    super(503, 'attestation-not-stored-yet', 'Attestation not stored yet', detail, { field: 'jobId', retryAfterSec })
  }
}

/** The answer was verified but its attestation could not be recorded: it is not handed out. */
export class AttestationStorageError extends DepinferError {
  constructor(detail: string, cause?: unknown) {
    super(503, 'attestation-storage-unavailable', 'Attestation could not be recorded', detail, {
      retryAfterSec: 2,
      cause,
    })
  }
}
