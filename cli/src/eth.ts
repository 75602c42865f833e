/**
 * Amounts and addresses as the chain commands take and print them: ETH amounts are typed in
 * decimal ether (what providers and payers think in) and converted exactly to wei; earnings are
 * printed in wei too, since a job's fee is often far below what ether's decimals make readable.
 */
import { addressProblem } from '@depinfer/shared'
import { type Address, formatEther, getAddress, parseEther } from 'viem'
import { CliError } from './errors.js'

/** At most 18 decimals: anything finer than a wei cannot be sent. */
const ETH_AMOUNT = /^(0|[1-9][0-9]{0,30})(\.[0-9]{1,18})?$|^\.[0-9]{1,18}$/

/**
 * The wei of an ETH amount given on the command line (`what`: the option's or argument's name);
 * a CliError (exit 2) for anything that is not a positive decimal amount of ether.
 */
export function parseEthAmount(text: string, what: string): bigint {
  const wei = ETH_AMOUNT.test(text) ? parseEther(text) : 0n
  if (wei <= 0n) throw new CliError(`${what} must be an amount of ETH above 0, in decimal ether (e.g. 0.1), got ${JSON.stringify(text.slice(0, 100))}`, 2)
  return wei
}

/** The checksummed address given as `what`; a CliError (exit 2) naming it otherwise. */
export function parseAddress(text: string, what: string): Address {
  const problem = addressProblem(text)
  if (problem !== undefined) throw new CliError(`${what} ${problem}, got ${JSON.stringify(text.slice(0, 100))}`, 2)
  return getAddress(text)
}

/** `0.1 ETH`: exact (formatEther drops no digits). */
export const eth = (wei: bigint): string => `${formatEther(wei)} ETH`

/** `18000054 wei (0.000000000018000054 ETH)`: earnings, exact in both units. */
export const weiAndEth = (wei: bigint): string => `${wei} wei (${eth(wei)})`

/** A chain timestamp (seconds) as an ISO date, and how far it is from `now` (also chain seconds). */
export function whenAvailable(at: bigint, now: bigint): string {
  const date = new Date(Number(at) * 1000).toISOString().replace('.000Z', 'Z')
  if (at <= now) return `${date} (now)`
  const minutes = Number((at - now + 59n) / 60n)
  const span = minutes >= 60 ? `${Math.floor(minutes / 60)} h ${minutes % 60} min` : `${minutes} min`
  return `${date} (in ${span}, by the chain's clock)`
}
