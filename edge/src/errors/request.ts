/** Errors that are the caller's: 4xx, never retried by the edge. */
import { DepinferError } from './base.js'

export class InvalidRequestError extends DepinferError {
  constructor(detail: string, field: string) {
    super(400, 'invalid-request', 'Invalid request', detail, { field })
  }
}

export class UnauthorizedError extends DepinferError {
  constructor(detail: string) {
    super(401, 'unauthorized', 'Unauthorized', detail, { field: 'Authorization' })
  }
}

export class ForbiddenError extends DepinferError {
  constructor(detail: string) {
    super(403, 'forbidden', 'Forbidden', detail, { field: 'Authorization' })
  }
}

export class NotFoundError extends DepinferError {
  constructor(detail: string, field: string) {
    super(404, 'not-found', 'Not found', detail, { field })
  }
}

export class PayloadTooLargeError extends DepinferError {
  constructor(limitBytes: number, what = 'request body', field = 'body') {
    super(413, 'payload-too-large', 'Payload too large', `${what} exceeds ${limitBytes} bytes`, { field })
  }
}

/** The model ran but rejected these inputs (for example spatial dimensions too small). */
export class ModelRejectedInputError extends DepinferError {
  constructor(detail: string, field: string) {
    super(422, 'model-rejected-input', 'Model rejected the input', detail, { field })
  }
}

/** The model's own process failed on the input on every device that tried it (model_failed). */
export class ModelFailedError extends DepinferError {
  constructor(detail: string) {
    super(422, 'model-failed', 'The model failed on the input', detail, { field: 'inputs' })
  }
}
