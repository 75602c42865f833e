/**
 * Payout trees of the Escrow contract: an OpenZeppelin `StandardMerkleTree` over
 * `(address account, uint256 cumulativeAmount)`, where `cumulativeAmount` is everything the
 * account (provider, model developer, protocol) has earned since the Escrow was deployed.
 * The settler builds one after each batch and posts its root with `Escrow.settleBatch`,
 * passing `total` as `payoutTotal`; accounts claim with `proof(account)`.
 *
 * Leaf: `keccak256(keccak256(abi.encode(account, cumulativeAmount)))`, equal to
 * `Escrow.payoutLeaf` and to `StandardMerkleTree.of(values, ['address', 'uint256'])`.
 */
import { buildMerkleTree } from '@depinfer/shared'
import { type Address, encodeAbiParameters, getAddress, type Hex, isAddress, keccak256 } from 'viem'

/** ABI types of a payout leaf (Escrow.PAYOUT_LEAF_TYPES). */
export const PAYOUT_LEAF_TYPES = ['address', 'uint256'] as const

const UINT256_MAX = (1n << 256n) - 1n

export interface PayoutEntry {
  account: Address
  /** Wei earned since deployment (never decreases from one tree to the next). */
  cumulativeAmount: bigint
}

export interface PayoutTree {
  /** The root to post with `settleBatch`. */
  readonly root: Hex
  /** Sum of all cumulative amounts: `settleBatch`'s `payoutTotal`. */
  readonly total: bigint
  /** The entries, accounts checksummed, in the order given. */
  readonly entries: readonly PayoutEntry[]
  /** The account's entry, or undefined when it is not in the tree (any address case). */
  entry(account: Address): PayoutEntry | undefined
  /** The proof for `claim(account, cumulativeAmount, root, proof)`; throws for an unknown account. */
  proof(account: Address): Hex[]
}

function checkedAccount(account: string, field: string): Address {
  if (!isAddress(account, { strict: false })) throw new Error(`${field} is not an address: ${JSON.stringify(account)}`)
  return getAddress(account)
}

function checkedAmount(amount: bigint, field: string): bigint {
  if (typeof amount !== 'bigint' || amount < 0n || amount > UINT256_MAX) {
    throw new RangeError(`${field} must be a uint256 bigint, got ${String(amount)}`)
  }
  return amount
}

/** The Escrow payout leaf of `(account, cumulativeAmount)`. */
export function payoutLeaf(account: Address, cumulativeAmount: bigint): Hex {
  const encoded = encodeAbiParameters(
    [{ type: 'address' }, { type: 'uint256' }],
    [checkedAccount(account, 'account'), checkedAmount(cumulativeAmount, 'cumulativeAmount')],
  )
  return keccak256(keccak256(encoded))
}

/**
 * Builds the payout tree over `entries`. Throws for an empty list, an invalid address or
 * amount, and an account listed twice (addresses compare case-insensitively): each account has
 * exactly one cumulative amount per tree, so merge earnings before calling.
 */
export function buildPayoutTree(entries: readonly PayoutEntry[]): PayoutTree {
  if (entries.length === 0) throw new Error('a payout tree needs at least one entry')
  const normalized: PayoutEntry[] = []
  const indexOf = new Map<string, number>()
  let total = 0n
  entries.forEach((e, i) => {
    const account = checkedAccount(e.account, `entries[${i}].account`)
    const cumulativeAmount = checkedAmount(e.cumulativeAmount, `entries[${i}].cumulativeAmount`)
    const key = account.toLowerCase()
    if (indexOf.has(key)) throw new Error(`entries[${i}]: account ${account} is listed twice`)
    indexOf.set(key, i)
    normalized.push({ account, cumulativeAmount })
    total += cumulativeAmount
  })
  // The contract stores payoutTotal as a uint256; a tree that sums above it could never be posted.
  if (total > UINT256_MAX) throw new RangeError('payout total exceeds uint256')
  const tree = buildMerkleTree(normalized.map((e) => payoutLeaf(e.account, e.cumulativeAmount)))
  const find = (account: Address): number | undefined => indexOf.get(account.toLowerCase())
  return {
    root: tree.root,
    total,
    entries: normalized,
    entry(account) {
      const i = find(account)
      return i === undefined ? undefined : normalized[i]
    },
    proof(account) {
      const i = find(account)
      if (i === undefined) throw new Error(`account ${account} is not in the payout tree`)
      return tree.proof(i)
    },
  }
}
