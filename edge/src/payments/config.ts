/**
 * The edge's payment settings (env only). Payments are on when ESCROW_ADDRESS is set; then the
 * chain must be configured too (balances are read from it), and every fee setting must be valid:
 * a typo in a fee must stop jobs loudly (all of them: a price includes the provider fee, so not
 * even which jobs are free is known), not charge a wrong amount.
 */
import { addressProblem, type Hex } from '@depinfer/shared'
import { PaymentsMisconfiguredError } from '../errors/payment.js'
import { WEI_PATTERN } from './wei.js'

export const BPS_DENOMINATOR = 10_000n

export interface PaymentsConfig {
  escrow: Hex
  chainId: number
  /** Where the edge reads balances and sends settlements (the private RPC when configured). */
  rpcUrl: string
  providerFeeWei: bigint
  protocolFeeBps: bigint
  /** Null only when protocolFeeBps is 0. */
  protocolFeeAddress: Hex | null
  providerRegistry: Hex | null
}

/** The env vars payments read (a subset of Env, as wrangler.toml documents them). */
export interface PaymentVars {
  CHAIN_ID: string
  CHAIN_RPC_URL: string
  CHAIN_SUBMIT_RPC_URL?: string
  ESCROW_ADDRESS?: string
  PROVIDER_FEE_WEI?: string
  PROTOCOL_FEE_BPS?: string
  PROTOCOL_FEE_ADDRESS?: string
  PROVIDER_REGISTRY_ADDRESS?: string
}

export type PaymentsSetting = { enabled: true; config: PaymentsConfig } | { enabled: false; reason: string }

/** The settings, `enabled: false` when no escrow is configured; throws PaymentsMisconfiguredError. */
export function paymentsSetting(env: PaymentVars): PaymentsSetting {
  const escrow = env.ESCROW_ADDRESS ?? ''
  if (escrow === '') return { enabled: false, reason: 'no ESCROW_ADDRESS configured' }
  const invalid = (detail: string) => new PaymentsMisconfiguredError(`${detail} (see README "Payments")`)
  const checkAddress = (name: string, value: string) => {
    const problem = addressProblem(value)
    if (problem !== undefined) throw invalid(`${name} ${problem}, got ${JSON.stringify(value.slice(0, 60))}`)
  }
  // A checksum typo here would have the CLI deposit to (and the edge read balances of) no contract.
  checkAddress('ESCROW_ADDRESS', escrow)
  const chainId = Number(env.CHAIN_ID)
  if (!Number.isSafeInteger(chainId) || chainId <= 0) throw invalid('ESCROW_ADDRESS is set but CHAIN_ID is not')
  const rpcUrl = env.CHAIN_SUBMIT_RPC_URL || env.CHAIN_RPC_URL
  if (!rpcUrl) throw invalid('ESCROW_ADDRESS is set but CHAIN_RPC_URL is not')
  const providerFee = env.PROVIDER_FEE_WEI || '0'
  if (!WEI_PATTERN.test(providerFee) || BigInt(providerFee) >= 2n ** 256n) {
    throw invalid(`PROVIDER_FEE_WEI must be a decimal number of wei, got ${JSON.stringify(providerFee.slice(0, 80))}`)
  }
  const bps = env.PROTOCOL_FEE_BPS || '0'
  if (!/^[0-9]{1,5}$/.test(bps) || BigInt(bps) > BPS_DENOMINATOR) {
    throw invalid(`PROTOCOL_FEE_BPS must be an integer from 0 to 10000, got ${JSON.stringify(bps.slice(0, 20))}`)
  }
  const protocolAddress = env.PROTOCOL_FEE_ADDRESS || ''
  if (protocolAddress !== '') checkAddress('PROTOCOL_FEE_ADDRESS', protocolAddress)
  if (BigInt(bps) > 0n && protocolAddress === '') throw invalid('PROTOCOL_FEE_BPS is above 0 but PROTOCOL_FEE_ADDRESS is not set')
  const registry = env.PROVIDER_REGISTRY_ADDRESS || ''
  if (registry !== '') checkAddress('PROVIDER_REGISTRY_ADDRESS', registry)
  return {
    enabled: true,
    config: {
      escrow: escrow.toLowerCase() as Hex,
      chainId,
      rpcUrl,
      providerFeeWei: BigInt(providerFee),
      protocolFeeBps: BigInt(bps),
      protocolFeeAddress: protocolAddress === '' ? null : (protocolAddress.toLowerCase() as Hex),
      providerRegistry: registry === '' ? null : (registry.toLowerCase() as Hex),
    },
  }
}
