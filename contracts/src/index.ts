import type { Account, Address, Chain, Hash, PublicClient, TransactionReceipt, Transport, WalletClient } from 'viem'
import { attestationRegistryAbi, attestationRegistryBytecode } from '../generated/AttestationRegistry.ts'
import { escrowAbi, escrowBytecode } from '../generated/Escrow.ts'
import { providerRegistryAbi, providerRegistryBytecode } from '../generated/ProviderRegistry.ts'

// `generated/` is produced by `npm run build -w contracts` (contracts/scripts/build.ts).
export * from '../generated/index.ts'
export * from './payouts.ts'

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

/** The outcome of a deployment (same shape as DeployedAttestationRegistry). */
export interface DeployedContract {
  address: Address
  transactionHash: Hash
  receipt: TransactionReceipt
}

async function deployed(name: string, publicClient: PublicClient, transactionHash: Hash): Promise<DeployedContract> {
  const receipt = await publicClient.waitForTransactionReceipt({ hash: transactionHash })
  if (receipt.status !== 'success' || !receipt.contractAddress) {
    throw new Error(`${name} deployment failed (tx ${transactionHash}, status ${receipt.status})`)
  }
  return { address: receipt.contractAddress, transactionHash, receipt }
}

export interface DeployEscrowOptions {
  /** The AttestationRegistry whose posted batches are settled. */
  attestationRegistry: Address
  /** Accounts granted SETTLER_ROLE at construction (the edge's settler). */
  settlers: readonly Address[]
  /**
   * Seconds between `requestWithdrawal` and `withdraw`: longer than the edge's settlement
   * interval plus its longest job, so reserved funds cannot leave before they are settled.
   */
  withdrawalDelaySeconds: bigint
  /** Receives DEFAULT_ADMIN_ROLE (manages settlers); defaults to the deploying account. */
  admin?: Address
}

/** Deploys Escrow from `walletClient`'s account and waits for the receipt. */
export async function deployEscrow(
  walletClient: WalletClient<Transport, Chain | undefined, Account>,
  publicClient: PublicClient,
  { attestationRegistry, settlers, withdrawalDelaySeconds, admin }: DeployEscrowOptions,
): Promise<DeployedContract> {
  const transactionHash = await walletClient.deployContract({
    abi: escrowAbi,
    bytecode: escrowBytecode,
    args: [admin ?? walletClient.account.address, settlers, attestationRegistry, withdrawalDelaySeconds],
    account: walletClient.account,
    chain: walletClient.chain,
  })
  return deployed('Escrow', publicClient, transactionHash)
}

export interface DeployProviderRegistryOptions {
  /** Stake (wei) a provider needs for its devices to be active; must be positive. */
  minStake: bigint
  /** Seconds between `requestUnstake` and `unstake` (the window for slashing recent jobs). */
  unstakeDelaySeconds: bigint
  /** Accounts granted SLASHER_ROLE at construction. */
  slashers?: readonly Address[]
  /** Receives DEFAULT_ADMIN_ROLE (manages slashers); defaults to the deploying account. */
  admin?: Address
}

/** Deploys ProviderRegistry from `walletClient`'s account and waits for the receipt. */
export async function deployProviderRegistry(
  walletClient: WalletClient<Transport, Chain | undefined, Account>,
  publicClient: PublicClient,
  { minStake, unstakeDelaySeconds, slashers = [], admin }: DeployProviderRegistryOptions,
): Promise<DeployedContract> {
  const transactionHash = await walletClient.deployContract({
    abi: providerRegistryAbi,
    bytecode: providerRegistryBytecode,
    args: [admin ?? walletClient.account.address, minStake, unstakeDelaySeconds, slashers],
    account: walletClient.account,
    chain: walletClient.chain,
  })
  return deployed('ProviderRegistry', publicClient, transactionHash)
}

export interface DeployNetworkOptions {
  /**
   * The edge's chain account (its SUBMITTER_PRIVATE_KEY): posts attestation batches
   * (SUBMITTER_ROLE) and settles each batch's jobs in the Escrow (SETTLER_ROLE).
   */
  submitter: Address
  /** Receives DEFAULT_ADMIN_ROLE on every contract; defaults to the deploying account. */
  admin?: Address
  /** Also deploy Escrow and ProviderRegistry (README "Payments", "Providers"); else the registry alone. */
  payments?: DeployPaymentsOptions
}

export interface DeployPaymentsOptions {
  /** Escrow's delay between a withdrawal's request and its payment (see DeployEscrowOptions). */
  withdrawalDelaySeconds: bigint
  minStake: bigint
  unstakeDelaySeconds: bigint
  slashers?: readonly Address[]
}

export interface DeployedNetwork {
  registry: DeployedContract
  escrow?: DeployedContract
  providerRegistry?: DeployedContract
}

/**
 * Deploys what an edge needs on its chain, wired together: the AttestationRegistry with
 * `submitter` as its submitter, and with `payments`, an Escrow settling against that registry
 * with `submitter` as its settler, and a ProviderRegistry. One at a time: they come from one
 * account, whose transactions sent at once could be given the same nonce.
 */
export async function deployNetworkContracts(
  walletClient: WalletClient<Transport, Chain | undefined, Account>,
  publicClient: PublicClient,
  options: DeployNetworkOptions & { payments: DeployPaymentsOptions },
  onDeployed?: (name: string, contract: DeployedContract) => void,
): Promise<Required<DeployedNetwork>>
export async function deployNetworkContracts(
  walletClient: WalletClient<Transport, Chain | undefined, Account>,
  publicClient: PublicClient,
  options: DeployNetworkOptions,
  onDeployed?: (name: string, contract: DeployedContract) => void,
): Promise<DeployedNetwork>
export async function deployNetworkContracts(
  walletClient: WalletClient<Transport, Chain | undefined, Account>,
  publicClient: PublicClient,
  { submitter, admin, payments }: DeployNetworkOptions,
  onDeployed: (name: string, contract: DeployedContract) => void = () => {},
): Promise<DeployedNetwork> {
  const registry = await deployAttestationRegistry(walletClient, publicClient, { submitters: [submitter], ...(admin && { admin }) })
  onDeployed('AttestationRegistry', registry)
  if (!payments) return { registry }
  const escrow = await deployEscrow(walletClient, publicClient, {
    attestationRegistry: registry.address,
    settlers: [submitter],
    withdrawalDelaySeconds: payments.withdrawalDelaySeconds,
    ...(admin && { admin }),
  })
  onDeployed('Escrow', escrow)
  const providerRegistry = await deployProviderRegistry(walletClient, publicClient, {
    minStake: payments.minStake,
    unstakeDelaySeconds: payments.unstakeDelaySeconds,
    ...(payments.slashers && { slashers: payments.slashers }),
    ...(admin && { admin }),
  })
  onDeployed('ProviderRegistry', providerRegistry)
  return { registry, escrow, providerRegistry }
}

/** EIP-712 types of a device's consent to registration (viem `types` form). */
export const DEVICE_REGISTRATION_TYPES = {
  DeviceRegistration: [
    { name: 'provider', type: 'address' },
    { name: 'device', type: 'address' },
    { name: 'nonce', type: 'uint256' },
  ],
} as const

/**
 * The typed data a device key signs (viem `signTypedData`) so that `provider` may call
 * `ProviderRegistry.registerDevice(device, signature)`; `nonce` is the registry's
 * `nonces(device)`.
 */
export function deviceRegistrationTypedData(
  domain: { chainId: number | bigint; registry: Address },
  message: { provider: Address; device: Address; nonce: bigint },
) {
  return {
    domain: { name: 'depinfer', version: '1', chainId: BigInt(domain.chainId), verifyingContract: domain.registry },
    types: DEVICE_REGISTRATION_TYPES,
    primaryType: 'DeviceRegistration' as const,
    message,
  }
}
