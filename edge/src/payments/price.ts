/**
 * The arithmetic of a job's price (issue 6), in integer wei: the payer pays the developer price
 * plus the provider fee; the protocol fee is taken out of the developer price (basis points,
 * rounded down), so the shares always add up to exactly what the payer pays.
 */
import type { Hex } from '@depinfer/shared'
import { BPS_DENOMINATOR, type PaymentsConfig } from './config.js'

/** Who earns what from one job; `totalWei` is what the payer is charged. */
export interface JobPrice {
  totalWei: bigint
  /** The developer's share: its price minus the protocol fee. */
  developerWei: bigint
  developerAddress: Hex | null
  providerFeeWei: bigint
  protocolFeeWei: bigint
  protocolAddress: Hex | null
}

export function priceOf(config: PaymentsConfig, developerPriceWei: bigint, developerAddress: Hex | null): JobPrice {
  const protocolFeeWei = (developerPriceWei * config.protocolFeeBps) / BPS_DENOMINATOR
  return {
    totalWei: developerPriceWei + config.providerFeeWei,
    developerWei: developerPriceWei - protocolFeeWei,
    developerAddress: developerPriceWei > 0n ? developerAddress : null,
    providerFeeWei: config.providerFeeWei,
    protocolFeeWei,
    protocolAddress: protocolFeeWei > 0n ? config.protocolFeeAddress : null,
  }
}
