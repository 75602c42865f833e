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
