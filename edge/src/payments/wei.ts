/**
 * Wei amounts as two integers SQLite can sum exactly: whole gwei and the wei below a gwei. A sum
 * in wei would overflow SQLite's 64-bit integers at ~9.2 ETH; in gwei it holds ~9.2e9 ETH.
 */
const GWEI = 1_000_000_000n

/** A wei amount as the edge takes it in settings and parameters: a decimal integer without leading zeros, up to 78 digits. */
export const WEI_PATTERN = /^(0|[1-9][0-9]{0,77})$/

/** Wei as whole gwei and the wei below a gwei: SQLite sums these exactly in 64-bit integers. */
export function splitWei(wei: bigint): { gwei: number; rem: number } {
  const gwei = wei / GWEI
  // Beyond 2^53 gwei (9 million ETH) a JS number is no longer exact.
  if (gwei > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`${wei} wei is too large to reserve`)
  return { gwei: Number(gwei), rem: Number(wei % GWEI) }
}

/** Largest amount `splitWei` accepts: balances above it are capped (never reached in practice). */
export const MAX_RESERVABLE_WEI = BigInt(Number.MAX_SAFE_INTEGER) * GWEI + (GWEI - 1n)

export const joinWei = (gwei: string | number, rem: string | number) => BigInt(gwei) * GWEI + BigInt(rem)
