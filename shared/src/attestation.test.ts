import { secp256k1 } from '@noble/curves/secp256k1.js'
import { SimpleMerkleTree } from '@openzeppelin/merkle-tree'
import { concat, encodeAbiParameters, hashStruct, hashTypedData, keccak256, recoverTypedDataAddress, sha256, toHex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import {
  ATTESTATION_LEAF_TYPES,
  ATTESTATION_TYPES,
  type Attestation,
  attestationBatchDigest,
  attestationBatchTypedData,
  attestationDigest,
  type AttestationDomain,
  attestationFromWire,
  attestationLeaf,
  attestationToWire,
  attestationTypedData,
  addressOf,
  canonicalTensorBytes,
  type Hex,
  inputCommitment,
  newSalt,
  outputHash,
  preparePublicKey,
  prepareSigning,
  publicKeyOf,
  recoverAttestationSigner,
  signAttestation,
  signAttestations,
  VerifiedBatchRoots,
  verifyAttestationSignature,
} from './attestation.js'
import { ProtocolError, TensorError } from './errors.js'
import { AttestationSchema, MAX_BATCH_PROOF_LEVELS } from './messages.js'
import type { RawTensor } from './tensor.js'
import { expectProtocolError } from './testing/expect-protocol-error.js'

// ---------------------------------------------------------------------------------------------
// Fixtures. Expected values come from the specs (EIP-712, the contract's leaf, the canonical
// encoding written out by hand) and from viem, never from the code under test.
// ---------------------------------------------------------------------------------------------

/** Anvil/Hardhat's well-known account #0. */
const ANVIL_KEY = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80'
const ANVIL_ADDRESS = '0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266'
/** secp256k1 group order. */
const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n

const bytesOfHex = (hex: string) => Uint8Array.from(hex.slice(2).match(/../g) ?? [], (b) => parseInt(b, 16))
const hexOf = (bytes: Uint8Array) => `0x${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}` as Hex

/** Deterministic pseudo-random bytes (xorshift32), so failures reproduce. */
function pseudoRandomBytes(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length)
  let x = seed >>> 0 || 1
  for (let i = 0; i < length; i++) {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    bytes[i] = x & 0xff
  }
  return bytes
}
const randomHex = (length: number, seed: number) => hexOf(pseudoRandomBytes(length, seed))
/** A valid private key from a seed (reduced into 1..n-1). */
const privateKeyFrom = (seed: number) => {
  const k = (BigInt(randomHex(32, seed)) % (N - 1n)) + 1n
  return bytesOfHex(`0x${k.toString(16).padStart(64, '0')}`)
}

const DOMAIN: AttestationDomain = { chainId: 31337n, verifyingContract: '0x5fbdb2315678afecb367f032d93f642f64180aa3' }

function attestation(seed: number, device: Hex = ANVIL_ADDRESS): Attestation {
  return {
    jobId: randomHex(32, seed),
    modelHash: randomHex(32, seed + 1),
    inputHash: randomHex(32, seed + 2),
    outputHash: randomHex(32, seed + 3),
    device,
    price: 1_000_000_000_000_000n + BigInt(seed),
    completedAt: 1_750_000_000_000n + BigInt(seed),
  }
}

/** The typed data written out independently, in viem's form (the EIP-712 spec of the design). */
function viemTypedData(domain: AttestationDomain, a: Attestation) {
  return {
    domain: { name: 'depinfer', version: '1', chainId: domain.chainId, verifyingContract: domain.verifyingContract },
    types: {
      Attestation: [
        { name: 'jobId', type: 'bytes32' },
        { name: 'modelHash', type: 'bytes32' },
        { name: 'inputHash', type: 'bytes32' },
        { name: 'outputHash', type: 'bytes32' },
        { name: 'device', type: 'address' },
        { name: 'price', type: 'uint256' },
        { name: 'completedAt', type: 'uint64' },
      ],
    },
    primaryType: 'Attestation',
    message: { ...a },
  } as const
}

/** r ‖ s ‖ v of a 65-byte hex signature. */
function splitSignature(signature: Hex) {
  return { r: BigInt(signature.slice(0, 66)), s: BigInt(`0x${signature.slice(66, 130)}`), v: parseInt(signature.slice(130), 16) }
}
const joinSignature = (r: bigint, s: bigint, v: number): Hex =>
  `0x${r.toString(16).padStart(64, '0')}${s.toString(16).padStart(64, '0')}${v.toString(16).padStart(2, '0')}`

// ---------------------------------------------------------------------------------------------

describe('EIP-712 digest', () => {
  it('uses the documented types, in the documented order', () => {
    expect(ATTESTATION_TYPES).toEqual(viemTypedData(DOMAIN, attestation(1)).types)
    expect(attestationTypedData(DOMAIN, attestation(1))).toEqual(viemTypedData(DOMAIN, attestation(1)))
  })

  it.each([1, 2, 3, 4, 5])('equals viem hashTypedData (attestation %i)', (seed) => {
    const a = attestation(seed * 10, randomHex(20, seed))
    expect(hexOf(attestationDigest(DOMAIN, a))).toBe(hashTypedData(viemTypedData(DOMAIN, a)))
  })

  it('equals viem at the edges of every integer range and for other domains', () => {
    const a = { ...attestation(7), price: 2n ** 256n - 1n, completedAt: 2n ** 64n - 1n }
    const b = { ...attestation(8), price: 0n, completedAt: 0n, device: '0x0000000000000000000000000000000000000000' as Hex }
    const domains: AttestationDomain[] = [DOMAIN, { chainId: 1n, verifyingContract: '0xffffffffffffffffffffffffffffffffffffffff' }, { chainId: 8453n, verifyingContract: randomHex(20, 99) }]
    for (const domain of domains) {
      for (const value of [a, b]) expect(hexOf(attestationDigest(domain, value))).toBe(hashTypedData(viemTypedData(domain, value)))
    }
  })

  it('accepts uppercase hex and hashes it as the same bytes', () => {
    const a = attestation(3)
    const upper = { ...a, jobId: `0x${a.jobId.slice(2).toUpperCase()}` as Hex, device: `0x${a.device.slice(2).toUpperCase()}` as Hex }
    expect(attestationDigest(DOMAIN, upper)).toEqual(attestationDigest(DOMAIN, a))
  })

  it.each([
    ['jobId', { jobId: '0x1234' }],
    ['modelHash', { modelHash: `0x${'g'.repeat(64)}` }],
    ['inputHash', { inputHash: 'ab'.repeat(32) }],
    ['outputHash', { outputHash: `0x${'00'.repeat(33)}` }],
    ['device', { device: `0x${'11'.repeat(32)}` }],
    ['price', { price: -1n }],
    ['price', { price: 2n ** 256n }],
    ['completedAt', { completedAt: 2n ** 64n }],
    ['completedAt', { completedAt: 5 }],
  ] as const)('rejects a malformed %s naming it', (field, patch) => {
    const bad = { ...attestation(1), ...patch } as unknown as Attestation
    expectProtocolError(ProtocolError, () => attestationDigest(DOMAIN, bad), field)
    expectProtocolError(ProtocolError, () => attestationLeaf(bad, 1n), field)
  })

  it('rejects a malformed domain', () => {
    expectProtocolError(ProtocolError, () => attestationDigest({ ...DOMAIN, chainId: -1n }, attestation(1)), 'domain.chainId')
    expectProtocolError(ProtocolError, () => attestationDigest({ ...DOMAIN, verifyingContract: '0x12' }, attestation(1)), 'domain.verifyingContract')
  })
})

describe('keys and addresses', () => {
  it('derives the well-known address of anvil account #0', () => {
    const publicKey = publicKeyOf(bytesOfHex(ANVIL_KEY))
    expect(publicKey.length).toBe(33)
    expect(addressOf(publicKey)).toBe(ANVIL_ADDRESS)
  })

  it.each([1, 2, 3, 4, 5, 6])('matches viem for key %i, from the compressed and the uncompressed key', (seed) => {
    const privateKey = privateKeyFrom(seed)
    const account = privateKeyToAccount(hexOf(privateKey))
    const uncompressed = bytesOfHex(account.publicKey) // 0x04 ‖ x ‖ y
    const compressed = publicKeyOf(privateKey)
    // SEC 1 compression: 0x02 for even y, 0x03 for odd y, then x.
    expect(compressed[0]).toBe(2 + (uncompressed[64]! & 1))
    expect(compressed.subarray(1)).toEqual(uncompressed.subarray(1, 33))
    expect(addressOf(compressed)).toBe(account.address.toLowerCase())
    expect(addressOf(uncompressed)).toBe(account.address.toLowerCase())
  })

  it('rejects bytes that are not a public key', () => {
    const publicKey = publicKeyOf(privateKeyFrom(1))
    expect(() => addressOf(publicKey.subarray(1))).toThrow()
    expect(() => addressOf(Uint8Array.of(0x02, ...new Uint8Array(32).fill(0xff)))).toThrow() // x ≥ p
    expect(() => preparePublicKey(new Uint8Array(33))).toThrow()
  })
})

describe('signAttestation / recoverAttestationSigner', () => {
  it.each([1, 2, 3, 4, 5, 6, 7, 8])('produces exactly viem signTypedData\'s signature (key %i)', async (seed) => {
    const privateKey = privateKeyFrom(seed * 31)
    const account = privateKeyToAccount(hexOf(privateKey))
    const a = attestation(seed, account.address.toLowerCase() as Hex)
    const signature = signAttestation(privateKey, DOMAIN, a)
    expect(signature).toBe(await account.signTypedData(viemTypedData(DOMAIN, a)))
    const { s, v } = splitSignature(signature)
    expect(s <= N / 2n).toBe(true)
    expect([27, 28]).toContain(v)
    expect(recoverAttestationSigner(DOMAIN, a, signature)).toBe(account.address.toLowerCase())
    expect((await recoverTypedDataAddress({ ...viemTypedData(DOMAIN, a), signature })).toLowerCase()).toBe(account.address.toLowerCase())
  })

  it('signs exactly as viem does after prepareSigning has widened the generator\'s table', async () => {
    prepareSigning()
    for (const seed of [9, 10, 11]) {
      const privateKey = privateKeyFrom(seed * 31)
      const account = privateKeyToAccount(hexOf(privateKey))
      const a = attestation(seed, account.address.toLowerCase() as Hex)
      expect(signAttestation(privateKey, DOMAIN, a)).toBe(await account.signTypedData(viemTypedData(DOMAIN, a)))
    }
  })

  it('signs with anvil account #0 so that it recovers to its address', () => {
    const a = attestation(42)
    expect(recoverAttestationSigner(DOMAIN, a, signAttestation(bytesOfHex(ANVIL_KEY), DOMAIN, a))).toBe(ANVIL_ADDRESS)
    expect(recoverAttestationSigner(DOMAIN, a, bytesOfHex(signAttestation(bytesOfHex(ANVIL_KEY), DOMAIN, a)))).toBe(ANVIL_ADDRESS)
  })

  it('recovers another address from a signature over another attestation or domain', () => {
    const a = attestation(5)
    const signature = signAttestation(bytesOfHex(ANVIL_KEY), DOMAIN, a)
    expect(recoverAttestationSigner(DOMAIN, { ...a, price: a.price + 1n }, signature)).not.toBe(ANVIL_ADDRESS)
    expect(recoverAttestationSigner({ ...DOMAIN, chainId: 1n }, a, signature)).not.toBe(ANVIL_ADDRESS)
  })

  it('refuses malformed, high-s and wrong-v signatures', () => {
    const a = attestation(5)
    const signature = signAttestation(bytesOfHex(ANVIL_KEY), DOMAIN, a)
    const { r, s, v } = splitSignature(signature)
    for (const bad of [
      joinSignature(r, N - s, v === 27 ? 28 : 27), // the high-s twin: valid ECDSA, rejected as malleable
      joinSignature(r, s, v - 27), // v as 0/1
      joinSignature(r, s, 29),
      joinSignature(0n, s, v),
      joinSignature(r, 0n, v),
      joinSignature(N, s, v),
      signature.slice(0, -2) as Hex,
      `${signature}00` as Hex,
      `0x${'zz'.repeat(65)}` as Hex,
    ]) {
      expectProtocolError(ProtocolError, () => recoverAttestationSigner(DOMAIN, a, bad), 'signature')
    }
  })
})

describe('verifyAttestationSignature', () => {
  const privateKey = privateKeyFrom(77)
  const publicKey = publicKeyOf(privateKey)
  const device = addressOf(publicKey)
  const uncompressed = bytesOfHex(privateKeyToAccount(hexOf(privateKey)).publicKey)
  const prepared = preparePublicKey(publicKey)
  const preparedSmall = preparePublicKey(uncompressed, { windowSize: 4 })
  const otherPublicKey = publicKeyOf(privateKeyFrom(78))
  const keys = [
    ['the compressed key', publicKey],
    ['the uncompressed key', uncompressed],
    ['the prepared key', prepared],
    ['a key prepared with window 4', preparedSmall],
  ] as const

  it('prepares a key with its address', () => {
    expect(prepared.address).toBe(privateKeyToAccount(hexOf(privateKey)).address.toLowerCase())
    expect(preparedSmall.address).toBe(prepared.address)
    expect(prepared.publicKey).toEqual(publicKey)
    expect(preparedSmall.publicKey).toEqual(publicKey)
  })

  it.each(keys)('accepts the signatures of the key (%s)', async (_case, key) => {
    const account = privateKeyToAccount(hexOf(privateKey))
    for (let seed = 1; seed <= 24; seed++) {
      const a = attestation(seed * 3, device)
      const signature = await account.signTypedData(viemTypedData(DOMAIN, a)) // viem's, not ours
      expect(verifyAttestationSignature(key, DOMAIN, a, signature)).toBe(true)
      expect(verifyAttestationSignature(key, DOMAIN, a, bytesOfHex(signature))).toBe(true)
    }
  })

  it.each(keys)('rejects another key, tampered fields, another domain and tampered signatures (%s)', (_case, key) => {
    const a = attestation(11, device)
    const signature = signAttestation(privateKey, DOMAIN, a)
    expect(verifyAttestationSignature(key, DOMAIN, a, signature)).toBe(true)
    expect(verifyAttestationSignature(otherPublicKey, DOMAIN, a, signature)).toBe(false)
    expect(verifyAttestationSignature(preparePublicKey(otherPublicKey, { windowSize: 4 }), DOMAIN, a, signature)).toBe(false)

    const flip = (hex: Hex) => `${hex.slice(0, -1)}${hex.endsWith('0') ? '1' : '0'}` as Hex
    const tampered: Attestation[] = [
      { ...a, jobId: flip(a.jobId) },
      { ...a, modelHash: flip(a.modelHash) },
      { ...a, inputHash: flip(a.inputHash) },
      { ...a, outputHash: flip(a.outputHash) },
      { ...a, device: flip(a.device) },
      { ...a, price: a.price + 1n },
      { ...a, completedAt: a.completedAt - 1n },
    ]
    for (const t of tampered) expect(verifyAttestationSignature(key, DOMAIN, t, signature)).toBe(false)
    expect(verifyAttestationSignature(key, { ...DOMAIN, chainId: 1n }, a, signature)).toBe(false)
    expect(verifyAttestationSignature(key, { ...DOMAIN, verifyingContract: flip(DOMAIN.verifyingContract) }, a, signature)).toBe(false)

    const { r, s, v } = splitSignature(signature)
    const highS = joinSignature(r, N - s, v === 27 ? 28 : 27)
    // The high-s twin is a valid ECDSA signature of the same digest (noble accepts it with
    // lowS: false), so rejecting it is the low-s rule at work, not an accident.
    const compactHighS = bytesOfHex(highS).subarray(0, 64)
    expect(secp256k1.verify(compactHighS, attestationDigest(DOMAIN, a), publicKey, { prehash: false, lowS: false })).toBe(true)
    for (const bad of [
      highS,
      joinSignature(r, s, v === 27 ? 28 : 27), // wrong v: would recover another key
      joinSignature(r, s, v - 27),
      joinSignature(r, s, 29),
      joinSignature(r + 1n, s, v),
      joinSignature(r, s + 1n, v),
      joinSignature(0n, s, v),
      joinSignature(r, 0n, v),
      joinSignature(r + N, s, v),
      signature.slice(0, -2) as Hex,
      `${signature}1b` as Hex,
      '0x' as Hex,
      `0x${'zz'.repeat(65)}` as Hex,
    ]) {
      expect(verifyAttestationSignature(key, DOMAIN, a, bad)).toBe(false)
    }
    expect(verifyAttestationSignature(key, DOMAIN, a, bytesOfHex(signature).subarray(0, 64))).toBe(false)
  })

  it('agrees with recovery: true exactly when the signature recovers to the key', () => {
    for (let seed = 1; seed <= 16; seed++) {
      const a = attestation(seed, device)
      const { r, s, v } = splitSignature(signAttestation(privateKey, DOMAIN, a))
      for (const signature of [joinSignature(r, s, v), joinSignature(r, s, v === 27 ? 28 : 27)]) {
        const recovered = recoverAttestationSigner(DOMAIN, a, signature)
        expect(verifyAttestationSignature(prepared, DOMAIN, a, signature)).toBe(recovered === device)
        expect(verifyAttestationSignature(publicKey, DOMAIN, a, signature)).toBe(recovered === device)
      }
    }
  })

  it('refuses a key that preparePublicKey did not make', () => {
    const fake = { publicKey, address: device } as unknown as ReturnType<typeof preparePublicKey>
    expect(() => verifyAttestationSignature(fake, DOMAIN, attestation(1), signAttestation(privateKey, DOMAIN, attestation(1)))).toThrow(TypeError)
  })
})

describe('signAttestations (batch signatures)', () => {
  const privateKey = bytesOfHex(ANVIL_KEY)
  const batch = [1, 2, 3, 4, 5].map((seed) => attestation(seed * 100))
  const signatures = signAttestations(privateKey, DOMAIN, batch)
  /** The root written out independently: viem's EIP-712 hashStruct of each, OpenZeppelin's SimpleMerkleTree over them. */
  const reference = SimpleMerkleTree.of(batch.map((a) => hashStruct({ data: { ...a }, primaryType: 'Attestation', types: viemTypedData(DOMAIN, a).types })))
  const batchTypedData = (root: Hex) => ({
    domain: viemTypedData(DOMAIN, batch[0]!).domain,
    types: { AttestationBatch: [{ name: 'root', type: 'bytes32' }] },
    primaryType: 'AttestationBatch',
    message: { root },
  } as const)

  it('signs the Merkle root of the attestations once, as viem signs AttestationBatch(root), and appends each proof', async () => {
    const ecdsa = signatures[0]!.slice(0, 132)
    expect(signatures.every((signature) => signature.startsWith(ecdsa))).toBe(true)
    expect(ecdsa).toBe(await privateKeyToAccount(ANVIL_KEY).signTypedData(batchTypedData(reference.root as Hex)))
    batch.forEach((a, i) => {
      const proof = signatures[i]!.slice(132).match(/.{64}/g)?.map((node) => `0x${node}`) ?? []
      expect(proof).toEqual(reference.getProof(hashStruct({ data: { ...a }, primaryType: 'Attestation', types: viemTypedData(DOMAIN, a).types })))
      expect(proof.length).toBeGreaterThan(0)
    })
    expect(hashTypedData(batchTypedData(reference.root as Hex))).toBe(hexOf(attestationBatchDigest(DOMAIN, reference.root as Hex)))
    expect(attestationBatchTypedData(DOMAIN, reference.root as Hex)).toEqual(batchTypedData(reference.root as Hex))
  })

  it('signs one attestation alone, as the plain 65-byte EIP-712 signature', () => {
    expect(signAttestations(privateKey, DOMAIN, [batch[0]!])).toEqual([signAttestation(privateKey, DOMAIN, batch[0]!)])
    expect(() => signAttestations(privateKey, DOMAIN, [])).toThrow(RangeError)
  })

  it('verifies and recovers every attestation of the batch, and nothing altered', () => {
    const key = preparePublicKey(publicKeyOf(privateKey))
    batch.forEach((a, i) => {
      expect(verifyAttestationSignature(key, DOMAIN, a, signatures[i]!)).toBe(true)
      expect(verifyAttestationSignature(publicKeyOf(privateKey), DOMAIN, a, signatures[i]!)).toBe(true)
      expect(recoverAttestationSigner(DOMAIN, a, signatures[i]!)).toBe(ANVIL_ADDRESS)
      expect(verifyAttestationSignature(key, DOMAIN, { ...a, price: a.price + 1n }, signatures[i]!)).toBe(false)
      expect(verifyAttestationSignature(key, { ...DOMAIN, chainId: 1n }, a, signatures[i]!)).toBe(false)
    })
    // Another attestation's proof, a proof cut short, one element too many, half an element.
    expect(verifyAttestationSignature(key, DOMAIN, batch[0]!, signatures[1]!)).toBe(false)
    expect(verifyAttestationSignature(key, DOMAIN, batch[0]!, signatures[0]!.slice(0, -64) as Hex)).toBe(false)
    expect(verifyAttestationSignature(key, DOMAIN, batch[0]!, `${signatures[0]!}${'11'.repeat(32)}`)).toBe(false)
    expect(verifyAttestationSignature(key, DOMAIN, batch[0]!, `${signatures[0]!}${'11'.repeat(16)}`)).toBe(false)
    // An attestation outside the batch, given a member's proof.
    expect(verifyAttestationSignature(key, DOMAIN, attestation(7), signatures[0]!)).toBe(false)
    // Another key's batch signature.
    expect(verifyAttestationSignature(preparePublicKey(publicKeyOf(privateKeyFrom(3))), DOMAIN, batch[0]!, signatures[0]!)).toBe(false)
  })

  it('limits a proof to MAX_BATCH_PROOF_LEVELS elements, in the wire schema too', () => {
    const tooLong = `${signatures[0]!.slice(0, 132)}${'22'.repeat(32 * (MAX_BATCH_PROOF_LEVELS + 1))}` as Hex
    expectProtocolError(ProtocolError, () => recoverAttestationSigner(DOMAIN, batch[0]!, tooLong), 'signature')
    const wire = attestationToWire(batch[0]!, signatures[0]!)
    expect(AttestationSchema.safeParse(wire).success).toBe(true)
    expect(AttestationSchema.safeParse({ ...wire, signature: tooLong }).success).toBe(false)
    expect(AttestationSchema.safeParse({ ...wire, signature: `${signatures[0]!}00` }).success).toBe(false)
  })

  it('checks a root once per key, domain and signature with VerifiedBatchRoots, and never trusts it for anything else', () => {
    const key = preparePublicKey(publicKeyOf(privateKey))
    const roots = new VerifiedBatchRoots(2)
    batch.forEach((a, i) => expect(verifyAttestationSignature(key, DOMAIN, a, signatures[i]!, roots)).toBe(true))
    const root = reference.root as Hex
    const ecdsa = bytesOfHex(signatures[0]!.slice(0, 132))
    expect(roots.has(VerifiedBatchRoots.key(key.address, DOMAIN, root, ecdsa))).toBe(true)
    // With the root remembered: an altered attestation, another domain, another key and a
    // corrupted ECDSA part are still refused.
    expect(verifyAttestationSignature(key, DOMAIN, { ...batch[1]!, outputHash: randomHex(32, 9) }, signatures[1]!, roots)).toBe(false)
    expect(verifyAttestationSignature(key, { ...DOMAIN, chainId: 1n }, batch[1]!, signatures[1]!, roots)).toBe(false)
    const other = preparePublicKey(publicKeyOf(privateKeyFrom(3)))
    expect(verifyAttestationSignature(other, DOMAIN, batch[1]!, signatures[1]!, roots)).toBe(false)
    const { r, s, v } = splitSignature(signatures[1]!.slice(0, 132) as Hex)
    const corrupted = `${joinSignature(r, s - 1n, v)}${signatures[1]!.slice(132)}` as Hex
    expect(verifyAttestationSignature(key, DOMAIN, batch[1]!, corrupted, roots)).toBe(false)
    // Bounded: the oldest entries go first.
    roots.add('a')
    roots.add('b')
    expect(roots.has(VerifiedBatchRoots.key(key.address, DOMAIN, root, ecdsa))).toBe(false)
    expect(roots.has('a') && roots.has('b')).toBe(true)
  })
})

describe('attestationLeaf', () => {
  it('declares the contract\'s leaf types', () => {
    expect(ATTESTATION_LEAF_TYPES.join(',')).toBe('bytes32,bytes32,bytes32,bytes32,address,uint256,uint64,uint64')
  })

  it.each([
    ['a typical attestation', attestation(3), 17n],
    ['the largest values', { ...attestation(4), price: 2n ** 256n - 1n, completedAt: 2n ** 64n - 1n }, 2n ** 64n - 1n],
    ['zeros', { ...attestation(5), price: 0n, completedAt: 0n, device: '0x0000000000000000000000000000000000000000' as Hex }, 0n],
  ] as const)('equals keccak256(keccak256(abi.encode(...))) by viem for %s', (_case, a, seq) => {
    const encoded = encodeAbiParameters(
      [
        { type: 'bytes32' }, { type: 'bytes32' }, { type: 'bytes32' }, { type: 'bytes32' },
        { type: 'address' }, { type: 'uint256' }, { type: 'uint64' }, { type: 'uint64' },
      ],
      [a.jobId, a.modelHash, a.inputHash, a.outputHash, a.device, a.price, a.completedAt, seq],
    )
    expect(attestationLeaf(a, seq)).toBe(keccak256(keccak256(encoded)))
  })

  it('depends on seq and rejects a seq outside uint64', () => {
    expect(attestationLeaf(attestation(1), 1n)).not.toBe(attestationLeaf(attestation(1), 2n))
    expectProtocolError(ProtocolError, () => attestationLeaf(attestation(1), 2n ** 64n), 'seq')
    expectProtocolError(ProtocolError, () => attestationLeaf(attestation(1), -1n), 'seq')
  })
})

// ---------------------------------------------------------------------------------------------

const t = (name: string, datatype: RawTensor['datatype'], shape: number[], data: number[]): RawTensor => ({
  name,
  datatype,
  shape,
  data: Uint8Array.from(data),
})

describe('canonicalTensorBytes', () => {
  // Written out by hand from the definition in attestation.ts's comment.
  const example = [t('b', 'UINT8', [2], [1, 2]), t('a', 'FP32', [], [0x00, 0x00, 0x80, 0x3f])]
  const exampleBytes = Uint8Array.from([
    // "a": name length 1 (u32 LE), "a"
    0x01, 0x00, 0x00, 0x00, 0x61,
    // datatype: length 4, "FP32"
    0x04, 0x46, 0x50, 0x33, 0x32,
    // rank 0 (u32 LE), no dims
    0x00, 0x00, 0x00, 0x00,
    // data length 4 (u64 LE), then 1.0f little-endian
    0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x80, 0x3f,
    // "b": name length 1, "b"
    0x01, 0x00, 0x00, 0x00, 0x62,
    // datatype: length 5, "UINT8"
    0x05, 0x55, 0x49, 0x4e, 0x54, 0x38,
    // rank 1, dim 2 (u64 LE)
    0x01, 0x00, 0x00, 0x00,
    0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    // data length 2 (u64 LE), data
    0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x02,
  ])

  it('encodes a tiny example exactly as specified', () => {
    expect(canonicalTensorBytes(example)).toEqual(exampleBytes)
    expect(canonicalTensorBytes([])).toEqual(new Uint8Array(0))
  })

  it('writes multi-byte names, large dimensions and data lengths little-endian', () => {
    const bytes = canonicalTensorBytes([t('é', 'INT64', [2 ** 32 + 5, 0], [])])
    expect(bytes).toEqual(Uint8Array.from([
      0x02, 0x00, 0x00, 0x00, 0xc3, 0xa9, // "é" is two UTF-8 bytes
      0x05, 0x49, 0x4e, 0x54, 0x36, 0x34, // "INT64"
      0x02, 0x00, 0x00, 0x00, // rank 2
      0x05, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // 2^32 + 5
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 0
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // no data
    ]))
  })

  it('sorts by UTF-8 bytes, not UTF-16 code units; a prefix sorts first', () => {
    // U+FF21 is EF BC A1 in UTF-8 and 0xFF21 in UTF-16; U+1F600 is F0 9F 98 80 and 0xD83D 0xDE00.
    // UTF-8 order puts U+FF21 first; JavaScript's default string order would not.
    const names = ['\u{1F600}', '\uFF21', 'ab', 'a', 'B']
    expect([...names].sort()).not.toEqual(['B', 'a', 'ab', '\uFF21', '\u{1F600}'])
    const encodedNames = (bytes: Uint8Array): string[] => {
      const out: string[] = []
      let o = 0
      while (o < bytes.length) {
        const view = new DataView(bytes.buffer, bytes.byteOffset + o)
        const nameLength = view.getUint32(0, true)
        out.push(new TextDecoder().decode(bytes.subarray(o + 4, o + 4 + nameLength)))
        o += 4 + nameLength
        const dtLength = bytes[o]!
        o += 1 + dtLength
        const rank = new DataView(bytes.buffer, bytes.byteOffset + o).getUint32(0, true)
        o += 4 + 8 * rank
        const dataLength = Number(new DataView(bytes.buffer, bytes.byteOffset + o).getBigUint64(0, true))
        o += 8 + dataLength
      }
      return out
    }
    const bytes = canonicalTensorBytes(names.map((name, i) => t(name, 'UINT8', [1], [i])))
    expect(encodedNames(bytes)).toEqual(['B', 'a', 'ab', '\uFF21', '\u{1F600}'])
  })

  it('does not depend on the order the tensors are given in', () => {
    const tensors = [t('x', 'FP32', [1, 2], [1, 2, 3, 4, 5, 6, 7, 8]), t('y', 'INT8', [3], [9, 8, 7]), t('z', 'BOOL', [], [1])]
    const reference = canonicalTensorBytes(tensors)
    for (const order of [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]]) {
      const permuted = order.map((i) => tensors[i]!)
      expect(canonicalTensorBytes(permuted)).toEqual(reference)
      expect(outputHash(permuted)).toBe(outputHash(tensors))
    }
  })

  it('changes with any change to a name, datatype, shape or data, including shifted boundaries', () => {
    const base = [t('in', 'UINT8', [2, 3], [1, 2, 3, 4, 5, 6]), t('mask', 'UINT8', [1], [7])]
    const variants: RawTensor[][] = [
      [t('in2', 'UINT8', [2, 3], [1, 2, 3, 4, 5, 6]), base[1]!],
      [t('IN', 'UINT8', [2, 3], [1, 2, 3, 4, 5, 6]), base[1]!],
      [t('in', 'INT8', [2, 3], [1, 2, 3, 4, 5, 6]), base[1]!],
      [t('in', 'BOOL', [2, 3], [1, 2, 3, 4, 5, 6]), base[1]!],
      [t('in', 'UINT8', [3, 2], [1, 2, 3, 4, 5, 6]), base[1]!],
      [t('in', 'UINT8', [6], [1, 2, 3, 4, 5, 6]), base[1]!],
      [t('in', 'UINT8', [1, 2, 3], [1, 2, 3, 4, 5, 6]), base[1]!],
      [t('in', 'UINT8', [2, 3], [1, 2, 3, 4, 5, 7]), base[1]!],
      [t('in', 'UINT8', [2, 3], [1, 2, 3, 4, 5]), t('mask', 'UINT8', [1], [6, 7])], // bytes move across
      [t('in', 'UINT8', [2, 3], [1, 2, 3, 4, 5, 6, 7]), t('mask', 'UINT8', [1], [])],
      [t('in', 'UINT8', [2, 3], [1, 2, 3, 4, 5, 6])], // one tensor fewer
      [...base, t('extra', 'UINT8', [0], [])], // one empty tensor more
    ]
    const hashes = new Set([outputHash(base), ...variants.map(outputHash)])
    expect(hashes.size).toBe(variants.length + 1)
  })

  it('rejects duplicate names and dimensions that are not non-negative integers', () => {
    expectProtocolError(TensorError, () => canonicalTensorBytes([t('a', 'UINT8', [1], [1]), t('a', 'UINT8', [1], [2])]), 'tensors[1].name')
    expectProtocolError(TensorError, () => canonicalTensorBytes([t('a', 'UINT8', [-1], [])]), 'tensors[0].shape[0]')
    expectProtocolError(TensorError, () => canonicalTensorBytes([t('a', 'UINT8', [1.5], [])]), 'tensors[0].shape[0]')
  })
})

describe('inputCommitment / outputHash', () => {
  const tensors = [t('b', 'UINT8', [2], [1, 2]), t('a', 'FP32', [], [0x00, 0x00, 0x80, 0x3f])]
  // The example's canonical bytes by hand, as above.
  const canonical = concat([
    '0x010000006104465033320000000004000000000000000000803f' as const,
    `0x0100000062055549${'4e5438'}${'01000000'}${'0200000000000000'}${'0200000000000000'}0102` as const,
  ])

  it('hashes the canonical bytes with SHA-256 (viem as reference)', () => {
    expect(outputHash(tensors)).toBe(sha256(canonical))
    expect(outputHash([])).toBe(sha256('0x'))
    expect(outputHash([])).toBe('0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
  })

  it('prefixes the 32-byte salt', () => {
    const salt = pseudoRandomBytes(32, 5)
    expect(inputCommitment(salt, tensors)).toBe(sha256(concat([toHex(salt), canonical])))
    expect(inputCommitment(pseudoRandomBytes(32, 6), tensors)).not.toBe(inputCommitment(salt, tensors))
    expect(inputCommitment(salt, [...tensors].reverse())).toBe(inputCommitment(salt, tensors))
  })

  it('hashes large tensors without concatenating them, to the same value', () => {
    const big = [t('x', 'UINT8', [300_000], Array.from(pseudoRandomBytes(300_000, 9))), t('y', 'UINT8', [1], [1])]
    expect(outputHash(big)).toBe(sha256(canonicalTensorBytes(big)))
  })

  it('needs a 32-byte salt; newSalt makes fresh ones', () => {
    expect(() => inputCommitment(new Uint8Array(31), tensors)).toThrow(RangeError)
    const a = newSalt()
    const b = newSalt()
    expect(a.length).toBe(32)
    expect(hexOf(a)).not.toBe(hexOf(b))
  })
})

// ---------------------------------------------------------------------------------------------

describe('wire form', () => {
  const a = attestation(21)
  const signature = signAttestation(bytesOfHex(ANVIL_KEY), DOMAIN, a)
  const wire = () => ({
    jobId: a.jobId,
    modelHash: a.modelHash,
    inputHash: a.inputHash,
    outputHash: a.outputHash,
    device: a.device,
    price: a.price.toString(),
    completedAt: a.completedAt.toString(),
    signature,
  })

  it('round-trips and still verifies', () => {
    const json = JSON.parse(JSON.stringify(attestationToWire(a, signature)))
    expect(json).toEqual(wire())
    const back = attestationFromWire(json)
    expect(back).toEqual({ attestation: a, signature })
    expect(verifyAttestationSignature(publicKeyOf(bytesOfHex(ANVIL_KEY)), DOMAIN, back.attestation, back.signature)).toBe(true)
  })

  it('accepts completedAt as a safe integer and uppercase hex, normalizing both', () => {
    const upper = { ...wire(), completedAt: Number(a.completedAt), device: `0x${a.device.slice(2).toUpperCase()}`, signature: `0x${signature.slice(2).toUpperCase()}` }
    expect(attestationFromWire(upper)).toEqual({ attestation: a, signature })
  })

  it.each([
    ['jobId', { jobId: a.jobId.slice(0, -2) }],
    ['modelHash', { modelHash: a.modelHash.slice(2) }],
    ['inputHash', { inputHash: `${a.inputHash}00` }],
    ['outputHash', { outputHash: 42 }],
    ['device', { device: a.device.slice(0, -2) }],
    ['price', { price: '-1' }],
    ['price', { price: '1.5' }],
    ['price', { price: '01' }],
    ['price', { price: '' }],
    ['price', { price: 5 }],
    ['price', { price: (2n ** 256n).toString() }],
    ['price', { price: '9'.repeat(1000) }],
    ['completedAt', { completedAt: (2n ** 64n).toString() }],
    ['completedAt', { completedAt: 2 ** 53 }],
    ['completedAt', { completedAt: -1 }],
    ['completedAt', { completedAt: 1.5 }],
    ['signature', { signature: signature.slice(0, -2) }],
    ['signature', { signature: undefined }],
  ])('rejects a bad %s', (field, patch) => {
    const result = AttestationSchema.safeParse({ ...wire(), ...patch })
    expect(result.success).toBe(false)
    expect(result.error!.issues.map((issue) => issue.path.join('.'))).toContain(field)
    expect(() => attestationFromWire({ ...wire(), ...patch })).toThrow()
  })

  it('accepts the largest price and completedAt', () => {
    const max = { ...wire(), price: (2n ** 256n - 1n).toString(), completedAt: (2n ** 64n - 1n).toString() }
    expect(attestationFromWire(max).attestation.price).toBe(2n ** 256n - 1n)
    expect(attestationFromWire(max).attestation.completedAt).toBe(2n ** 64n - 1n)
  })
})
