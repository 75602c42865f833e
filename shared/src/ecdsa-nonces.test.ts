import { SimpleMerkleTree } from '@openzeppelin/merkle-tree'
import { hashStruct, recoverAddress, recoverTypedDataAddress, toHex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import { attestationBatchTypedData, attestationTypedData, signAttestations, type Attestation, type AttestationDomain, type Hex } from './attestation.js'
import { EcdsaNonces, signDigestWithNonce } from './ecdsa-nonces.js'
import { seededRandom } from './seeded-random.js'

// Checked with viem's recovery (its own signature parsing and v handling), never with this code.
const ANVIL_KEY = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80'
const ANVIL_ADDRESS = privateKeyToAccount(ANVIL_KEY).address
const privateKey = Uint8Array.from(Buffer.from(ANVIL_KEY.slice(2), 'hex'))
/** secp256k1's group order, from SEC 2. */
const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
const DOMAIN: AttestationDomain = { chainId: 31337n, verifyingContract: '0x5fbdb2315678afecb367f032d93f642f64180aa3' }

const random = seededRandom(7)
const randomBytes = (length: number) => Uint8Array.from({ length }, () => Math.floor(random() * 256))
const parts = (signature: Uint8Array) => ({
  r: BigInt(toHex(signature.subarray(0, 32))),
  s: BigInt(toHex(signature.subarray(32, 64))),
  v: signature[64]!,
})

describe('signDigestWithNonce', () => {
  it('makes low-s signatures that viem recovers to the signing key, with a fresh r every time', async () => {
    const nonces = new EcdsaNonces(8)
    nonces.refill()
    const rs = new Set<bigint>()
    const vs = new Set<number>()
    // 64 signatures: each of the four (parity, s flipped) cases comes up with near certainty.
    for (let i = 0; i < 64; i++) {
      const digest = randomBytes(32)
      const signature = signDigestWithNonce(privateKey, digest, nonces)
      const { r, s, v } = parts(signature)
      expect(s > 0n && s <= N / 2n).toBe(true)
      expect([27, 28]).toContain(v)
      rs.add(r)
      vs.add(v)
      expect(await recoverAddress({ hash: toHex(digest), signature: toHex(signature) })).toBe(ANVIL_ADDRESS)
    }
    expect(rs.size).toBe(64)
    expect(vs).toEqual(new Set([27, 28]))
  })

  it('signs a digest at or above the group order (reduced mod n, as ecrecover reduces it)', async () => {
    const nonces = new EcdsaNonces(1)
    for (const digest of [new Uint8Array(32).fill(0xff), Uint8Array.from(Buffer.from(N.toString(16), 'hex'))]) {
      const signature = signDigestWithNonce(privateKey, digest, nonces)
      expect(await recoverAddress({ hash: toHex(digest), signature: toHex(signature) })).toBe(ANVIL_ADDRESS)
    }
  })

  it('refuses a digest or a key that is not 32 bytes, and a key that is not a scalar', () => {
    const nonces = new EcdsaNonces(1)
    expect(() => signDigestWithNonce(privateKey, new Uint8Array(31), nonces)).toThrow(RangeError)
    expect(() => signDigestWithNonce(new Uint8Array(32), new Uint8Array(32), nonces)).toThrow(RangeError)
    expect(() => signDigestWithNonce(Uint8Array.from(Buffer.from(N.toString(16), 'hex')), new Uint8Array(32), nonces)).toThrow(RangeError)
    expect(() => signDigestWithNonce(privateKey.subarray(1), new Uint8Array(32), nonces)).toThrow(RangeError)
  })
})

describe('EcdsaNonces', () => {
  it('fills up to its capacity, hands each nonce out once, and makes one on the spot when empty', async () => {
    const nonces = new EcdsaNonces(3)
    expect(nonces.refill(2)).toBe(2)
    expect(nonces.refill()).toBe(1)
    expect(nonces.refill()).toBe(0)
    expect(nonces.size).toBe(3)
    const digest = randomBytes(32)
    // The same digest signed five times, past the pool's three: five different signatures.
    const signatures = Array.from({ length: 5 }, () => signDigestWithNonce(privateKey, digest, nonces))
    expect(nonces.size).toBe(0)
    expect(new Set(signatures.map((s) => parts(s).r)).size).toBe(5)
    for (const signature of signatures) {
      expect(await recoverAddress({ hash: toHex(digest), signature: toHex(signature) })).toBe(ANVIL_ADDRESS)
    }
  })

  it('refuses a capacity that is not a positive integer', () => {
    expect(() => new EcdsaNonces(0)).toThrow(RangeError)
    expect(() => new EcdsaNonces(1.5)).toThrow(RangeError)
  })
})

describe('attestations signed with pooled nonces', () => {
  const hex32 = () => toHex(randomBytes(32)) as Hex
  const attestation = (): Attestation => ({
    jobId: hex32(),
    modelHash: hex32(),
    inputHash: hex32(),
    outputHash: hex32(),
    device: ANVIL_ADDRESS.toLowerCase() as Hex,
    price: 10n ** 15n,
    completedAt: 1_750_000_000_000n,
  })

  it('recover, alone and in a batch, to the device as viem reads EIP-712', async () => {
    const nonces = new EcdsaNonces(4)
    const single = attestation()
    const [signature] = signAttestations(privateKey, DOMAIN, [single], nonces)
    expect(signature).toMatch(/^0x[0-9a-f]{130}$/)
    expect(await recoverTypedDataAddress({ ...attestationTypedData(DOMAIN, single), signature: signature! })).toBe(ANVIL_ADDRESS)

    const batch = [attestation(), attestation(), attestation()]
    const signatures = signAttestations(privateKey, DOMAIN, batch, nonces)
    const typed = attestationTypedData(DOMAIN, batch[0]!)
    const root = SimpleMerkleTree.of(batch.map((a) => hashStruct({ data: { ...a }, primaryType: 'Attestation', types: typed.types }))).root as Hex
    const ecdsa = signatures[0]!.slice(0, 132) as Hex
    expect(await recoverTypedDataAddress({ ...attestationBatchTypedData(DOMAIN, root), signature: ecdsa })).toBe(ANVIL_ADDRESS)
  })
})
