import { ethers } from 'ethers'
import {
  type Address,
  createPublicClient,
  createWalletClient,
  encodeFunctionData,
  type Hex,
  http,
  parseEventLogs,
  type PublicClient,
} from 'viem'
import { foundry } from 'viem/chains'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type AnvilInstance, startAnvil } from '../scripts/anvil.ts'
import { buildContracts } from '../scripts/build.ts'
import { type Attestation, AttestationMerkleTree, hashPair, leafHash } from './merkle.ts'
import { expectRevert } from './expect-revert.js'

type Contracts = typeof import('../src/index.ts')

const GAS_REPORT = process.env.GAS_REPORT === '1'

const bytes32 = (n: number | bigint): Hex => `0x${BigInt(n).toString(16).padStart(64, '0')}`

function attestation(seq: bigint, device: Address): Attestation {
  return {
    jobId: bytes32(0x10_000n + seq),
    modelHash: bytes32(0xabcdefn),
    inputHash: bytes32(0x20_000n + seq * 7n),
    outputHash: bytes32(0x30_000n + seq * 13n),
    device,
    price: 1_000_000_000_000_000n + seq,
    completedAt: 1_750_000_000n + seq,
    seq,
  }
}

const LEAF_TYPES = ['bytes32', 'bytes32', 'bytes32', 'bytes32', 'address', 'uint256', 'uint64', 'uint64'] as const

/** The leaf recomputed with ethers v6 (independent of the test tree and of viem). */
function ethersLeaf(a: Attestation): string {
  const encoded = ethers.AbiCoder.defaultAbiCoder().encode(
    [...LEAF_TYPES],
    [a.jobId, a.modelHash, a.inputHash, a.outputHash, a.device, a.price, a.completedAt, a.seq],
  )
  return ethers.keccak256(ethers.getBytes(ethers.keccak256(encoded)))
}

/** Off-chain MerkleProof.processProof with sorted pairs. */
function processProof(proof: readonly Hex[], leaf: Hex): Hex {
  return proof.reduce<Hex>((acc, sibling) => hashPair(acc, sibling), leaf)
}

function leafArgs(a: Attestation) {
  return [a.jobId, a.modelHash, a.inputHash, a.outputHash, a.device, a.price, a.completedAt, a.seq] as const
}

/** Runs `fn`, expecting a revert with the custom error `errorName` (and `args`, if given). */
describe('AttestationRegistry on anvil', () => {
  let anvil: AnvilInstance | undefined
  let contracts: Contracts
  let publicClient: PublicClient
  let accounts: Address[]
  let admin: Address
  let submitter: Address
  let outsider: Address
  let registry: Address
  let submitterRole: Hex

  const wallet = (account: Address) =>
    createWalletClient({ account, chain: foundry, transport: http(anvil?.rpcUrl) })

  beforeAll(async () => {
    const [started] = await Promise.all([startAnvil(), buildContracts()])
    anvil = started
    contracts = await import('../src/index.ts')
    publicClient = createPublicClient({ chain: foundry, transport: http(anvil.rpcUrl) })
    accounts = await createWalletClient({ chain: foundry, transport: http(anvil.rpcUrl) }).getAddresses()
    ;[admin, submitter, outsider] = accounts as [Address, Address, Address]
    const deployed = await contracts.deployAttestationRegistry(wallet(admin), publicClient, { submitters: [submitter] })
    registry = deployed.address
    if (GAS_REPORT) console.log(`deploy gas: ${deployed.receipt.gasUsed}`)
    submitterRole = await publicClient.readContract({
      address: registry,
      abi: contracts.attestationRegistryAbi,
      functionName: 'SUBMITTER_ROLE',
    })
  })

  afterAll(async () => {
    await anvil?.stop()
  })

  async function submit(from: Address, root: Hex, count: number, fromSeq: bigint, toSeq: bigint) {
    const args = [root, count, fromSeq, toSeq] as const
    const abi = contracts.attestationRegistryAbi
    // Simulate first so reverts surface as decoded custom errors.
    await publicClient.simulateContract({ address: registry, abi, functionName: 'submitBatch', args, account: from })
    const hash = await wallet(from).writeContract({ address: registry, abi, functionName: 'submitBatch', args })
    const receipt = await publicClient.waitForTransactionReceipt({ hash })
    expect(receipt.status).toBe('success')
    return receipt
  }

  it('grants roles at deployment', async () => {
    const abi = contracts.attestationRegistryAbi
    const hasRole = (account: Address) =>
      publicClient.readContract({ address: registry, abi, functionName: 'hasRole', args: [submitterRole, account] })
    expect(await hasRole(submitter)).toBe(true)
    expect(await hasRole(outsider)).toBe(false)
    const adminRole = await publicClient.readContract({ address: registry, abi, functionName: 'DEFAULT_ADMIN_ROLE' })
    expect(
      await publicClient.readContract({ address: registry, abi, functionName: 'hasRole', args: [adminRole, admin] }),
    ).toBe(true)
  })

  it('posts a batch and verifies every attestation three ways', async () => {
    const abi = contracts.attestationRegistryAbi
    const device = accounts[5] as Address
    const values = [100n, 101n, 102n, 103n, 104n].map((seq) => attestation(seq, device))
    const tree = new AttestationMerkleTree(values)

    const receipt = await submit(submitter, tree.root, values.length, 100n, 104n)
    if (GAS_REPORT) console.log(`submitBatch gas: ${receipt.gasUsed}`)
    expect(receipt.gasUsed).toBeLessThan(60_000n)

    const [event] = parseEventLogs({ abi, logs: receipt.logs, eventName: 'BatchSubmitted' })
    expect(event?.args).toEqual({ root: tree.root, fromSeq: 100n, toSeq: 104n, count: 5, submitter })

    const block = await publicClient.getBlock({ blockNumber: receipt.blockNumber })
    const batch = await publicClient.readContract({ address: registry, abi, functionName: 'getBatch', args: [tree.root] })
    expect(batch).toEqual({
      fromSeq: 100n,
      toSeq: 104n,
      count: 5,
      postedAt: Number(block.timestamp),
      postedAtBlock: Number(receipt.blockNumber),
      submitter,
    })
    expect(await publicClient.readContract({ address: registry, abi, functionName: 'isPosted', args: [tree.root] })).toBe(true)

    for (const value of values) {
      const leaf = leafHash(value)
      expect(ethersLeaf(value)).toBe(leaf)
      const onChainLeaf = await publicClient.readContract({
        address: registry,
        abi,
        functionName: 'attestationLeaf',
        args: leafArgs(value),
      })
      expect(onChainLeaf).toBe(leaf)

      const proof = tree.proof(value)
      expect(processProof(proof, leaf)).toBe(tree.root)
      expect(
        await publicClient.readContract({
          address: registry,
          abi,
          functionName: 'verifyAttestation',
          args: [tree.root, proof, leaf],
        }),
      ).toBe(true)
      expect(
        await publicClient.readContract({
          address: registry,
          abi,
          functionName: 'verifyLeafData',
          args: [tree.root, proof, value],
        }),
      ).toBe(true)
    }

    if (GAS_REPORT) {
      const value = values[2] as Attestation
      const proof = tree.proof(value)
      // View calls: measure as if sent in a transaction (includes the 21k base + calldata).
      const gasOf = (data: Hex) => publicClient.estimateGas({ account: outsider, to: registry, data })
      const verifyGas = await gasOf(
        encodeFunctionData({ abi, functionName: 'verifyAttestation', args: [tree.root, proof, leafHash(value)] }),
      )
      const leafDataGas = await gasOf(encodeFunctionData({ abi, functionName: 'verifyLeafData', args: [tree.root, proof, value] }))
      console.log(`verifyAttestation gas (as a tx, proof length ${proof.length}): ${verifyGas}; verifyLeafData: ${leafDataGas}`)
    }
  })

  it('rejects bad proofs and unknown roots', async () => {
    const abi = contracts.attestationRegistryAbi
    const device = accounts[6] as Address
    const values = [200n, 201n, 202n, 203n].map((seq) => attestation(seq, device))
    const tree = new AttestationMerkleTree(values)
    await submit(submitter, tree.root, 4, 200n, 203n)

    const verify = (root: Hex, proof: readonly Hex[], leaf: Hex) =>
      publicClient.readContract({ address: registry, abi, functionName: 'verifyAttestation', args: [root, proof, leaf] })
    const verifyData = (root: Hex, proof: readonly Hex[], value: Attestation) =>
      publicClient.readContract({ address: registry, abi, functionName: 'verifyLeafData', args: [root, proof, value] })

    const target = values[1] as Attestation
    const proof = tree.proof(target)
    const leaf = leafHash(target)
    expect(await verify(tree.root, proof, leaf)).toBe(true)

    // Tampered sibling, another leaf's proof, a tampered attestation, a truncated proof.
    const tampered = [bytes32(0xdeadn), ...proof.slice(1)]
    expect(await verify(tree.root, tampered, leaf)).toBe(false)
    expect(await verify(tree.root, tree.proof(values[3] as Attestation), leaf)).toBe(false)
    const forged = { ...target, price: target.price + 1n }
    expect(await verify(tree.root, proof, leafHash(forged))).toBe(false)
    expect(await verifyData(tree.root, proof, forged)).toBe(false)
    expect(await verify(tree.root, proof.slice(1), leaf)).toBe(false)

    // Unknown root: false even when the proof is internally consistent.
    const unposted = new AttestationMerkleTree([300n, 301n].map((seq) => attestation(seq, device)))
    const unpostedValue = unposted.values[0] as Attestation
    expect(processProof(unposted.proof(unpostedValue), leafHash(unpostedValue))).toBe(unposted.root)
    expect(await verify(unposted.root, unposted.proof(unpostedValue), leafHash(unpostedValue))).toBe(false)
    expect(await verifyData(unposted.root, unposted.proof(unpostedValue), unpostedValue)).toBe(false)
    expect(await verify(bytes32(0), [], leaf)).toBe(false)
  })

  it('verifies a single-attestation batch (empty proof)', async () => {
    const abi = contracts.attestationRegistryAbi
    const value = attestation(400n, accounts[7] as Address)
    const tree = new AttestationMerkleTree([value])
    expect(tree.root).toBe(leafHash(value))
    await submit(submitter, tree.root, 1, 400n, 400n)
    expect(tree.proof(value)).toEqual([])
    expect(
      await publicClient.readContract({ address: registry, abi, functionName: 'verifyLeafData', args: [tree.root, [], value] }),
    ).toBe(true)
  })

  it('rejects unauthorized submitters with the AccessControl error', async () => {
    await expectRevert(() => submit(outsider, bytes32(0x501n), 1, 1n, 1n), 'AccessControlUnauthorizedAccount', [
      outsider,
      submitterRole,
    ])
    // The admin is not a submitter either.
    await expectRevert(() => submit(admin, bytes32(0x502n), 1, 1n, 1n), 'AccessControlUnauthorizedAccount', [
      admin,
      submitterRole,
    ])
  })

  it('rejects a root that was already posted', async () => {
    const root = bytes32(0x600n)
    await submit(submitter, root, 2, 600n, 601n)
    await expectRevert(() => submit(submitter, root, 2, 600n, 601n), 'RootAlreadyPosted', [root])
    await expectRevert(() => submit(submitter, root, 3, 700n, 702n), 'RootAlreadyPosted', [root])
  })

  it('validates root, count and sequence range', async () => {
    const root = bytes32(0x800n)
    await expectRevert(() => submit(submitter, root, 3, 10n, 13n), 'CountMismatch', [3, 10n, 13n])
    await expectRevert(() => submit(submitter, root, 3, 10n, 11n), 'CountMismatch', [3, 10n, 11n])
    await expectRevert(() => submit(submitter, root, 1, 10n, 9n), 'CountMismatch', [1, 10n, 9n])
    const max = (1n << 64n) - 1n
    await expectRevert(() => submit(submitter, root, 1, 0n, max), 'CountMismatch', [1, 0n, max])
    await expectRevert(() => submit(submitter, root, 0, 10n, 9n), 'EmptyBatch')
    await expectRevert(() => submit(submitter, bytes32(0), 1, 10n, 10n), 'ZeroRoot')
    // Extremes of the uint64 range are accepted.
    await submit(submitter, root, 1, max, max)
  })

  it('lets the admin manage submitters; batches keep their submitter after revocation', async () => {
    const abi = contracts.attestationRegistryAbi
    const newcomer = accounts[8] as Address
    const adminWallet = wallet(admin)
    const grant = await adminWallet.writeContract({
      address: registry,
      abi,
      functionName: 'grantRole',
      args: [submitterRole, newcomer],
    })
    await publicClient.waitForTransactionReceipt({ hash: grant })

    const root = bytes32(0x900n)
    await submit(newcomer, root, 5, 900n, 904n)
    const revoke = await adminWallet.writeContract({
      address: registry,
      abi,
      functionName: 'revokeRole',
      args: [submitterRole, newcomer],
    })
    await publicClient.waitForTransactionReceipt({ hash: revoke })
    await expectRevert(() => submit(newcomer, bytes32(0x901n), 1, 1n, 1n), 'AccessControlUnauthorizedAccount')

    const batch = await publicClient.readContract({ address: registry, abi, functionName: 'getBatch', args: [root] })
    expect(batch.submitter).toBe(newcomer)
    expect(batch.toSeq).toBe(904n)
    const unknown = await publicClient.readContract({ address: registry, abi, functionName: 'getBatch', args: [bytes32(0x902n)] })
    expect(unknown.count).toBe(0)
    expect(unknown.submitter).toBe('0x0000000000000000000000000000000000000000')
  })
})
