/**
 * Ethereum addresses typed by people (payout addresses, payers): 0x and 40 hex digits, and when
 * the letters are mixed-case, the EIP-55 checksum they spell must hold. A mixed-case address is
 * a checksummed one (wallets and explorers show them so), and the checksum is there to catch
 * exactly the typo that would send money to an address nobody holds; all-lower or all-upper
 * case carries no checksum and is taken as written.
 */
import { keccak256 } from './keccak.js'

/** 0x and 40 hex digits, any case (the format alone: see addressProblem for the checksum). */
export const ADDRESS_PATTERN = /^0x[0-9a-fA-F]{40}$/

/** Whether `text` has an address's format (0x and 40 hex digits, any case; no checksum check). */
export const isAddress = (text: string): boolean => ADDRESS_PATTERN.test(text)

/** Why `text` is not an address a person meant, or undefined when it is one. */
export function addressProblem(text: string): string | undefined {
  if (!isAddress(text)) return 'must be an Ethereum address (0x and 40 hex digits)'
  const hex = text.slice(2)
  if (hex === hex.toLowerCase() || hex === hex.toUpperCase()) return undefined
  if (checksumAddress(text) !== text) return 'has mixed-case letters whose EIP-55 checksum does not match: a typo? (write it as your wallet shows it, or all lower-case)'
  return undefined
}

/** The EIP-55 form of an address (0x and 40 hex digits, any case). */
export function checksumAddress(address: string): string {
  const hex = address.slice(2).toLowerCase()
  const hash = keccak256(new TextEncoder().encode(hex))
  let out = '0x'
  for (let i = 0; i < 40; i++) {
    // Each hex digit of the hash (high nibble first) upper-cases the letter at its position when ≥ 8.
    const nibble = (hash[i >> 1]! >> (i % 2 === 0 ? 4 : 0)) & 0xf
    out += nibble >= 8 ? hex[i]!.toUpperCase() : hex[i]!
  }
  return out
}
