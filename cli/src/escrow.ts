/**
 * `depinfer escrow deposit` and `depinfer escrow withdraw`: a payer's own funds in the Escrow.
 * Withdrawing takes two transactions a delay apart (`requestWithdrawal`, then `withdraw` once
 * `withdrawalDelay` has passed, so the edge can settle the jobs it already reserved against the
 * balance); one command does whichever step is due, so the payer runs the same command twice.
 */
import { type Address, isAddressEqual, parseEventLogs, type PrivateKeyAccount } from 'viem'
import type { Connection } from './chain.js'
import { loadContracts } from './contracts.js'
import { CliError } from './errors.js'
import { eth, whenAvailable } from './eth.js'
import { readChain, sendTransaction } from './transactions.js'

async function escrowContract(conn: Connection) {
  const { escrowAbi } = await loadContracts()
  return { address: conn.target.address, abi: escrowAbi } as const
}

/** Prints the payer's balance, what the edge may still reserve against, and any pending withdrawal. */
async function printBalance(conn: Connection, payer: Address): Promise<void> {
  const escrow = await escrowContract(conn)
  const [balance, available, request, block] = await readChain(`reading the Escrow balance of ${payer}`, () =>
    Promise.all([
      conn.client.readContract({ ...escrow, functionName: 'balanceOf', args: [payer] }),
      conn.client.readContract({ ...escrow, functionName: 'availableBalance', args: [payer] }),
      conn.client.readContract({ ...escrow, functionName: 'withdrawalRequest', args: [payer] }),
      conn.client.getBlock(),
    ]),
  )
  const pending = request.amount > 0n ? `, withdrawal of ${eth(request.amount)} pending (available from ${whenAvailable(request.availableAt, block.timestamp)})` : ''
  console.log(`${payer} in Escrow ${escrow.address}: balance ${eth(balance)}, available for jobs ${eth(available)}${pending}`)
}

/** Deposits `amount` wei from `payer`'s account, for itself or for `beneficiary`. */
export async function deposit(conn: Connection, payer: PrivateKeyAccount, amount: bigint, beneficiary?: Address): Promise<void> {
  const escrow = await escrowContract(conn)
  const wallet = conn.wallet(payer)
  // Money goes to the address the settings name: say where it came from when the edge named it
  // (an edge reached over plain http, or a wrong one, could name any contract).
  if (conn.target.addressSource !== 'DEPINFER_ESCROW_ADDRESS') {
    console.log(`Escrow ${escrow.address} as ${conn.target.addressSource} names it; set DEPINFER_ESCROW_ADDRESS to pin the address you trust`)
  }
  const forOther = beneficiary !== undefined && !isAddressEqual(beneficiary, payer.address)
  await sendTransaction(conn, `deposit of ${eth(amount)}${forOther ? ` for ${beneficiary}` : ''}`, () =>
    forOther
      ? wallet.writeContract({ ...escrow, functionName: 'depositFor', args: [beneficiary], value: amount })
      : wallet.writeContract({ ...escrow, functionName: 'deposit', value: amount }),
  )
  await printBalance(conn, beneficiary ?? payer.address)
}

/**
 * Requests a withdrawal of `amount` wei (default: the whole balance) when none is pending or an
 * amount is given (replacing the pending one, whose delay restarts); otherwise completes the
 * pending one if its delay has passed, and says when it will have if not (exit 1).
 */
export async function withdraw(conn: Connection, payer: PrivateKeyAccount, amount?: bigint): Promise<void> {
  const escrow = await escrowContract(conn)
  const wallet = conn.wallet(payer)
  const [balance, request, block] = await readChain(`reading the Escrow balance of ${payer.address}`, () =>
    Promise.all([
      conn.client.readContract({ ...escrow, functionName: 'balanceOf', args: [payer.address] }),
      conn.client.readContract({ ...escrow, functionName: 'withdrawalRequest', args: [payer.address] }),
      conn.client.getBlock(),
    ]),
  )
  if (amount !== undefined || request.amount === 0n) {
    const wanted = amount ?? balance
    if (wanted === 0n) {
      console.log(`nothing to withdraw: ${payer.address} has no balance in Escrow ${escrow.address}`)
      return
    }
    if (wanted > balance) throw new CliError(`--amount ${eth(wanted)} is more than the balance of ${payer.address}, ${eth(balance)}`, 2)
    if (request.amount > 0n) console.log(`replacing the pending withdrawal of ${eth(request.amount)} (the delay starts again)`)
    await sendTransaction(conn, `withdrawal request of ${eth(wanted)}`, () => wallet.writeContract({ ...escrow, functionName: 'requestWithdrawal', args: [wanted] }))
    const [now, after] = await readChain('reading the withdrawal request', () =>
      Promise.all([conn.client.getBlock(), conn.client.readContract({ ...escrow, functionName: 'withdrawalRequest', args: [payer.address] })]),
    )
    console.log(`the edge no longer reserves jobs against it; run \`depinfer escrow withdraw\` again from ${whenAvailable(after.availableAt, now.timestamp)} to receive it`)
    return
  }
  // The contract compares with the block's timestamp, so the chain's clock decides, not ours.
  if (block.timestamp < request.availableAt) {
    throw new CliError(`the withdrawal of ${eth(request.amount)} is not available yet: run this again from ${whenAvailable(request.availableAt, block.timestamp)}`)
  }
  const receipt = await sendTransaction(conn, 'withdrawal', () => wallet.writeContract({ ...escrow, functionName: 'withdraw' }))
  const event = parseEventLogs({ abi: escrow.abi, eventName: 'Withdrawn', logs: receipt.logs })[0]
  const paid = event?.args.amount ?? 0n
  // Less than requested when the edge settled jobs against the balance during the delay.
  console.log(`withdrew ${eth(paid)} to ${payer.address}${paid < request.amount ? ` (jobs settled during the delay took the other ${eth(request.amount - paid)})` : ''}`)
  await printBalance(conn, payer.address)
}

/**
 * Drops the payer's pending withdrawal request: the whole balance is again what the edge may
 * reserve jobs against. Says so and changes nothing when none is pending.
 */
export async function cancelWithdrawal(conn: Connection, payer: PrivateKeyAccount): Promise<void> {
  const escrow = await escrowContract(conn)
  const request = await readChain(`reading the withdrawal request of ${payer.address}`, () =>
    conn.client.readContract({ ...escrow, functionName: 'withdrawalRequest', args: [payer.address] }),
  )
  if (request.amount === 0n) {
    console.log(`nothing to cancel: ${payer.address} has no pending withdrawal in Escrow ${escrow.address}`)
    return
  }
  await sendTransaction(conn, `cancelling the withdrawal of ${eth(request.amount)}`, () => conn.wallet(payer).writeContract({ ...escrow, functionName: 'cancelWithdrawal' }))
  console.log(`cancelled the withdrawal of ${eth(request.amount)}; the edge reserves jobs against the whole balance again`)
  await printBalance(conn, payer.address)
}
