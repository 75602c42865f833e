/** Errors of pay-per-inference: the caller's (402) and the edge's own (503, transient). */
import { DepinferError } from './base.js'

/**
 * The job was not sent: the key has no payer, or the payer's escrow balance does not cover the
 * job's price on top of what its jobs in flight and not yet settled already hold.
 */
export class PaymentRequiredError extends DepinferError {
  constructor(detail: string, field: 'Authorization' | 'payer') {
    super(402, 'payment-required', 'Payment required', detail, { field })
  }
}

/**
 * The job costs more than the caller's `parameters.max_price_wei`: not sent, nothing held. A
 * model's owner can publish a new version at another price at any time, and a request without
 * a version runs the newest; the cap is how a caller bounds what that can cost it.
 */
export class PriceAboveLimitError extends DepinferError {
  constructor(detail: string) {
    super(409, 'price-above-limit', 'Price above the limit', detail, { field: 'parameters.max_price_wei' })
  }
}

/** The payer's escrow balance could not be read: the job is not sent without it. */
export class PaymentsUnavailableError extends DepinferError {
  constructor(detail: string, cause?: unknown) {
    super(503, 'payments-unavailable', 'Payments temporarily unavailable', detail, { retryAfterSec: 2, cause })
  }
}

/**
 * The edge's payment settings are invalid: no job runs until an operator fixes them. Free ones
 * neither: a job's price includes the provider fee, so which jobs are free cannot be known.
 */
export class PaymentsMisconfiguredError extends DepinferError {
  constructor(detail: string) {
    super(503, 'payments-misconfigured', 'Payments misconfigured', detail, { retryAfterSec: 60 })
  }
}
