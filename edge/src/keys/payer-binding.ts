/**
 * The payer's consent to an API key being tied to it (POST /api/keys with another `payer`).
 *
 * A key charges its priced jobs to its payer's Escrow balance, so only the payer may tie a key
 * to itself. The client makes the key (24 random bytes) and sends only its SHA-256; the payer
 * signs, with EIP-191 `personal_sign`, the message
 *
 *     depinfer: tie API key <key hash> to payer <payer> on chain <chain id>, Escrow <escrow>.
 *     The key gets full use of the payer's account: its priced jobs spend the payer's Escrow
 *     balance, and it can make and revoke the account's keys.
 *
 * (key hash: 64 lowercase hex digits; addresses: 0x and 40 lowercase hex digits.) The signature
 * names that one key, so it cannot tie any other key; a key hash is stored once (api_keys.key_hash
 * is the primary key, and revoked rows stay), so it cannot tie it again either; and it names the
 * chain and Escrow, so it means nothing to an edge that charges another Escrow (a staging edge's
 * signature replayed on production). The second sentence is there because that is what the key
 * gets: the payer should read it before signing. Whoever sees a signature (the edge, a log)
 * learns only a key's hash, usable only by the client that made the key. Nothing here reads the
 * chain: the signer must be the payer's own key (an EOA); contract wallets (ERC-1271) are not
 * supported.
 *
 * Pure module (viem, no Worker APIs): the edge route, `npm run key:create` and the tests use it.
 */
import { isAddress } from '@depinfer/shared'
import { recoverMessageAddress, type Hex } from 'viem'

export const KEY_HASH_PATTERN = /^[0-9a-f]{64}$/
/** 65 bytes r ‖ s ‖ v, as personal_sign returns it. */
export const SIGNATURE_PATTERN = /^0x[0-9a-fA-F]{130}$/

/** Which Escrow a binding is for: an edge's payments settings (GET /api/chain tells clients). */
export interface PayerBindingDomain {
  chainId: number
  escrow: string
}

/** What the payer signs to tie the key whose SHA-256 is `keyHash` to itself, on `domain`'s Escrow. */
export function payerBindingMessage(keyHash: string, payer: string, domain: PayerBindingDomain): string {
  if (!KEY_HASH_PATTERN.test(keyHash)) throw new Error(`key hash must be 64 lowercase hex digits, got ${JSON.stringify(keyHash.slice(0, 80))}`)
  if (!isAddress(payer)) throw new Error(`payer must be an address, got ${JSON.stringify(payer.slice(0, 80))}`)
  if (!isAddress(domain.escrow)) throw new Error(`escrow must be an address, got ${JSON.stringify(domain.escrow.slice(0, 80))}`)
  return (
    `depinfer: tie API key ${keyHash} to payer ${payer.toLowerCase()} on chain ${domain.chainId}, Escrow ${domain.escrow.toLowerCase()}.\n` +
    "The key gets full use of the payer's account: its priced jobs spend the payer's Escrow balance, and it can make and revoke the account's keys."
  )
}

/**
 * The address (lowercase) that signed the binding of `keyHash` to `payer`, or undefined when the
 * signature is not a recoverable secp256k1 signature at all. The caller compares it to `payer`.
 */
export async function payerBindingSigner(keyHash: string, payer: string, domain: PayerBindingDomain, signature: string): Promise<Hex | undefined> {
  if (!SIGNATURE_PATTERN.test(signature)) return undefined
  try {
    const signer = await recoverMessageAddress({ message: payerBindingMessage(keyHash, payer, domain), signature: signature as Hex })
    return signer.toLowerCase() as Hex
  } catch {
    return undefined
  }
}
