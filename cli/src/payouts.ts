/**
 * `depinfer payouts show` and `depinfer payouts claim`: an account's earnings (developer price,
 * provider fees, protocol fee) as the edge's `GET /api/payouts/{address}` serves them, with the
 * Merkle proof of its cumulative amount under the latest posted payout root, and
 * `Escrow.claim(account, cumulative, payoutRoot, proof)` sent with it. Anyone may send a claim:
 * the Escrow always pays the account itself, so a relayer's key can claim for a device owner.
 * What is already claimed is read from the Escrow just before claiming, not taken from the edge,
 * so "nothing to claim" is never a stale answer.
 */
import { type Address, type Hex, isAddressEqual, parseEventLogs, type PrivateKeyAccount } from 'viem'
import { z } from 'zod'
import { chainTarget, connect } from './chain.js'
import { loadContracts } from './contracts.js'
import { EdgeError } from './edge.js'
import { addressSchema, type EdgeSession } from './edge-session.js'
import { weiAndEth } from './eth.js'
import { readChain, sendTransaction } from './transactions.js'

const wei = z.string().regex(/^[0-9]+$/)
const hash32 = z.string().regex(/^0x[0-9a-fA-F]{64}$/).transform((h) => h as Hex)

const payoutSchema = z.object({
  account: addressSchema,
  cumulative: wei,
  payoutRoot: hash32,
  proof: z.array(hash32),
  claimed: wei.optional(),
  claimable: wei.optional(),
  settlement: z.object({ txHash: z.string().nullable().optional() }).optional(),
})
type PayoutView = z.infer<typeof payoutSchema>

/**
 * The account's payout view, or undefined when it has no earnings in a settled batch: the edge's
 * 404 problem naming the address. Any other 404 (a wrong host, proxy or path prefix in
 * DEPINFER_URL) is an error, not "nothing to claim": a cron job claiming would never claim.
 */
async function fetchPayout(edge: EdgeSession, account: Address): Promise<PayoutView | undefined> {
  try {
    return await edge.get(`/api/payouts/${account}`, payoutSchema, `reading the payouts of ${account}`, 'payout proofs come from the edge')
  } catch (error) {
    if (error instanceof EdgeError && error.status === 404 && error.field === 'address') return undefined
    throw error
  }
}

const noEarnings = (account: Address) => `${account} has no earnings in a settled batch yet: nothing to claim`

export async function showPayouts(edge: EdgeSession, account: Address): Promise<void> {
  const view = await fetchPayout(edge, account)
  if (!view) {
    console.log(noEarnings(account))
    return
  }
  const settled = view.settlement?.txHash ? ` (settled in tx ${view.settlement.txHash})` : ''
  console.log(`${account}: earned ${weiAndEth(BigInt(view.cumulative))} in all, under payout root ${view.payoutRoot}${settled}`)
  if (view.claimed === undefined || view.claimable === undefined) {
    console.log(`  claimed: unknown (the edge could not read the Escrow just now); \`depinfer payouts claim\` reads it on-chain`)
  } else {
    console.log(`  claimed ${weiAndEth(BigInt(view.claimed))}, claimable ${weiAndEth(BigInt(view.claimable))}`)
  }
}

export interface ClaimOptions {
  edge: EdgeSession
  env: NodeJS.ProcessEnv
  /** Signs and pays for the claim; need not be `account`. */
  sender: PrivateKeyAccount
  /** Whose earnings: the Escrow pays them to this account. */
  account: Address
}

/** Claims what `account` has earned and not claimed; prints the amount and the transaction. */
export async function claimPayout({ edge, env, sender, account }: ClaimOptions): Promise<void> {
  const view = await fetchPayout(edge, account)
  if (!view) {
    console.log(noEarnings(account))
    return
  }
  const { escrowAbi } = await loadContracts()
  const conn = await connect(await chainTarget('escrow', env, edge))
  const escrow = { address: conn.target.address, abi: escrowAbi } as const
  const cumulative = BigInt(view.cumulative)
  const claimed = await readChain(`reading what ${account} has claimed`, () => conn.client.readContract({ ...escrow, functionName: 'claimed', args: [account] }))
  if (cumulative <= claimed) {
    console.log(`nothing to claim for ${account}: all ${weiAndEth(cumulative)} it has earned (payout root ${view.payoutRoot}) is claimed`)
    return
  }
  const receipt = await sendTransaction(conn, `claim for ${account}${isAddressEqual(account, sender.address) ? '' : ` (sent by ${sender.address})`}`, () =>
    conn.wallet(sender).writeContract({ ...escrow, functionName: 'claim', args: [account, cumulative, view.payoutRoot, view.proof] }),
  )
  // The amount the Escrow paid, from its own event: what the balance of `account` grew by.
  const paid = parseEventLogs({ abi: escrowAbi, eventName: 'Claimed', logs: receipt.logs }).find((e) => isAddressEqual(e.args.account, account))
  const amount = paid?.args.amount ?? cumulative - claimed
  console.log(`claimed ${weiAndEth(amount)}, paid to ${account}; it has now claimed ${cumulative} of the ${cumulative} wei it has earned`)
}
