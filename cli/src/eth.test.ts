/** ETH amounts and addresses as the chain commands read them: exact to the wei, refused in one line naming the option. */
import { describe, expect, it } from 'vitest'
import { CliError } from './errors.js'
import { eth, parseAddress, parseEthAmount, weiAndEth, whenAvailable } from './eth.js'

describe('parseEthAmount', () => {
  it.each([
    ['0.1', 10n ** 17n],
    ['1', 10n ** 18n],
    ['.5', 5n * 10n ** 17n],
    ['0.000000000000000001', 1n],
    ['12.345678901234567891', 12_345_678_901_234_567_891n],
  ])('reads %s ETH exactly', (text, wei) => {
    expect(parseEthAmount(text, '--stake')).toBe(wei)
  })

  it.each(['0', '0.0', '-1', '1.', '1e18', '0x10', '01', '0.0000000000000000001', '', ' 1', '1 ETH'])('refuses %j with exit 2 naming the option', (text) => {
    const error = (() => {
      try {
        parseEthAmount(text, '--stake')
      } catch (e) {
        return e
      }
    })()
    expect(error).toBeInstanceOf(CliError)
    expect((error as CliError).exitCode).toBe(2)
    expect((error as CliError).message).toMatch(/^--stake must be an amount of ETH above 0, in decimal ether \(e\.g\. 0\.1\), got /)
  })
})

describe('parseAddress', () => {
  it('checksums an address in any case', () => {
    expect(parseAddress('0xa0ee7a142d267c1f36714e4a8f75612f20a79720', '--account')).toBe('0xa0Ee7A142d267C1f36714E4a8F75612F20a79720')
  })
  it('refuses anything else with exit 2', () => {
    expect(() => parseAddress('0x12', '--account')).toThrow(/^--account must be an Ethereum address \(0x and 40 hex digits\), got "0x12"$/)
  })
})

describe('formatting', () => {
  it('prints wei and ether exactly', () => {
    expect(eth(25n * 10n ** 16n)).toBe('0.25 ETH')
    expect(weiAndEth(21_003n)).toBe('21003 wei (0.000000000000021003 ETH)')
  })
  it('says when a delay ends, by the chain clock', () => {
    expect(whenAvailable(86_400n, 0n)).toBe('1970-01-02T00:00:00Z (in 24 h 0 min, by the chain\'s clock)')
    expect(whenAvailable(90n, 0n)).toBe('1970-01-01T00:01:30Z (in 2 min, by the chain\'s clock)')
    expect(whenAvailable(5n, 10n)).toBe('1970-01-01T00:00:05Z (now)')
  })
})
