/**
 * Escrow on a real anvil: deposits → priced jobs reserved off-chain (as the edge does in D1) →
 * attested batches posted to AttestationRegistry → settlements with cumulative payout roots →
 * claims. Accounting is checked to the wei, against the chain's ETH balances.
 */
import { attestationLeaf, buildMerkleTree } from '@depinfer/shared'
import { StandardMerkleTree } from '@openzeppelin/merkle-tree'
import { ethers } from 'ethers'
import {
  type Address,
  createPublicClient,
  createTestClient,
  createWalletClient,
  getAddress,
  type Hex,
  http,
  parseEther,
  parseEventLogs,
  type PublicClient,
  type TransactionReceipt,
} from 'viem'
import { foundry } from 'viem/chains'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type AnvilInstance, startAnvil } from '../scripts/anvil.ts'
import { buildContracts } from '../scripts/build.ts'
import { expectRevert } from './expect-revert.js'

type Contracts = typeof import('../src/index.ts')
type PayoutTree = import('../src/payouts.ts').PayoutTree

const GAS_REPORT = process.env.GAS_REPORT === '1'
const WITHDRAWAL_DELAY = 3_600n

const bytes32 = (n: number | bigint): Hex => `0x${BigInt(n).toString(16).padStart(64, '0')}`

/** Runs `fn`, expecting a revert with the custom error `errorName` (and `args`, if given). */
/** The payout leaf recomputed with ethers v6 (independent of viem and of the contract). */
function ethersPayoutLeaf(account: Address, cumulativeAmount: bigint): string {
  const encoded = ethers.AbiCoder.defaultAbiCoder().encode(['address', 'uint256'], [account, cumulativeAmount])
  return ethers.keccak256(ethers.getBytes(ethers.keccak256(encoded)))
}

interface Model {
  developer: Address
  /** The model developer's price per job, wei. */
  price: bigint
}
interface Provider {
  account: Address
  device: Address
  /** The provider's fee per job, wei. */
  fee: bigint
}
interface Job {
  payer: Address
  model: Model
  provider: Provider
  /** Whether the device returned an attested result (false: failed, reservation released). */
  succeeds: boolean
}

/** Protocol fee: 5 % of the provider fee, rounded down; the provider keeps the remainder. */
const protocolFeeOf = (providerFee: bigint) => (providerFee * 500n) / 10_000n
const priceOf = (job: Job) => job.model.price + job.provider.fee

describe('Escrow on anvil', () => {
  let anvil: AnvilInstance | undefined
  let contracts: Contracts
  let publicClient: PublicClient
  let accounts: Address[]
  let admin: Address, settler: Address, relayer: Address, outsider: Address, protocol: Address
  let payers: [Address, Address, Address]
  let registry: Address
  let escrow: Address
  const gas: Record<string, bigint[]> = {}
  /** Cumulative earnings per account: the contents of the latest payout tree. */
  const earned = new Map<Address, bigint>()
  const add = (m: Map<Address, bigint>, k: Address, v: bigint) => m.set(k, (m.get(k) ?? 0n) + v)
  const sum = (m: Map<Address, bigint>) => [...m.values()].reduce((s, v) => s + v, 0n)

  /** The payout tree of `earned` plus `extra` (which is committed only by `commit`). */
  function treeWith(extra: ReadonlyArray<readonly [Address, bigint]>): PayoutTree {
    const next = new Map(earned)
    for (const [account, amount] of extra) add(next, account, amount)
    return contracts.buildPayoutTree([...next].map(([account, cumulativeAmount]) => ({ account, cumulativeAmount })))
  }
  const commit = (extra: ReadonlyArray<readonly [Address, bigint]>) => extra.forEach(([a, v]) => add(earned, a, v))

  const wallet = (account: Address) => createWalletClient({ account, chain: foundry, transport: http(anvil?.rpcUrl) })
  const testClient = () => createTestClient({ chain: foundry, mode: 'anvil', transport: http(anvil?.rpcUrl) })
  const recordGas = (what: string, receipt: TransactionReceipt) => (gas[what] ??= []).push(receipt.gasUsed)

  async function confirm(hash: Hex): Promise<TransactionReceipt> {
    const receipt = await publicClient.waitForTransactionReceipt({ hash })
    expect(receipt.status).toBe('success')
    return receipt
  }
  const ethBalance = (address: Address) => publicClient.getBalance({ address })
  /** What a transaction cost its sender, so ETH deltas of senders can be checked exactly. */
  const fee = (r: TransactionReceipt) => r.gasUsed * r.effectiveGasPrice

  // Each write is simulated first so that reverts surface as decoded custom errors.
  async function deposit(from: Address, value: bigint, forPayer?: Address) {
    const abi = contracts.escrowAbi
    if (forPayer) {
      const { request } = await publicClient.simulateContract({
        address: escrow,
        abi,
        functionName: 'depositFor',
        args: [forPayer],
        value,
        account: from,
      })
      return confirm(await wallet(from).writeContract(request))
    }
    const { request } = await publicClient.simulateContract({ address: escrow, abi, functionName: 'deposit', value, account: from })
    return confirm(await wallet(from).writeContract(request))
  }
  async function settle(from: Address, attestationRoot: Hex, debits: ReadonlyArray<readonly [Address, bigint]>, payoutRoot: Hex, payoutTotal: bigint) {
    const { request } = await publicClient.simulateContract({
      address: escrow,
      abi: contracts.escrowAbi,
      functionName: 'settleBatch',
      args: [attestationRoot, debits.map(([p]) => p), debits.map(([, a]) => a), payoutRoot, payoutTotal],
      account: from,
    })
    return confirm(await wallet(from).writeContract(request))
  }
  async function claim(from: Address, account: Address, cumulativeAmount: bigint, root: Hex, proof: readonly Hex[]) {
    const { request } = await publicClient.simulateContract({
      address: escrow,
      abi: contracts.escrowAbi,
      functionName: 'claim',
      args: [account, cumulativeAmount, root, proof],
      account: from,
    })
    return confirm(await wallet(from).writeContract(request))
  }
  async function postAttestations(root: Hex, count: number, fromSeq: bigint) {
    const { request } = await publicClient.simulateContract({
      address: registry,
      abi: contracts.attestationRegistryAbi,
      functionName: 'submitBatch',
      args: [root, count, fromSeq, fromSeq + BigInt(count) - 1n],
      account: settler,
    })
    return confirm(await wallet(settler).writeContract(request))
  }
  const read = {
    balanceOf: (a: Address) => publicClient.readContract({ address: escrow, abi: contracts.escrowAbi, functionName: 'balanceOf', args: [a] }),
    available: (a: Address) =>
      publicClient.readContract({ address: escrow, abi: contracts.escrowAbi, functionName: 'availableBalance', args: [a] }),
    claimed: (a: Address) => publicClient.readContract({ address: escrow, abi: contracts.escrowAbi, functionName: 'claimed', args: [a] }),
    totals: async () => {
      const abi = contracts.escrowAbi
      const [totalBalances, totalDebited, totalClaimed] = await Promise.all([
        publicClient.readContract({ address: escrow, abi, functionName: 'totalBalances' }),
        publicClient.readContract({ address: escrow, abi, functionName: 'totalDebited' }),
        publicClient.readContract({ address: escrow, abi, functionName: 'totalClaimed' }),
      ])
      return { totalBalances, totalDebited, totalClaimed }
    },
  }

  beforeAll(async () => {
    const [started] = await Promise.all([startAnvil({ args: ['--accounts', '14'] }), buildContracts()])
    anvil = started
    contracts = await import('../src/index.ts')
    publicClient = createPublicClient({ chain: foundry, transport: http(anvil.rpcUrl) })
    accounts = await createWalletClient({ chain: foundry, transport: http(anvil.rpcUrl) }).getAddresses()
    const at = (i: number) => accounts[i] as Address
    ;[admin, settler, relayer, outsider, protocol] = [at(0), at(1), at(10), at(11), at(9)]
    payers = [at(2), at(3), at(4)]

    const attestations = await contracts.deployAttestationRegistry(wallet(admin), publicClient, { submitters: [settler] })
    registry = attestations.address
    const deployed = await contracts.deployEscrow(wallet(admin), publicClient, {
      attestationRegistry: registry,
      settlers: [settler],
      withdrawalDelaySeconds: WITHDRAWAL_DELAY,
    })
    escrow = deployed.address
    recordGas('deploy Escrow', deployed.receipt)
  })

  afterAll(async () => {
    if (GAS_REPORT) {
      for (const [what, used] of Object.entries(gas)) console.log(`gas ${what}: ${used.join(', ')}`)
    }
    await anvil?.stop()
  })

  it('is configured at deployment', async () => {
    const abi = contracts.escrowAbi
    expect(await publicClient.readContract({ address: escrow, abi, functionName: 'withdrawalDelay' })).toBe(WITHDRAWAL_DELAY)
    expect(await publicClient.readContract({ address: escrow, abi, functionName: 'attestationRegistry' })).toBe(getAddress(registry))
    const role = await publicClient.readContract({ address: escrow, abi, functionName: 'SETTLER_ROLE' })
    expect(await publicClient.readContract({ address: escrow, abi, functionName: 'hasRole', args: [role, settler] })).toBe(true)
    expect(await publicClient.readContract({ address: escrow, abi, functionName: 'hasRole', args: [role, admin] })).toBe(false)
    expect(await publicClient.readContract({ address: escrow, abi, functionName: 'PAYOUT_LEAF_TYPES' })).toBe('address,uint256')
  })

  it('payout leaves and trees agree with ethers, OpenZeppelin merkle-tree and the contract', async () => {
    const entries = [
      { account: accounts[5] as Address, cumulativeAmount: 1n },
      { account: accounts[6] as Address, cumulativeAmount: 123_456_789_012_345_678_901n },
      { account: protocol, cumulativeAmount: 0n },
      { account: accounts[7] as Address, cumulativeAmount: (1n << 255n) - 2n },
    ]
    const tree = contracts.buildPayoutTree(entries)
    const oz = StandardMerkleTree.of(
      entries.map((e) => [e.account, e.cumulativeAmount.toString()]),
      ['address', 'uint256'],
    )
    expect(tree.root).toBe(oz.root)
    for (const [i, e] of entries.entries()) {
      const leaf = contracts.payoutLeaf(e.account, e.cumulativeAmount)
      expect(leaf).toBe(ethersPayoutLeaf(e.account, e.cumulativeAmount))
      expect(
        await publicClient.readContract({
          address: escrow,
          abi: contracts.escrowAbi,
          functionName: 'payoutLeaf',
          args: [e.account, e.cumulativeAmount],
        }),
      ).toBe(leaf)
      expect(tree.proof(e.account)).toEqual(oz.getProof(i))
      // Lookups ignore address case.
      expect(tree.entry(e.account.toLowerCase() as Address)?.cumulativeAmount).toBe(e.cumulativeAmount)
    }
    expect(tree.total).toBe(entries.reduce((s, e) => s + e.cumulativeAmount, 0n))
    expect(() => contracts.buildPayoutTree([])).toThrow(/at least one/)
    expect(() =>
      contracts.buildPayoutTree([entries[0]!, { account: entries[0]!.account.toLowerCase() as Address, cumulativeAmount: 5n }]),
    ).toThrow(/listed twice/)
    expect(() => contracts.buildPayoutTree([{ account: protocol, cumulativeAmount: -1n }])).toThrow(RangeError)
    expect(() => contracts.buildPayoutTree([{ account: protocol, cumulativeAmount: 1n << 256n }])).toThrow(RangeError)
    // Entries that fit in uint256 one by one but not in sum could never be posted (payoutTotal).
    expect(() =>
      contracts.buildPayoutTree([
        { account: protocol, cumulativeAmount: 1n << 255n },
        { account: outsider, cumulativeAmount: 1n << 255n },
      ]),
    ).toThrow(/exceeds uint256/)
    expect(() => contracts.payoutLeaf('0x1234' as Address, 1n)).toThrow(/not an address/)
  })

  it('deposit → jobs → 3 batches → claims: every wei accounted for', async () => {
    const abi = contracts.escrowAbi
    const at = (i: number) => accounts[i] as Address
    const [alice, bob, carol] = payers
    const models: Model[] = [
      { developer: at(7), price: 1_000_000_000_000_037n },
      { developer: at(8), price: 2_500_000_000_000_001n },
    ]
    const providers: Provider[] = [
      { account: at(5), device: '0x00000000000000000000000000000000000d0001', fee: 300_000_000_000_011n },
      { account: at(6), device: '0x00000000000000000000000000000000000d0002', fee: 410_000_000_000_003n },
    ]

    // Ledger of the test (what the edge would know).
    const deposited = new Map<Address, bigint>()
    const withdrawn = new Map<Address, bigint>()
    const claimedBy = new Map<Address, bigint>()

    async function fund(from: Address, payer: Address, value: bigint) {
      const before = await read.balanceOf(payer)
      const receipt = await deposit(from, value, from === payer ? undefined : payer)
      recordGas(from === payer ? 'deposit' : 'depositFor', receipt)
      const [event] = parseEventLogs({ abi, logs: receipt.logs, eventName: 'Deposited' })
      expect(event?.args).toEqual({ payer, from, amount: value, balance: before + value })
      add(deposited, payer, value)
    }
    await fund(alice, alice, parseEther('1'))
    await fund(bob, bob, parseEther('0.5'))
    await fund(alice, carol, 10_000_000_000_000_000n + 7n) // alice funds carol: enough for only a few jobs
    await fund(alice, alice, 3n) // a second deposit (warm slot)

    // Off-chain reservations (the edge's D1 job): a job is sent only if its price fits in what
    // the payer has on-chain (availableBalance) minus what is already reserved and unsettled.
    const reserved = new Map<Address, bigint>()
    let seq = 1n
    const refused: Job[] = []
    const payoutRoots: PayoutTree[] = []

    async function runBatch(jobs: readonly Job[]) {
      const accepted: Job[] = []
      for (const job of jobs) {
        const free = (await read.available(job.payer)) - (reserved.get(job.payer) ?? 0n)
        if (priceOf(job) > free) {
          refused.push(job) // → 402 at the edge; nothing reserved, nothing debited
          continue
        }
        add(reserved, job.payer, priceOf(job))
        accepted.push(job)
      }
      // Results come back: failed jobs release their reservation, attested ones are batched.
      const debits = new Map<Address, bigint>()
      const earnings: Array<[Address, bigint]> = []
      const leaves: Hex[] = []
      for (const job of accepted) {
        add(reserved, job.payer, -priceOf(job))
        if (!job.succeeds) continue
        add(debits, job.payer, priceOf(job))
        const protocolFee = protocolFeeOf(job.provider.fee)
        earnings.push(
          [job.model.developer, job.model.price],
          [job.provider.account, job.provider.fee - protocolFee],
          [protocol, protocolFee],
        )
        const n = seq + BigInt(leaves.length)
        const attestation = {
          jobId: bytes32(0x10_000n + n),
          modelHash: bytes32(models.indexOf(job.model) + 1),
          inputHash: bytes32(0x20_000n + n),
          outputHash: bytes32(0x30_000n + n),
          device: job.provider.device,
          price: priceOf(job),
          completedAt: 1_750_000_000_000n + n,
        }
        leaves.push(attestationLeaf(attestation, n))
      }
      const attestationRoot = buildMerkleTree(leaves).root
      await postAttestations(attestationRoot, leaves.length, seq)
      seq += BigInt(leaves.length)

      const tree = treeWith(earnings)
      const before = await read.totals()
      const batchTotal = sum(debits)
      expect(tree.total).toBe(before.totalDebited + batchTotal) // every debited wei is paid to someone
      const receipt = await settle(settler, attestationRoot, [...debits], tree.root, tree.total)
      recordGas(`settleBatch (${debits.size} payers)`, receipt)

      const [settled] = parseEventLogs({ abi, logs: receipt.logs, eventName: 'BatchSettled' })
      expect(settled?.args).toEqual({
        attestationRoot,
        payoutRoot: tree.root,
        epoch: BigInt(payoutRoots.length + 1),
        total: batchTotal,
        totalDebited: tree.total,
      })
      const debited = parseEventLogs({ abi, logs: receipt.logs, eventName: 'Debited' })
      expect(debited.map((e) => [e.args.payer, e.args.amount])).toEqual([...debits])
      const after = await read.totals()
      expect(after.totalDebited).toBe(tree.total)
      expect(after.totalBalances).toBe(before.totalBalances - batchTotal)
      commit(earnings)
      payoutRoots.push(tree)
      return tree
    }

    /** Claims `account`'s whole entry of `tree`, checking the ETH it receives to the wei. */
    async function claimAll(tree: PayoutTree, account: Address, from: Address = account) {
      const entry = tree.entry(account)
      if (!entry) throw new Error(`${account} not in tree`)
      const already = await read.claimed(account)
      const before = await ethBalance(account)
      const receipt = await claim(from, account, entry.cumulativeAmount, tree.root, tree.proof(account))
      recordGas(`claim (proof length ${tree.proof(account).length})`, receipt)
      const paid = entry.cumulativeAmount - already
      const [event] = parseEventLogs({ abi, logs: receipt.logs, eventName: 'Claimed' })
      expect(event?.args).toEqual({ account, payoutRoot: tree.root, amount: paid, cumulativeAmount: entry.cumulativeAmount })
      const gasPaid = from === account ? fee(receipt) : 0n
      expect(await ethBalance(account)).toBe(before + paid - gasPaid)
      add(claimedBy, account, paid)
      return paid
    }

    // 40 jobs: payers, models and providers interleaved; every 7th fails (no attested result).
    const allJobs: Job[] = Array.from({ length: 40 }, (_, i) => ({
      payer: payers[i % 3] as Address,
      model: models[i % 2] as Model,
      provider: providers[i % 5 < 3 ? 0 : 1] as Provider,
      succeeds: i % 7 !== 3,
    }))

    // Batch 1.
    const tree1 = await runBatch(allJobs.slice(0, 12))
    await claimAll(tree1, providers[0]!.account) // pays its own gas
    await claimAll(tree1, models[0]!.developer, relayer) // a relayer submits; the developer gets it all

    // Carol asks to withdraw half her balance: availableBalance drops at once, so the edge
    // reserves no new job against the requested half.
    const carolBalance = await read.balanceOf(carol)
    const request = carolBalance / 2n
    const { request: withdrawalRequest } = await publicClient.simulateContract({
      address: escrow,
      abi,
      functionName: 'requestWithdrawal',
      args: [request],
      account: carol,
    })
    const requestReceipt = await confirm(await wallet(carol).writeContract(withdrawalRequest))
    expect(await read.available(carol)).toBe(carolBalance - request)
    const requestedAt = (await publicClient.getBlock({ blockNumber: requestReceipt.blockNumber })).timestamp
    expect(await publicClient.readContract({ address: escrow, abi, functionName: 'withdrawalRequest', args: [carol] })).toEqual({
      amount: request,
      availableAt: requestedAt + WITHDRAWAL_DELAY,
    })

    // Batch 2 (bob tops up first).
    await fund(bob, bob, parseEther('0.25'))
    const tree2 = await runBatch(allJobs.slice(12, 24))
    const withdrawNow = () => publicClient.simulateContract({ address: escrow, abi, functionName: 'withdraw', account: carol })
    await expectRevert(withdrawNow, 'WithdrawalNotReady', [requestedAt + WITHDRAWAL_DELAY])

    // Batch 3, posted before the older root's claims below.
    const tree3 = await runBatch(allJobs.slice(24, 40))
    expect(refused.length).toBeGreaterThan(0) // carol ran out of funds: jobs refused before sending
    expect(refused.every((j) => j.payer === carol)).toBe(true)

    // A claim built against an older root still lands after a newer one is posted, and pays only
    // up to that root's cumulative amount; the newer root then pays the rest.
    const provider2 = providers[1]!.account
    const paidFromOld = await claimAll(tree2, provider2)
    const paidFromNew = await claimAll(tree3, provider2)
    expect(paidFromOld + paidFromNew).toBe(tree3.entry(provider2)?.cumulativeAmount)
    // Everyone else claims under the latest root (provider 1 and developer 1 for the second time).
    for (const account of [providers[0]!.account, models[0]!.developer, models[1]!.developer, protocol]) {
      await claimAll(tree3, account, account === protocol ? relayer : account)
    }

    // Carol withdraws after the delay: what is left of her request after the debits.
    await testClient().increaseTime({ seconds: Number(WITHDRAWAL_DELAY) })
    await testClient().mine({ blocks: 1 })
    const carolLeft = await read.balanceOf(carol)
    const carolEthBefore = await ethBalance(carol)
    const { request: withdrawCall } = await withdrawNow()
    const withdrawReceipt = await confirm(await wallet(carol).writeContract(withdrawCall))
    recordGas('withdraw', withdrawReceipt)
    const paidOut = request < carolLeft ? request : carolLeft
    const [withdrawnEvent] = parseEventLogs({ abi, logs: withdrawReceipt.logs, eventName: 'Withdrawn' })
    expect(withdrawnEvent?.args).toEqual({ payer: carol, amount: paidOut, requested: request })
    expect(await ethBalance(carol)).toBe(carolEthBefore + paidOut - fee(withdrawReceipt))
    add(withdrawn, carol, paidOut)
    await expectRevert(withdrawNow, 'NoWithdrawalRequest', [carol])

    // The accounting, exactly.
    const totals = await read.totals()
    const balances = await Promise.all(payers.map((p) => read.balanceOf(p)))
    const remaining = balances.reduce((s, b) => s + b, 0n)
    expect(totals.totalBalances).toBe(remaining)
    expect(sum(claimedBy)).toBe(totals.totalClaimed)
    expect(totals.totalClaimed).toBe(totals.totalDebited) // everything earned has been claimed
    expect(totals.totalDebited).toBe(sum(earned))
    expect(sum(claimedBy) + remaining + sum(withdrawn)).toBe(sum(deposited))
    expect(await ethBalance(escrow)).toBe(totals.totalBalances + totals.totalDebited - totals.totalClaimed)
    expect(await ethBalance(escrow)).toBe(remaining)
    for (const [account, amount] of earned) {
      expect(await read.claimed(account)).toBe(amount)
      expect(claimedBy.get(account)).toBe(amount)
    }
    for (const payer of payers) {
      expect(await read.balanceOf(payer)).toBe((deposited.get(payer) ?? 0n) - (withdrawn.get(payer) ?? 0n) - spentBy(payer))
    }
    /** Each payer paid exactly the prices of its accepted jobs that succeeded. */
    function spentBy(payer: Address): bigint {
      const charged = allJobs.filter((j) => j.payer === payer && j.succeeds && !refused.includes(j))
      return charged.reduce((s, j) => s + priceOf(j), 0n)
    }

    // Refused: a second claim of the same amount, under any root.
    const p1 = providers[0]!.account
    const p1Entry = tree3.entry(p1)!
    await expectRevert(
      () => claim(p1, p1, p1Entry.cumulativeAmount, tree3.root, tree3.proof(p1)),
      'NothingToClaim',
      [p1, p1Entry.cumulativeAmount, p1Entry.cumulativeAmount],
    )
    const p1Old = tree1.entry(p1)!
    await expectRevert(
      () => claim(p1, p1, p1Old.cumulativeAmount, tree1.root, tree1.proof(p1)),
      'NothingToClaim',
      [p1, p1Old.cumulativeAmount, p1Entry.cumulativeAmount],
    )
  })

  it('refuses forged proofs, amounts above the cumulative one and unknown roots', async () => {
    const abi = contracts.escrowAbi
    const root = await publicClient.readContract({ address: escrow, abi, functionName: 'currentPayoutRoot' })
    const tree = treeWith([])
    expect(tree.root).toBe(root)
    const [victim, other] = tree.entries.map((e) => e.account) as [Address, Address]
    const { cumulativeAmount } = tree.entry(victim)!
    const proof = tree.proof(victim)
    expect(proof.length).toBeGreaterThan(1)

    // The victim's proof for the outsider's address; a tampered sibling; another leaf's proof;
    // a truncated proof; more than the tree grants.
    await expectRevert(() => claim(outsider, outsider, cumulativeAmount, root, proof), 'InvalidProof')
    await expectRevert(() => claim(outsider, victim, cumulativeAmount, root, [bytes32(0xbad), ...proof.slice(1)]), 'InvalidProof')
    await expectRevert(() => claim(outsider, victim, cumulativeAmount, root, tree.proof(other)), 'InvalidProof')
    await expectRevert(() => claim(outsider, victim, cumulativeAmount, root, proof.slice(1)), 'InvalidProof')
    await expectRevert(() => claim(victim, victim, cumulativeAmount + 1n, root, proof), 'InvalidProof')
    // A forged tree that grants the outsider 100 ETH: its root was never posted.
    const forged = contracts.buildPayoutTree([{ account: outsider, cumulativeAmount: parseEther('100') }, ...tree.entries])
    await expectRevert(
      () => claim(outsider, outsider, parseEther('100'), forged.root, forged.proof(outsider)),
      'UnknownPayoutRoot',
      [forged.root],
    )
  })

  it('refuses settlements that overdraw, are unattested, repeated, unbalanced or unauthorized', async () => {
    const abi = contracts.escrowAbi
    const [alice, , carol] = payers
    const totals = await read.totals()
    const aliceBalance = await read.balanceOf(alice)
    const attestationRoot = bytes32(0xa77e57)
    const payout = treeWith([[protocol, 1n]])
    expect(payout.total).toBe(totals.totalDebited + 1n)
    const role = await publicClient.readContract({ address: escrow, abi, functionName: 'SETTLER_ROLE' })

    // Not yet posted to AttestationRegistry.
    await expectRevert(() => settle(settler, attestationRoot, [[alice, 1n]], payout.root, payout.total), 'AttestationBatchNotPosted', [
      attestationRoot,
    ])
    await postAttestations(attestationRoot, 1, 1_000_000n)

    // Overdrawing a payer by one wei, and charging a payer with no funds at all (the on-chain
    // side of "no funds → no inference").
    const overdraw = treeWith([[protocol, aliceBalance + 1n]])
    await expectRevert(
      () => settle(settler, attestationRoot, [[alice, aliceBalance + 1n]], overdraw.root, overdraw.total),
      'InsufficientBalance',
      [alice, aliceBalance, aliceBalance + 1n],
    )
    // The same payer twice in one batch: the second debit sees the reduced balance.
    await expectRevert(
      () => settle(settler, attestationRoot, [[alice, aliceBalance], [alice, 1n]], overdraw.root, overdraw.total),
      'InsufficientBalance',
      [alice, 0n, 1n],
    )
    expect(await read.balanceOf(outsider)).toBe(0n)
    await expectRevert(() => settle(settler, attestationRoot, [[outsider, 1n]], payout.root, payout.total), 'InsufficientBalance', [
      outsider,
      0n,
      1n,
    ])
    // payoutTotal must equal everything debited so far, this batch included.
    await expectRevert(
      () => settle(settler, attestationRoot, [[alice, 1n]], payout.root, payout.total + 1n),
      'PayoutTotalMismatch',
      [payout.total + 1n, payout.total],
    )
    await expectRevert(() => settle(settler, attestationRoot, [[alice, 2n]], payout.root, payout.total), 'PayoutTotalMismatch', [
      payout.total,
      payout.total + 1n,
    ])
    await expectRevert(() => settle(settler, attestationRoot, [[alice, 0n]], payout.root, payout.total), 'NothingToSettle')
    await expectRevert(() => settle(settler, attestationRoot, [], payout.root, payout.total), 'NothingToSettle')
    await expectRevert(() => settle(settler, attestationRoot, [[alice, 1n]], bytes32(0), payout.total), 'ZeroRoot')
    const current = await publicClient.readContract({ address: escrow, abi, functionName: 'currentPayoutRoot' })
    await expectRevert(() => settle(settler, attestationRoot, [[alice, 1n]], current, payout.total), 'PayoutRootAlreadyPosted', [current])
    await expectRevert(
      () =>
        publicClient.simulateContract({
          address: escrow,
          abi,
          functionName: 'settleBatch',
          args: [attestationRoot, [alice, carol], [1n], payout.root, payout.total],
          account: settler,
        }),
      'LengthMismatch',
      [2n, 1n],
    )
    // Only the settler: not an outsider, not even the admin.
    for (const who of [outsider, admin]) {
      await expectRevert(() => settle(who, attestationRoot, [[alice, 1n]], payout.root, payout.total), 'AccessControlUnauthorizedAccount', [
        who,
        role,
      ])
    }
    // Nothing changed.
    expect(await read.totals()).toEqual(totals)
    expect(await read.balanceOf(alice)).toBe(aliceBalance)

    // The valid settlement goes through once; the same attestation batch cannot be settled again.
    await settle(settler, attestationRoot, [[alice, 1n]], payout.root, payout.total)
    commit([[protocol, 1n]])
    const epoch = await publicClient.readContract({ address: escrow, abi, functionName: 'epoch' })
    expect(await publicClient.readContract({ address: escrow, abi, functionName: 'settledIn', args: [attestationRoot] })).toBe(epoch)
    const again = treeWith([[protocol, 1n]])
    await expectRevert(() => settle(settler, attestationRoot, [[alice, 1n]], again.root, again.total), 'BatchAlreadySettled', [
      attestationRoot,
      epoch,
    ])
    expect(await read.balanceOf(alice)).toBe(aliceBalance - 1n)
  })

  it('refuses zero deposits, plain transfers and early or missing withdrawals', async () => {
    const abi = contracts.escrowAbi
    const [, bob] = payers
    await expectRevert(() => deposit(bob, 0n), 'ZeroAmount')
    await expectRevert(() => deposit(bob, 1n, '0x0000000000000000000000000000000000000000'), 'ZeroAddress')
    // No receive(): ETH sent without deposit() would escape the accounting, so it bounces.
    const escrowEth = await ethBalance(escrow)
    await expect(publicClient.estimateGas({ account: bob, to: escrow, value: 1n })).rejects.toThrow()
    const plain = await wallet(bob).sendTransaction({ to: escrow, value: 1n, gas: 100_000n })
    expect((await publicClient.waitForTransactionReceipt({ hash: plain })).status).toBe('reverted')
    expect(await ethBalance(escrow)).toBe(escrowEth)

    const balance = await read.balanceOf(bob)
    const requestWithdrawal = (amount: bigint) =>
      publicClient.simulateContract({ address: escrow, abi, functionName: 'requestWithdrawal', args: [amount], account: bob })
    const withdraw = () => publicClient.simulateContract({ address: escrow, abi, functionName: 'withdraw', account: bob })
    const cancel = () => publicClient.simulateContract({ address: escrow, abi, functionName: 'cancelWithdrawal', account: bob })
    await expectRevert(() => requestWithdrawal(balance + 1n), 'InsufficientBalance', [bob, balance, balance + 1n])
    await expectRevert(() => requestWithdrawal(0n), 'ZeroAmount')
    await expectRevert(withdraw, 'NoWithdrawalRequest', [bob])
    await confirm(await wallet(bob).writeContract((await requestWithdrawal(balance)).request))
    expect(await read.available(bob)).toBe(0n)
    await expectRevert(withdraw, 'WithdrawalNotReady')
    await confirm(await wallet(bob).writeContract((await cancel()).request))
    expect(await read.available(bob)).toBe(balance)
    await expectRevert(cancel, 'NoWithdrawalRequest', [bob])
  })

  it('lets the settler debit jobs reserved before a withdrawal request during the delay', async () => {
    const abi = contracts.escrowAbi
    const [, bob] = payers
    const balance = await read.balanceOf(bob)
    const { request } = await publicClient.simulateContract({
      address: escrow,
      abi,
      functionName: 'requestWithdrawal',
      args: [balance],
      account: bob,
    })
    await confirm(await wallet(bob).writeContract(request))

    // A job reserved before the request completes and is settled during the delay.
    const price = 1_234_567n
    const attestationRoot = bytes32(0xde1a7)
    await postAttestations(attestationRoot, 1, 1_500_000n)
    const payout = treeWith([[protocol, price]])
    await settle(settler, attestationRoot, [[bob, price]], payout.root, payout.total)
    commit([[protocol, price]])
    expect(await read.balanceOf(bob)).toBe(balance - price)
    expect(await read.available(bob)).toBe(0n)

    await testClient().increaseTime({ seconds: Number(WITHDRAWAL_DELAY) })
    await testClient().mine({ blocks: 1 })
    const before = await ethBalance(bob)
    const { request: withdraw } = await publicClient.simulateContract({ address: escrow, abi, functionName: 'withdraw', account: bob })
    const receipt = await confirm(await wallet(bob).writeContract(withdraw))
    const [event] = parseEventLogs({ abi, logs: receipt.logs, eventName: 'Withdrawn' })
    expect(event?.args).toEqual({ payer: bob, amount: balance - price, requested: balance })
    expect(await ethBalance(bob)).toBe(before + balance - price - fee(receipt))
    expect(await read.balanceOf(bob)).toBe(0n)
  })

  it('caps claims at the debited total even under a dishonest tree', async () => {
    // A fresh escrow whose settler posts a tree granting two accounts everything each.
    const deployed = await contracts.deployEscrow(wallet(admin), publicClient, {
      attestationRegistry: registry,
      settlers: [settler],
      withdrawalDelaySeconds: 0n,
    })
    const main = escrow
    escrow = deployed.address
    try {
      const [alice] = payers
      await deposit(alice, 1_000n)
      const root = bytes32(0xd15)
      await postAttestations(root, 1, 2_000_000n)
      const [x, y] = [accounts[12] as Address, accounts[13] as Address]
      const dishonest = contracts.buildPayoutTree([
        { account: x, cumulativeAmount: 1_000n },
        { account: y, cumulativeAmount: 1_000n },
      ])
      // The settler lies about the total; the contract only sees payoutTotal == totalDebited.
      await settle(settler, root, [[alice, 1_000n]], dishonest.root, 1_000n)
      await claim(x, x, 1_000n, dishonest.root, dishonest.proof(x))
      await expectRevert(() => claim(y, y, 1_000n, dishonest.root, dishonest.proof(y)), 'ClaimExceedsDebited', [2_000n, 1_000n])
      expect(await ethBalance(escrow)).toBe(0n)
    } finally {
      escrow = main
    }
  })

  it('accepts a claim sent with ethers v6', async () => {
    // An independent client: ethers' Contract, from a relayer account, for a fresh batch.
    // cacheTimeout -1: ethers otherwise answers a repeated getBalance from a 250 ms cache.
    const provider = new ethers.JsonRpcProvider(anvil?.rpcUrl, undefined, { staticNetwork: true, cacheTimeout: -1 })
    try {
      const [alice] = payers
      const earner = accounts[13] as Address
      const attestationRoot = bytes32(0xe7e5)
      await postAttestations(attestationRoot, 1, 3_000_000n)
      const tree = treeWith([[earner, 777n]])
      await settle(settler, attestationRoot, [[alice, 777n]], tree.root, tree.total)
      commit([[earner, 777n]])

      const signer = await provider.getSigner(relayer)
      const contract = new ethers.Contract(escrow, contracts.escrowAbi, signer)
      expect(await contract.getFunction('payoutLeaf')(earner, 777n)).toBe(ethersPayoutLeaf(earner, 777n))
      const before = await provider.getBalance(earner)
      const tx = (await contract.getFunction('claim')(earner, 777n, tree.root, tree.proof(earner))) as ethers.ContractTransactionResponse
      const receipt = await tx.wait()
      expect(receipt?.status).toBe(1)
      expect(await provider.getBalance(earner)).toBe(before + 777n)
      expect(await read.claimed(earner)).toBe(777n)
    } finally {
      provider.destroy()
    }
  })

  it('holds exactly the remaining balances plus unclaimed earnings', async () => {
    const totals = await read.totals()
    const balances = await Promise.all(payers.map((p) => read.balanceOf(p)))
    expect(totals.totalBalances).toBe(balances.reduce((s, b) => s + b, 0n))
    expect(totals.totalDebited).toBe(sum(earned))
    const claimed = await Promise.all([...earned.keys()].map((a) => read.claimed(a)))
    expect(totals.totalClaimed).toBe(claimed.reduce((s, c) => s + c, 0n))
    // The protocol left 1 234 567 + 1 wei unclaimed since the main scenario.
    expect(totals.totalDebited - totals.totalClaimed).toBe(1_234_567n + 1n)
    expect(await ethBalance(escrow)).toBe(totals.totalBalances + totals.totalDebited - totals.totalClaimed)
  })
})
