import { getAddress } from 'viem'
import { describe, expect, it } from 'vitest'
import { addressProblem, checksumAddress } from './address.js'

// EIP-55's own examples (eips.ethereum.org/EIPS/eip-55), all mixed-case.
const EIP55_EXAMPLES = [
  '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed',
  '0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359',
  '0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB',
  '0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb',
]

describe('addresses people type', () => {
  it("checksums as EIP-55's examples and viem do", () => {
    for (const address of EIP55_EXAMPLES) {
      expect(checksumAddress(address.toLowerCase())).toBe(address)
      expect(addressProblem(address)).toBeUndefined()
    }
    for (let i = 0; i < 50; i++) {
      const lower = `0x${Array.from({ length: 40 }, (_, j) => ((i * 7 + j * 13) % 16).toString(16)).join('')}`
      expect(checksumAddress(lower)).toBe(getAddress(lower))
    }
  })

  it('refuses a mixed-case address whose checksum does not hold: one digit mistyped', () => {
    // anvil's account #3 with its last digit changed (7 → 9), as a user might mistype it.
    expect(addressProblem('0x90F79bf6EB2c4f870365E785982E1f101E93b906')).toBeUndefined()
    expect(addressProblem('0x90F79bf6EB2c4f870365E785982E1f101E93b909')).toMatch(/EIP-55 checksum does not match/)
    // Case alone changed: also a different checksum.
    expect(addressProblem('0x90f79bf6EB2c4f870365E785982E1f101E93b906')).toMatch(/EIP-55/)
  })

  it('takes all-lower or all-upper case as written (no checksum to check), and refuses what is no address', () => {
    expect(addressProblem('0x90f79bf6eb2c4f870365e785982e1f101e93b909')).toBeUndefined()
    expect(addressProblem('0x90F79BF6EB2C4F870365E785982E1F101E93B909')).toBeUndefined()
    for (const bad of ['', '0x12', '90f79bf6eb2c4f870365e785982e1f101e93b906', '0x90f79bf6eb2c4f870365e785982e1f101e93b90g', '0x90f79bf6eb2c4f870365e785982e1f101e93b9066']) {
      expect(addressProblem(bad), bad).toMatch(/0x and 40 hex digits/)
    }
  })
})
