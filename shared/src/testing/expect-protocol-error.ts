import { expect } from 'vitest'
import { ProtocolError } from '../errors.js'

/** Runs `fn`, expecting it to throw `errorClass` (a ProtocolError) naming `field`; returns it. */
export function expectProtocolError<E extends ProtocolError>(
  errorClass: new (...args: never[]) => E,
  fn: () => unknown,
  field: string,
): E {
  let caught: unknown
  try {
    fn()
  } catch (error) {
    caught = error
  }
  expect(caught).toBeInstanceOf(errorClass)
  expect(caught).toBeInstanceOf(ProtocolError)
  expect((caught as E).field).toBe(field)
  return caught as E
}
