import type { Account, Address, Chain, Hash, PublicClient, TransactionReceipt, Transport, WalletClient } from 'viem'
import { attestationRegistryAbi, attestationRegistryBytecode } from '../generated/AttestationRegistry.ts'

// `generated/` is produced by `npm run build -w contracts` (contracts/scripts/build.ts).
export * from '../generated/index.ts'

export interface DeployAttestationRegistryOptions {
  /** Accounts granted SUBMITTER_ROLE at construction. */
  submitters: readonly Address[]
  /** Receives DEFAULT_ADMIN_ROLE (manages submitters); defaults to the deploying account. */
  admin?: Address
}

export interface DeployedAttestationRegistry {
  address: Address
  transactionHash: Hash
  receipt: TransactionReceipt
}

/** Deploys AttestationRegistry from `walletClient`'s account and waits for the receipt. */
export async function deployAttestationRegistry(
  walletClient: WalletClient<Transport, Chain | undefined, Account>,
  publicClient: PublicClient,
  { submitters, admin }: DeployAttestationRegistryOptions,
): Promise<DeployedAttestationRegistry> {
  const transactionHash = await walletClient.deployContract({
    abi: attestationRegistryAbi,
    bytecode: attestationRegistryBytecode,
    args: [admin ?? walletClient.account.address, submitters],
    account: walletClient.account,
    chain: walletClient.chain,
  })
  const receipt = await publicClient.waitForTransactionReceipt({ hash: transactionHash })
  if (receipt.status !== 'success' || !receipt.contractAddress) {
    throw new Error(`AttestationRegistry deployment failed (tx ${transactionHash}, status ${receipt.status})`)
  }
  return { address: receipt.contractAddress, transactionHash, receipt }
}
