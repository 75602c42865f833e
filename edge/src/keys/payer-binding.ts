/**
 * The payer's consent to an API key being tied to it (POST /api/keys with another `payer`).
 *
 * A key charges its priced jobs to its payer's Escrow balance, so only the payer may tie a key
 * to itself. The client makes the key (32 random bytes) and sends only its SHA-256; the payer
 * signs, with EIP-191 `personal_sign`, the message
 *
 *     depinfer: tie API key <key hash> to payer <payer>
 *
 * (key hash: 64 lowercase hex digits; payer: 0x and 40 lowercase hex digits). The signature
 * names that one key, so it cannot tie any other key; and a key hash is stored once
 * (api_keys.key_hash is the primary key, and revoked rows stay), so the same signature cannot
 * tie it again either. Whoever sees a signature (the edge, a log) learns only a key's hash: a
 * replay of the very same request adds nothing, and the key it ties is usable only by the
 * client that made it. Nothing here reads the chain: the signer must be the payer's own key
 * (an EOA); contract wallets (ERC-1271) are not supported.
 *
 * Pure module (viem, no Worker APIs): the edge route, `npm run key:create` and the tests use it.
 */
import { recoverMessageAddress, type Hex } from 'viem'

export const KEY_HASH_PATTERN = /^[0-9a-f]{64}$/
export const ADDRESS_PATTERN = /^0x[0-9a-fA-F]{40}$/
/** 65 bytes r ‖ s ‖ v, as personal_sign returns it. */
export const SIGNATURE_PATTERN = /^0x[0-9a-fA-F]{130}$/

/** What the payer signs to tie the key whose SHA-256 is `keyHash` to itself. */
export function payerBindingMessage(keyHash: string, payer: string): string {
  if (!KEY_HASH_PATTERN.test(keyHash)) throw new Error(`key hash must be 64 lowercase hex digits, got ${JSON.stringify(keyHash.slice(0, 80))}`)
  if (!ADDRESS_PATTERN.test(payer)) throw new Error(`payer must be an address, got ${JSON.stringify(payer.slice(0, 80))}`)
  return `depinfer: tie API key ${keyHash} to payer ${payer.toLowerCase()}`
}

/**
 * The address (lowercase) that signed the binding of `keyHash` to `payer`, or undefined when the
 * signature is not a recoverable secp256k1 signature at all. The caller compares it to `payer`.
 */
export async function payerBindingSigner(keyHash: string, payer: string, signature: string): Promise<Hex | undefined> {
  if (!SIGNATURE_PATTERN.test(signature)) return undefined
  try {
    const signer = await recoverMessageAddress({ message: payerBindingMessage(keyHash, payer), signature: signature as Hex })
    return signer.toLowerCase() as Hex
  } catch {
    return undefined
  }
}
