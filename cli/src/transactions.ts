/**
 * Sending a transaction and reading the chain, with every failure turned into one line naming
 * what was attempted and why it failed: the contract's custom error with its arguments (viem
 * decodes it from the ABI when estimating gas, before anything is sent), an account without
 * enough ETH, or an RPC that cannot be reached. viem's own messages span many lines (request
 * body, docs link, version), which is noise for someone fixing a setting.
 */
import { BaseError, ContractFunctionRevertedError, type Hash, HttpRequestError, InsufficientFundsError, type TransactionReceipt } from 'viem'
import type { Connection } from './chain.js'
import { CliError } from './errors.js'

/** The innermost cause's message: for fetch, `connect ECONNREFUSED 127.0.0.1:8545` rather than `fetch failed`. */
function rootCause(error: unknown): string {
  let current: unknown = error
  while (current instanceof Error && current.cause instanceof Error) current = current.cause
  return current instanceof Error ? current.message : String(current)
}

const oneLine = (text: string) => text.replace(/\s+/g, ' ').trim()

function formatValue(value: unknown): string {
  if (typeof value === 'bigint') return value.toString()
  if (typeof value === 'string') return value
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))
}

/** `InsufficientStake(provider 0x…, stake 0, required 100000000000000000)`. */
function describeRevert(revert: ContractFunctionRevertedError): string {
  const data = revert.data
  if (!data) return revert.reason ? `reverted: ${revert.reason}` : oneLine(revert.shortMessage)
  const inputs = data.abiItem.type === 'error' ? data.abiItem.inputs : []
  const args = (data.args ?? []).map((value, i) => {
    const name = inputs[i]?.name
    return name ? `${name} ${formatValue(value)}` : formatValue(value)
  })
  return `the contract refused it: ${data.errorName}(${args.join(', ')})`
}

/** The CliError (exit 1) for a failed chain call or transaction; `what` says what was attempted. */
export function chainFailure(error: unknown, what: string): CliError {
  if (error instanceof CliError) return error
  if (!(error instanceof BaseError)) return new CliError(`${what} failed: ${oneLine(rootCause(error))}`, 1, { cause: error })
  const revert = error.walk((e) => e instanceof ContractFunctionRevertedError)
  if (revert instanceof ContractFunctionRevertedError) return new CliError(`${what} failed: ${describeRevert(revert)}`, 1, { cause: error })
  if (error.walk((e) => e instanceof InsufficientFundsError)) {
    return new CliError(`${what} failed: the sending account has too little ETH for the amount plus gas`, 1, { cause: error })
  }
  const http = error.walk((e) => e instanceof HttpRequestError)
  if (http instanceof HttpRequestError) {
    const why = http.status ? `HTTP ${http.status}` : oneLine(rootCause(http))
    return new CliError(`${what} failed: cannot reach the RPC at ${http.url}: ${why}`, 1, { cause: error })
  }
  return new CliError(`${what} failed: ${oneLine(error.shortMessage)}`, 1, { cause: error })
}

/** Runs a chain read, naming `what` in its failure. */
export async function readChain<T>(what: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read()
  } catch (error) {
    throw chainFailure(error, what)
  }
}

/**
 * Sends the transaction `write` builds (viem simulates it first, so a revert is reported with the
 * contract's error and nothing is sent), waits for its receipt and prints `what` with the hash.
 */
export async function sendTransaction(conn: Connection, what: string, write: () => Promise<Hash>): Promise<TransactionReceipt> {
  const hash = await readChain(what, write)
  // An L2 includes a transaction within seconds; five minutes means it is stuck (e.g. gas price).
  const receipt = await readChain(`waiting for the receipt of ${what} (tx ${hash})`, () => conn.client.waitForTransactionReceipt({ hash, timeout: 300_000 }))
  if (receipt.status !== 'success') throw new CliError(`${what}: tx ${hash} reverted in block ${receipt.blockNumber}`)
  console.log(`${what}: tx ${hash} (block ${receipt.blockNumber})`)
  return receipt
}
