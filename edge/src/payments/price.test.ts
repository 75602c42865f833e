import { describe, expect, it } from 'vitest'
import { PaymentsMisconfiguredError } from '../errors/payment.js'
import { paymentsSetting, type PaymentsConfig, type PaymentVars } from './config.js'
import { priceOf } from './price.js'
import { MAX_RESERVABLE_WEI, splitWei } from './wei.js'

const DEV = '0x00000000000000000000000000000000000000d1'
const PROTOCOL = '0x00000000000000000000000000000000000000f1'
const ESCROW = '0x00000000000000000000000000000000000000e1'

const config = (providerFeeWei: bigint, protocolFeeBps: bigint): PaymentsConfig => ({
  escrow: ESCROW,
  chainId: 31337,
  rpcUrl: 'http://127.0.0.1:8545',
  providerFeeWei,
  protocolFeeBps,
  protocolFeeAddress: PROTOCOL,
  providerRegistry: null,
})

const env = (vars: Partial<PaymentVars>): PaymentVars => ({ CHAIN_ID: '31337', CHAIN_RPC_URL: 'http://127.0.0.1:8545', ...vars })

describe('job prices', () => {
  it('charges developer price + provider fee; the protocol fee comes out of the developer price, rounded down', () => {
    const price = priceOf(config(7_000n, 250n), 1_000_003n, DEV)
    expect(price).toEqual({
      totalWei: 1_007_003n,
      developerWei: 975_003n,
      developerAddress: DEV,
      providerFeeWei: 7_000n,
      protocolFeeWei: 25_000n,
      protocolAddress: PROTOCOL,
    })
    // Every wei of the price goes to exactly one earner.
    expect(price.developerWei + price.providerFeeWei + price.protocolFeeWei).toBe(price.totalWei)
  })

  it('prices an unpublished model at the provider fee alone, with no developer or protocol share', () => {
    expect(priceOf(config(7_000n, 250n), 0n, null)).toMatchObject({ totalWei: 7_000n, developerWei: 0n, developerAddress: null, protocolFeeWei: 0n, protocolAddress: null })
  })

  it('is exact for uint256-sized prices', () => {
    const huge = 2n ** 200n + 12_345n
    const price = priceOf(config(1n, 10_000n), huge, DEV)
    expect(price).toMatchObject({ totalWei: huge + 1n, developerWei: 0n, protocolFeeWei: huge })
  })
})

describe('payment settings', () => {
  it('are off without an escrow, whatever the fees', () => {
    expect(paymentsSetting(env({ PROVIDER_FEE_WEI: '5' }))).toEqual({ enabled: false, reason: 'no ESCROW_ADDRESS configured' })
  })

  it.each<[string, Partial<PaymentVars>]>([
    ['a malformed fee', { PROVIDER_FEE_WEI: '1e18' }],
    ['a protocol share above 100 %', { PROTOCOL_FEE_BPS: '10001' }],
    ['a protocol fee without an address', { PROTOCOL_FEE_BPS: '100' }],
    ['no chain', { CHAIN_ID: '' }],
    // anvil's account #3 as a wallet shows it, one digit mistyped: its EIP-55 checksum fails.
    ['a protocol fee address with a typo', { PROTOCOL_FEE_BPS: '100', PROTOCOL_FEE_ADDRESS: '0x90F79bf6EB2c4f870365E785982E1f101E93b907' }],
    ['a provider registry address with a typo', { PROVIDER_REGISTRY_ADDRESS: '0x90F79bf6EB2c4f870365E785982E1f101E93b907' }],
    ['an escrow address with a typo', { ESCROW_ADDRESS: '0x90F79bf6EB2c4f870365E785982E1f101E93b907' }],
  ])('refuse %s loudly rather than charge a wrong amount', (_case, vars) => {
    expect(() => paymentsSetting(env({ ESCROW_ADDRESS: ESCROW, ...vars }))).toThrow(PaymentsMisconfiguredError)
  })
})

describe('wei split for SQL sums', () => {
  it('splits into whole gwei and the wei below', () => {
    expect(splitWei(1_500_000_000_000_000_001n)).toEqual({ gwei: 1_500_000_000, rem: 1 })
    expect(splitWei(MAX_RESERVABLE_WEI)).toEqual({ gwei: Number.MAX_SAFE_INTEGER, rem: 999_999_999 })
    expect(() => splitWei(MAX_RESERVABLE_WEI + 1n)).toThrow(RangeError)
  })
})
