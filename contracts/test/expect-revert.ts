import { BaseError, ContractFunctionRevertedError } from 'viem'
import { expect } from 'vitest'

/** Expects `fn` to revert with the custom error `errorName` (and, if given, exactly `args`). */
export async function expectRevert(fn: () => Promise<unknown>, errorName: string, args?: readonly unknown[]): Promise<void> {
  let caught: unknown
  try {
    await fn()
  } catch (error) {
    caught = error
  }
  expect(caught, `expected revert ${errorName}`).toBeInstanceOf(BaseError)
  const revert = (caught as BaseError).walk((e) => e instanceof ContractFunctionRevertedError)
  expect(revert, `expected revert ${errorName}, got ${String(caught)}`).toBeInstanceOf(ContractFunctionRevertedError)
  const data = (revert as ContractFunctionRevertedError).data
  expect(data?.errorName).toBe(errorName)
  if (args) expect(data?.args).toEqual(args)
}
