/**
 * `npx tsx bench/attest.ts` — what attestations cost, on-chain and off (a benchmark, not a test).
 * Measured in one run, on a local anvil:
 *   gas      AttestationRegistry.submitBatch per attestation at batch sizes 1 to 100,000 (one
 *            Merkle root per batch, so a constant cost per batch) against storing every
 *            attestation in its own transaction, EAS-style (contracts/bench/AttestationStore.sol);
 *   verify   attestations whose device signature the edge checks per second on one core (this
 *            process is single-threaded; anvil is idle meanwhile): viem's typed-data recovery,
 *            shared's recovery, and shared's verification against the registered key, raw and
 *            prepared (precomputed tables);
 *   batch    the edge's work per 100,000-attestation batch: the leaves, the tree, posting the
 *            root and waiting for the receipt; and every proof of the batch.
 * Targets (issue): ≤ 1/2,000 of the EAS-style gas per attestation at batch 1,000; ≥ 2,000
 * verifications/s; a 100,000-leaf batch built and posted in ≤ 5 s.
 */
import { createRequire } from 'node:module'
import { cpus, loadavg } from 'node:os'
import {
  type Account,
  type Chain,
  createPublicClient,
  createWalletClient,
  http,
  type PublicClient,
  recoverTypedDataAddress,
  type Transport,
  type WalletClient,
} from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { foundry } from 'viem/chains'
import { startAnvil } from '../contracts/scripts/anvil.js'
import { buildContracts } from '../contracts/scripts/build.js'
import { ANVIL_DEV_PRIVATE_KEY } from '../scripts/local/chain.js'
import {
  type Attestation,
  attestationLeaf,
  type AttestationDomain,
  attestationTypedData,
  type Hex,
  preparePublicKey,
  PREPARED_KEY_WINDOW,
  recoverAttestationSigner,
  VerifiedBatchRoots,
  verifyAttestationSignature,
} from '../shared/src/attestation.js'
import { buildMerkleTree } from '../shared/src/merkle.js'
import { benchAttestations, benchDevices, type Device, signAll, signAllInBatches, type SignedItem } from './attest/data.js'
import { attestationStoreAbi, compileAttestationStore, deployAttestationStore } from './attest/store.js'
import { machineLine } from './machine.js'
import { recordSummary } from './summary.js'

const DEVICES = 8
/** Signed attestations the verification rounds draw from. */
const VERIFY_POOL = 2_000
/** Timed rounds per method, after one warm-up round; the median is reported. */
const VERIFY_ROUNDS = 5
/** Attestations per batch signature in the batched verification row (a device's ORT batch; 6.8 measured at c=32). */
const SIGNING_BATCH = 8
const BATCH_SIZES = [1, 100, 1_000, 10_000] as const
/** EAS-style attestations stored (one transaction each) to take the median gas of. */
const STORE_SAMPLES = 20
const BIG_BATCH = 100_000
/** The 100,000-leaf batch is built and posted this many times; the median is reported. */
const BIG_BATCH_RUNS = 3

const TARGET_GAS_FRACTION = 2_000 // at batch 1,000
const TARGET_GAS_BATCH = 1_000
const TARGET_VERIFY_PER_SEC = 2_000
const TARGET_BIG_BATCH_MS = 5_000

type Wallet = WalletClient<Transport, Chain | undefined, Account>
type Contracts = typeof import('../contracts/src/index.js')

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
const met = (ok: boolean) => (ok ? 'met' : '**not met**')

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/**
 * Wall-clock and CPU time of `f`. CPU time (this process, all threads) is what a core actually
 * spent on it: on a shared machine other processes stretch the wall clock, not the CPU time.
 */
async function timed<T>(f: () => Promise<T> | T): Promise<{ result: T; wallMs: number; cpuMs: number }> {
  const cpu = process.cpuUsage()
  const started = performance.now()
  const result = await f()
  const wallMs = performance.now() - started
  const used = process.cpuUsage(cpu)
  return { result, wallMs, cpuMs: (used.user + used.system) / 1000 }
}

/** The next `count` items of `pool`, wrapping, from `start`: each round sees fresh signatures. */
function slice<T>(pool: readonly T[], start: number, count: number): T[] {
  return Array.from({ length: count }, (_, i) => pool[(start + i) % pool.length]!)
}

// ---------------------------------------------------------------------------------------------
// Gas
// ---------------------------------------------------------------------------------------------

interface GasRow {
  label: string
  perTx: number
  count: number
}

/** Posts the root of `count` fresh attestations numbered from `fromSeq`; returns gasUsed. */
async function submitBatch(
  contracts: Contracts,
  wallet: Wallet,
  publicClient: PublicClient,
  registry: Hex,
  root: Hex,
  count: number,
  fromSeq: bigint,
): Promise<number> {
  const hash = await wallet.writeContract({
    address: registry,
    abi: contracts.attestationRegistryAbi,
    functionName: 'submitBatch',
    args: [root, count, fromSeq, fromSeq + BigInt(count) - 1n],
    account: wallet.account,
    chain: wallet.chain,
  })
  const receipt = await publicClient.waitForTransactionReceipt({ hash })
  if (receipt.status !== 'success') throw new Error(`submitBatch of ${count} reverted (tx ${hash})`)
  return Number(receipt.gasUsed)
}

/** EAS-style: one transaction per attestation, storing it whole. Median gasUsed per attestation. */
async function storeGas(wallet: Wallet, publicClient: PublicClient, store: Hex, items: readonly SignedItem[]): Promise<{ median: number; min: number; max: number }> {
  const gas: number[] = []
  for (const { attestation: a, signature } of items) {
    const hash = await wallet.writeContract({
      address: store,
      abi: attestationStoreAbi,
      functionName: 'attest',
      args: [
        { jobId: a.jobId, modelHash: a.modelHash, inputHash: a.inputHash, outputHash: a.outputHash, device: a.device, price: a.price, completedAt: a.completedAt },
        { v: Number.parseInt(signature.slice(130, 132), 16), r: `0x${signature.slice(2, 66)}`, s: `0x${signature.slice(66, 130)}` },
      ],
      account: wallet.account,
      chain: wallet.chain,
    })
    const receipt = await publicClient.waitForTransactionReceipt({ hash })
    if (receipt.status !== 'success') throw new Error(`attest reverted (tx ${hash})`)
    gas.push(Number(receipt.gasUsed))
  }
  return { median: median(gas), min: Math.min(...gas), max: Math.max(...gas) }
}

// ---------------------------------------------------------------------------------------------
// Verification rate
// ---------------------------------------------------------------------------------------------

interface VerifyMethod {
  name: string
  /** Items per timed round: the slow methods get fewer so the bench stays within minutes. */
  perRound: number
  /** How many of `items` verify (all must: the pool holds only good signatures). */
  run(items: readonly SignedItem[]): Promise<number> | number
  /** Its own pool (e.g. batch-signed items) instead of the shared one. */
  pool?: readonly SignedItem[]
  /** Which figure the summary reports it as: `single` is the one the target is judged on (one signature per attestation, key known: the Gateway's case). */
  summary?: 'single' | 'batched'
}

interface VerifyRow {
  name: string
  summary?: 'single' | 'batched'
  /** Per wall-clock second, one entry per timed round. */
  perSec: number[]
  /** Per CPU-second of this process. */
  perCpuSec: number[]
}

function verifyMethods(devices: readonly Device[], domain: AttestationDomain, batchSigned: readonly SignedItem[]): { methods: VerifyMethod[]; prepareMs: { first: number; each: number } } {
  // The first preparePublicKey also builds the generator's wider table (once per process).
  let started = performance.now()
  const first = preparePublicKey(devices[0]!.publicKey)
  const firstMs = performance.now() - started
  started = performance.now()
  const prepared = [first, ...devices.slice(1).map((d) => preparePublicKey(d.publicKey))]
  const eachMs = (performance.now() - started) / (devices.length - 1)

  const count = (items: readonly SignedItem[], ok: (item: SignedItem) => boolean) => {
    let n = 0
    for (const item of items) if (ok(item)) n++
    return n
  }
  const methods: VerifyMethod[] = [
    {
      name: 'viem recoverTypedDataAddress, compare address',
      perRound: 400,
      async run(items) {
        let n = 0
        for (const { attestation, signature } of items) {
          const address = await recoverTypedDataAddress({ ...attestationTypedData(domain, attestation), signature })
          if (address.toLowerCase() === attestation.device) n++
        }
        return n
      },
    },
    {
      name: 'recoverAttestationSigner, compare address',
      perRound: 1_000,
      run: (items) => count(items, ({ attestation, signature }) => recoverAttestationSigner(domain, attestation, signature) === attestation.device),
    },
    {
      name: 'verifyAttestationSignature, raw registered key',
      perRound: 1_000,
      run: (items) => count(items, ({ attestation, signature, device }) => verifyAttestationSignature(devices[device]!.publicKey, domain, attestation, signature)),
    },
    {
      name: `verifyAttestationSignature, prepared key (window ${PREPARED_KEY_WINDOW})`,
      summary: 'single',
      perRound: 2_000,
      run: (items) => count(items, ({ attestation, signature, device }) => verifyAttestationSignature(prepared[device]!, domain, attestation, signature)),
    },
    {
      // As the Gateway does for a device that batches: each root checked once (a cold cache per
      // round), the batch's other attestations by their proof.
      name: `the same, signed in batches of ${SIGNING_BATCH} (VerifiedBatchRoots)`,
      summary: 'batched',
      perRound: 2_000,
      pool: batchSigned,
      run: (items) => {
        const roots = new VerifiedBatchRoots()
        return count(items, ({ attestation, signature, device }) => verifyAttestationSignature(prepared[device]!, domain, attestation, signature, roots))
      },
    },
  ]
  return { methods, prepareMs: { first: firstMs, each: eachMs } }
}

/**
 * Rounds of every method in turn (round 0 is warm-up), so load from anything else on the
 * machine falls on all methods alike rather than on whichever ran during it.
 */
async function measureVerification(methods: readonly VerifyMethod[], pool: readonly SignedItem[]): Promise<VerifyRow[]> {
  const rows: VerifyRow[] = methods.map((m) => ({ name: m.name, ...(m.summary && { summary: m.summary }), perSec: [], perCpuSec: [] }))
  for (let round = 0; round <= VERIFY_ROUNDS; round++) {
    for (const [i, method] of methods.entries()) {
      const items = slice(method.pool ?? pool, round * method.perRound, method.perRound)
      const { result: verified, wallMs, cpuMs } = await timed(() => method.run(items))
      if (verified !== items.length) throw new Error(`${method.name}: ${verified} of ${items.length} good signatures verified`)
      if (round > 0) {
        rows[i]!.perSec.push((1000 * items.length) / wallMs)
        rows[i]!.perCpuSec.push((1000 * items.length) / cpuMs)
      }
    }
  }
  return rows
}

// ---------------------------------------------------------------------------------------------
// The 100,000-leaf batch
// ---------------------------------------------------------------------------------------------

interface Timing {
  wallMs: number
  cpuMs: number
}

interface BigBatchRun {
  leaves: Timing
  tree: Timing
  /** Wall clock only: most of it is anvil's and the RPC's, not this process's CPU. */
  postMs: number
  proofs: Timing
  gas: number
}

async function bigBatch(
  contracts: Contracts,
  wallet: Wallet,
  publicClient: PublicClient,
  registry: Hex,
  attestations: readonly Attestation[],
  fromSeq: bigint,
): Promise<BigBatchRun> {
  const { result: leaves, ...leavesTiming } = await timed(() => attestations.map((a, i) => attestationLeaf(a, fromSeq + BigInt(i))))
  const { result: tree, ...treeTiming } = await timed(() => buildMerkleTree(leaves))
  const { result: gas, wallMs: postMs } = await timed(() =>
    submitBatch(contracts, wallet, publicClient, registry, tree.root, attestations.length, fromSeq),
  )
  const { result: proofs, ...proofsTiming } = await timed(() => Array.from({ length: leaves.length }, (_, i) => tree.proof(i)))

  // Not part of the timing: the posted root really proves its attestations on-chain.
  for (const i of [0, leaves.length >> 1, leaves.length - 1]) {
    const a = attestations[i]!
    const ok = await publicClient.readContract({
      address: registry,
      abi: contracts.attestationRegistryAbi,
      functionName: 'verifyLeafData',
      args: [tree.root, proofs[i]!, { ...a, seq: fromSeq + BigInt(i) }],
    })
    if (!ok) throw new Error(`verifyLeafData rejected attestation ${i} of the posted batch`)
  }
  return { leaves: leavesTiming, tree: treeTiming, postMs, proofs: proofsTiming, gas }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const require = createRequire(import.meta.url)
  const version = (pkg: string) => (require(`${pkg}/package.json`) as { version: string }).version
  console.log(`machine: ${machineLine()}`)
  console.log(`chain: anvil ${version('@foundry-rs/anvil')} (automine), solc ${version('solc')} (optimizer 200 runs, cancun), viem ${version('viem')}`)

  const loadAtStart = loadavg()[0]!
  await buildContracts()
  // Imported after the build: `contracts/generated/` is produced by it.
  const contracts: Contracts = await import('../contracts/src/index.js')
  const storeCompiled = await compileAttestationStore()

  const anvil = await startAnvil()
  // Ctrl-C or a kill still stops anvil (errors are handled by the finally below).
  const onSignal = (signal: NodeJS.Signals): void => {
    void anvil.stop().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    const account = privateKeyToAccount(ANVIL_DEV_PRIVATE_KEY)
    const transport = http(anvil.rpcUrl)
    const wallet = createWalletClient({ account, chain: foundry, transport })
    // anvil mines each transaction at once: poll for receipts often rather than viem's 4 s default.
    const publicClient = createPublicClient({ chain: foundry, transport, pollingInterval: 50 })
    const registry = (await contracts.deployAttestationRegistry(wallet, publicClient, { submitters: [account.address] })).address
    const store = await deployAttestationStore(wallet, publicClient, storeCompiled)

    const domain: AttestationDomain = { chainId: BigInt(foundry.id), verifyingContract: registry.toLowerCase() as Hex }
    const devices = benchDevices(DEVICES)
    const pool = signAll(benchAttestations('verify', VERIFY_POOL, devices), devices, domain)

    // Gas.
    const eas = await storeGas(wallet, publicClient, store, pool.slice(0, STORE_SAMPLES))
    let nextSeq = 1n
    const gasRows: GasRow[] = []
    for (const size of BATCH_SIZES) {
      const leaves = benchAttestations(`gas ${size}`, size, devices).map((a, i) => attestationLeaf(a, nextSeq + BigInt(i)))
      const perTx = await submitBatch(contracts, wallet, publicClient, registry, buildMerkleTree(leaves).root, size, nextSeq)
      gasRows.push({ label: 'submitBatch (one Merkle root)', perTx, count: size })
      nextSeq += BigInt(size)
    }

    // Verification rate.
    const batchSigned = signAllInBatches(benchAttestations('verify batched', VERIFY_POOL, devices), devices, domain, SIGNING_BATCH)
    const { methods, prepareMs } = verifyMethods(devices, domain, batchSigned)
    const verifyRows = await measureVerification(methods, pool)

    // The 100,000-leaf batch (attestations generated outside the timing: devices send them).
    const runs: BigBatchRun[] = []
    for (let run = 0; run < BIG_BATCH_RUNS; run++) {
      const attestations = benchAttestations(`batch ${run}`, BIG_BATCH, devices)
      runs.push(await bigBatch(contracts, wallet, publicClient, registry, attestations, nextSeq))
      nextSeq += BigInt(BIG_BATCH)
    }
    gasRows.push({ label: 'submitBatch (one Merkle root)', perTx: runs[0]!.gas, count: BIG_BATCH })

    printGas(eas, gasRows)
    printVerification(verifyRows, prepareMs)
    printBigBatch(runs)
    printLoad(loadAtStart, loadavg()[0]!)
  } finally {
    process.removeListener('SIGINT', onSignal)
    process.removeListener('SIGTERM', onSignal)
    await anvil.stop()
  }
}

function printGas(eas: { median: number; min: number; max: number }, rows: readonly GasRow[]): void {
  console.log('\n### Gas per attestation: Merkle batches vs one stored attestation per transaction\n')
  console.log('| path | attestations / tx | gas / tx | gas / attestation | vs EAS-style |')
  console.log('|---|---|---|---|---|')
  console.log(`| EAS-style store (AttestationStore.attest) | 1 | ${fmt(eas.median)} | ${fmt(eas.median)} | 1 |`)
  for (const row of rows) {
    const per = row.perTx / row.count
    console.log(`| ${row.label} | ${fmt(row.count)} | ${fmt(row.perTx)} | ${fmt(per, per < 10 ? 2 : per < 1_000 ? 1 : 0)} | 1/${fmt(eas.median / per)} |`)
  }
  const atTarget = rows.find((r) => r.count === TARGET_GAS_BATCH)!
  const fraction = eas.median / (atTarget.perTx / atTarget.count)
  console.log(`\n- EAS-style gas over ${STORE_SAMPLES} attestations: median ${fmt(eas.median)}, min ${fmt(eas.min)}, max ${fmt(eas.max)}`)
  console.log(`- batch ${fmt(TARGET_GAS_BATCH)}: 1/${fmt(fraction)} of the EAS-style cost per attestation (target ≤ 1/${fmt(TARGET_GAS_FRACTION)}: ${met(fraction >= TARGET_GAS_FRACTION)})`)
  recordSummary({ bench: 'attest', metric: `gas per attestation at batch ${fmt(TARGET_GAS_BATCH)} vs one stored per tx (EAS-style)`, value: `1/${fmt(fraction)}`, target: `≤ 1/${fmt(TARGET_GAS_FRACTION)}`, met: fraction >= TARGET_GAS_FRACTION })
}

function printVerification(rows: readonly VerifyRow[], prepareMs: { first: number; each: number }): void {
  console.log(`\n### Attestations verified per second, one core (${DEVICES} device keys, median of ${VERIFY_ROUNDS} rounds after a warm-up)\n`)
  console.log('| method | verified/s | min–max | per CPU-second | vs viem |')
  console.log('|---|---|---|---|---|')
  const viem = median(rows[0]!.perSec)
  for (const row of rows) {
    const m = median(row.perSec)
    console.log(`| ${row.name} | ${fmt(m)} | ${fmt(Math.min(...row.perSec))}–${fmt(Math.max(...row.perSec))} | ${fmt(median(row.perCpuSec))} | ${(m / viem).toFixed(2)}x |`)
  }
  // Found by their flags, not their positions: adding a row must not change what is reported.
  const preparedRow = rows.find((row) => row.summary === 'single')!
  const prepared = median(preparedRow.perSec)
  const batchedRow = rows.find((row) => row.summary === 'batched')
  console.log(`\n- preparePublicKey: ${fmt(prepareMs.first)} ms for the first key (includes the generator's window-10 table, once per process), ${fmt(prepareMs.each, 1)} ms per further key`)
  console.log(
    `- prepared key: ${fmt(prepared)} verified/s, ${fmt(median(preparedRow.perCpuSec))} per CPU-second ` +
      `(target ≥ ${fmt(TARGET_VERIFY_PER_SEC)}/s: ${met(prepared >= TARGET_VERIFY_PER_SEC)})`,
  )
  const batched = batchedRow ? `; ${fmt(median(batchedRow.perSec))}/s batch-signed` : ''
  recordSummary({ bench: 'attest', metric: 'attestations verified per second, one core (known device key, one signature each)', value: `${fmt(prepared)}/s (viem recovery ${fmt(viem)}/s${batched})`, target: `≥ ${fmt(TARGET_VERIFY_PER_SEC)}/s`, met: prepared >= TARGET_VERIFY_PER_SEC })
}

function printBigBatch(runs: readonly BigBatchRun[]): void {
  const col = (wall: (r: BigBatchRun) => number, cpu?: (r: BigBatchRun) => number) => {
    const values = runs.map(wall)
    const cpuMs = cpu ? fmt(median(runs.map(cpu))) : '—'
    return `${fmt(median(values))} | ${fmt(Math.min(...values))}–${fmt(Math.max(...values))} | ${cpuMs}`
  }
  const total = (r: BigBatchRun) => r.leaves.wallMs + r.tree.wallMs + r.postMs
  const treeAndPost = (r: BigBatchRun) => r.tree.wallMs + r.postMs
  console.log(`\n### A ${fmt(BIG_BATCH)}-leaf batch (median of ${runs.length} runs)\n`)
  console.log('| step | ms | min–max | CPU ms |')
  console.log('|---|---|---|---|')
  console.log(`| ${fmt(BIG_BATCH)} leaves (attestationLeaf) | ${col((r) => r.leaves.wallMs, (r) => r.leaves.cpuMs)} |`)
  console.log(`| Merkle tree (buildMerkleTree) | ${col((r) => r.tree.wallMs, (r) => r.tree.cpuMs)} |`)
  console.log(`| submitBatch + receipt (anvil) | ${col((r) => r.postMs)} |`)
  console.log(`| **built and posted** | ${col(total)} |`)
  console.log(`| all ${fmt(BIG_BATCH)} proofs (tree.proof(i)) | ${col((r) => r.proofs.wallMs, (r) => r.proofs.cpuMs)} |`)
  const t = median(runs.map(total))
  console.log(`\n- built and posted in ${fmt(t)} ms (target ≤ ${fmt(TARGET_BIG_BATCH_MS)} ms: ${met(t <= TARGET_BIG_BATCH_MS)})`)
  recordSummary({ bench: 'attest', metric: `${fmt(BIG_BATCH)}-leaf batch built and posted`, value: `${fmt(t)} ms`, target: `≤ ${fmt(TARGET_BIG_BATCH_MS)} ms`, met: t <= TARGET_BIG_BATCH_MS })
  console.log(`- without the leaves (an edge can hash each attestation's leaf as it numbers it): tree and post ${fmt(median(runs.map(treeAndPost)))} ms`)
  console.log('- proofs are made when asked for, not on the posting path')
}

/** Other load on the machine stretches every wall-clock figure; say so when there was any. */
function printLoad(atStart: number, atEnd: number): void {
  const cores = cpus().length
  const busy = Math.max(atStart, atEnd) > 1.5
  console.log(
    `\nload average (1 min) ${atStart.toFixed(2)} at start, ${atEnd.toFixed(2)} at end, ${cores} cores` +
      (busy ? ': other processes shared the CPU, so wall-clock rates understate; the CPU-time columns are the fairer figures' : '') +
      '. CPU time counts all of this process\'s threads (V8 collects garbage on helper threads), so it can exceed the wall clock.',
  )
}

await main()
