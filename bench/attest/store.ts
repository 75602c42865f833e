/**
 * The EAS-style baseline of bench/attest.ts: compiles contracts/bench/AttestationStore.sol with
 * solc-js in-process (same compiler and settings as contracts/scripts/build.ts, so its gas is
 * comparable with AttestationRegistry's) and deploys it. Kept out of contracts/src so the
 * contracts build and `generated/` never see a benchmark-only contract.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { type Abi, type Account, type Address, type Chain, type Hex, parseAbi, type PublicClient, type Transport, type WalletClient } from 'viem'

const SOURCE_PATH = fileURLToPath(new URL('../../contracts/bench/AttestationStore.sol', import.meta.url))

/** As contracts/scripts/build.ts, so both contracts are compiled alike. */
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'cancun',
  outputSelection: { '*': { AttestationStore: ['abi', 'evm.bytecode.object'] } },
} as const

interface SolcOutput {
  errors?: Array<{ severity: 'error' | 'warning' | 'info'; formattedMessage?: string; message: string }>
  contracts?: Record<string, Record<string, { abi: Abi; evm: { bytecode: { object: string } } }>>
}

/**
 * The calls the bench makes, typed for viem. Deployment uses the compiled ABI; a mismatch
 * with the source would show as a failed call, not as wrong figures.
 */
export const attestationStoreAbi = parseAbi([
  'struct AttestationData { bytes32 jobId; bytes32 modelHash; bytes32 inputHash; bytes32 outputHash; address device; uint256 price; uint64 completedAt; }',
  'struct Signature { uint8 v; bytes32 r; bytes32 s; }',
  'function attest(AttestationData a, Signature signature) returns (bytes32 uid)',
  'event Attested(address indexed device, address indexed attester, bytes32 uid, bytes32 indexed schema)',
])

/** Compiles AttestationStore.sol (it has no imports); throws with solc's messages on errors. */
export async function compileAttestationStore(): Promise<{ abi: Abi; bytecode: Hex }> {
  // Loaded on demand, as build.ts does: soljson takes a second or so to load.
  const { default: solc } = await import('solc')
  const input = {
    language: 'Solidity',
    sources: { 'bench/AttestationStore.sol': { content: readFileSync(SOURCE_PATH, 'utf8') } },
    settings: SETTINGS,
  }
  const refuseImports = (path: string) => ({ error: `AttestationStore.sol imports nothing, asked for ${path}` })
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: refuseImports })) as SolcOutput
  const errors = (output.errors ?? []).filter((e) => e.severity === 'error')
  if (errors.length > 0) throw new Error(`solc failed:\n${errors.map((e) => e.formattedMessage ?? e.message).join('\n')}`)
  const contract = output.contracts?.['bench/AttestationStore.sol']?.['AttestationStore']
  if (!contract) throw new Error('solc produced no AttestationStore')
  return { abi: contract.abi, bytecode: `0x${contract.evm.bytecode.object}` }
}

export async function deployAttestationStore(
  walletClient: WalletClient<Transport, Chain | undefined, Account>,
  publicClient: PublicClient,
  compiled: { abi: Abi; bytecode: Hex },
): Promise<Address> {
  const hash = await walletClient.deployContract({ ...compiled, account: walletClient.account, chain: walletClient.chain })
  const receipt = await publicClient.waitForTransactionReceipt({ hash })
  if (receipt.status !== 'success' || !receipt.contractAddress) throw new Error(`AttestationStore deployment failed (tx ${hash})`)
  return receipt.contractAddress
}
