/**
 * Job attestations (DESIGN "Attestations"): after each job the device signs an EIP-712
 * `Attestation` of what it ran (model), on what (salted commitment to the inputs), what it
 * produced (hash of the outputs), for how much and when. The edge verifies the signature against
 * the device's registered key, numbers the attestation (`seq`) and posts Merkle roots of
 * batches to `AttestationRegistry`; `attestationLeaf` is that contract's leaf.
 *
 * keccak in WebAssembly (keccak.ts), native SHA-256 (hash.ts), @noble/curves, @noble/hashes utils:
 * runs in workerd and Node alike.
 */
import type { WeierstrassPoint } from '@noble/curves/abstract/weierstrass.js'
import { secp256k1 } from '@noble/curves/secp256k1.js'
import { bytesToNumberBE } from '@noble/curves/utils.js'
import { bytesToHex, hexToBytes, randomBytes, utf8ToBytes } from '@noble/hashes/utils.js'
import { isAddress } from './address.js'
import { signDigestWithNonce, type EcdsaNonces } from './ecdsa-nonces.js'
import { ProtocolError, TensorError } from './errors.js'
import { sha256Chunks } from './hash.js'
import { keccak256 } from './keccak.js'
import { buildMerkleTree, processMerkleProof } from './merkle.js'
import { AttestationSchema, MAX_BATCH_PROOF_LEVELS, type AttestationWire } from './messages.js'
import { concatBytes } from './bytes.js'
import type { RawTensor } from './tensor.js'

/** 0x-prefixed hex. Functions here accept either case and return lowercase. */
export type Hex = `0x${string}`

export interface Attestation {
  /** bytes32: the job's id (the edge maps its job ids to 32 bytes). */
  jobId: Hex
  /** bytes32: `0x` + SHA-256 of the model file (the model descriptor's `sha256`). */
  modelHash: Hex
  /** bytes32: `inputCommitment(salt, inputs)`. */
  inputHash: Hex
  /** bytes32: `outputHash(outputs)`. */
  outputHash: Hex
  /** address of the device's signing key, lowercase. */
  device: Hex
  /** uint256: price of the job, in wei. */
  price: bigint
  /** uint64: when the job completed, Unix epoch milliseconds. */
  completedAt: bigint
}

/** The EIP-712 domain's variable part; `name` and `version` are fixed. */
export interface AttestationDomain {
  chainId: bigint
  /** The AttestationRegistry's address. */
  verifyingContract: Hex
}

/** An attestation with its signature, as it travels. */
export interface SignedAttestation {
  attestation: Attestation
  /** 65 bytes r ‖ s ‖ v, v = 27 or 28, low s. */
  signature: Hex
}

export const ATTESTATION_DOMAIN_NAME = 'depinfer'
export const ATTESTATION_DOMAIN_VERSION = '1'

/** The EIP-712 types (viem's `types` form; EIP712Domain is implied). */
export const ATTESTATION_TYPES = {
  Attestation: [
    { name: 'jobId', type: 'bytes32' },
    { name: 'modelHash', type: 'bytes32' },
    { name: 'inputHash', type: 'bytes32' },
    { name: 'outputHash', type: 'bytes32' },
    { name: 'device', type: 'address' },
    { name: 'price', type: 'uint256' },
    { name: 'completedAt', type: 'uint64' },
  ],
} as const

/** ABI types of the on-chain leaf tuple (AttestationRegistry.ATTESTATION_LEAF_TYPES). */
export const ATTESTATION_LEAF_TYPES = ['bytes32', 'bytes32', 'bytes32', 'bytes32', 'address', 'uint256', 'uint64', 'uint64'] as const

// ---------------------------------------------------------------------------------------------
// Canonical tensor encoding and commitments
// ---------------------------------------------------------------------------------------------

const utf8 = new TextEncoder()

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!
    if (d !== 0) return d
  }
  return a.length - b.length
}

/** Writes a non-negative safe integer as u64 little-endian. */
function setU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % 0x1_0000_0000, true)
  view.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000), true)
}

const isU64Number = (value: number) => Number.isSafeInteger(value) && value >= 0

/**
 * The canonical encoding as a list of chunks (each tensor's header, then its data, uncopied),
 * so large tensors can be hashed without concatenating them.
 */
function canonicalChunks(tensors: readonly RawTensor[]): Uint8Array[] {
  const named = tensors.map((tensor, index) => ({ tensor, index, name: utf8.encode(tensor.name) }))
  named.sort((a, b) => compareBytes(a.name, b.name))
  const chunks: Uint8Array[] = []
  named.forEach(({ tensor, index, name }, k) => {
    const field = `tensors[${index}]`
    const previous = named[k - 1]
    if (previous && compareBytes(previous.name, name) === 0) {
      throw new TensorError(`tensor name ${JSON.stringify(tensor.name)} appears twice`, `${field}.name`)
    }
    const { datatype, shape, data } = tensor
    if (!/^[\x00-\x7f]{0,255}$/.test(datatype)) {
      throw new TensorError(`datatype must be at most 255 ASCII characters`, `${field}.datatype`)
    }
    shape.forEach((dim, d) => {
      if (!isU64Number(dim)) throw new TensorError(`dimension must be a non-negative integer, got ${dim}`, `${field}.shape[${d}]`)
    })
    if (shape.length > 0xffff_ffff) throw new TensorError('too many dimensions', `${field}.shape`)
    const header = new Uint8Array(4 + name.length + 1 + datatype.length + 4 + 8 * shape.length + 8)
    const view = new DataView(header.buffer)
    let o = 0
    view.setUint32(o, name.length, true)
    header.set(name, (o += 4))
    o += name.length
    header[o++] = datatype.length
    for (let i = 0; i < datatype.length; i++) header[o++] = datatype.charCodeAt(i)
    view.setUint32(o, shape.length, true)
    o += 4
    for (const dim of shape) {
      setU64(view, o, dim)
      o += 8
    }
    setU64(view, o, data.length)
    chunks.push(header, data)
  })
  return chunks
}

/**
 * The canonical byte encoding of a set of tensors, on which input and output hashes are taken.
 * Defined here, once:
 *
 *     tensors sorted by name, comparing the names' UTF-8 bytes (a proper prefix sorts first);
 *     names must be distinct. Then, for each tensor, concatenated with no separator:
 *       u32 LE  byte length of the UTF-8 name
 *       …       the name's UTF-8 bytes
 *       u8      length of the datatype name (v2 name, e.g. "FP32"), then its ASCII bytes
 *       u32 LE  rank (number of dimensions; 0 for a scalar)
 *       u64 LE  each dimension, outermost first
 *       u64 LE  byte length of the data
 *       …       the raw data bytes (little-endian elements, row-major)
 *
 * No count prefix: every record delimits itself, so the encoding of a list is unique and the
 * empty list encodes as no bytes. The data length is encoded as given, not checked against the
 * shape. Throws TensorError for duplicate names, non-ASCII or over-long datatypes, and
 * dimensions that are not non-negative safe integers.
 */
export function canonicalTensorBytes(tensors: readonly RawTensor[]): Uint8Array {
  // A fresh buffer even for one record: callers may keep or change it.
  const chunks = canonicalChunks(tensors)
  return chunks.length === 1 ? new Uint8Array(chunks[0]!) : concatBytes(chunks)
}

const toHex = (bytes: Uint8Array): Hex => `0x${bytesToHex(bytes)}`

export const SALT_BYTES = 32

/** A fresh random salt for `inputCommitment` (WebCrypto's getRandomValues). */
export function newSalt(): Uint8Array {
  return randomBytes(SALT_BYTES)
}

/**
 * `sha256(salt ‖ canonicalTensorBytes(inputs))`: binds the attestation to the inputs without
 * revealing them (the salt keeps small input spaces from being guessed). `salt` is 32 bytes.
 *
 * SHA-256, not keccak256: this hash runs over every input byte on the device and again on the
 * edge for every job, and SHA-256 is native in both runtimes (hash.ts: ~6x keccak in
 * WebAssembly). No contract hashes tensors; the commitment is only carried in the leaf, and a
 * caller opening it needs any SHA-256. Protocol version 2 made this change.
 */
export function inputCommitment(salt: Uint8Array, inputs: readonly RawTensor[]): Hex {
  if (salt.length !== SALT_BYTES) throw new RangeError(`salt must be ${SALT_BYTES} bytes, got ${salt.length}`)
  return toHex(sha256Chunks([salt, ...canonicalChunks(inputs)]))
}

/** `sha256(canonicalTensorBytes(outputs))` (SHA-256 for the reason given at inputCommitment). */
export function outputHash(outputs: readonly RawTensor[]): Hex {
  return toHex(sha256Chunks(canonicalChunks(outputs)))
}

// ---------------------------------------------------------------------------------------------
// ABI words, EIP-712 hashing and the on-chain leaf
// ---------------------------------------------------------------------------------------------

const HEX_BYTES32 = /^0x[0-9a-fA-F]{64}$/
const U64_MAX = (1n << 64n) - 1n
const U256_MAX = (1n << 256n) - 1n

/** Writes 32 bytes of hex (`field` names it in errors) at `out[offset..]`. */
function putBytes32(out: Uint8Array, offset: number, hex: Hex, field: string): void {
  if (typeof hex !== 'string' || !HEX_BYTES32.test(hex)) throw new ProtocolError('must be 32 bytes of 0x-prefixed hex', field)
  out.set(hexToBytes(hex.slice(2)), offset)
}

/** Writes an address left-padded to a 32-byte word. */
function putAddress(out: Uint8Array, offset: number, hex: Hex, field: string): void {
  if (typeof hex !== 'string' || !isAddress(hex)) throw new ProtocolError('must be a 20-byte 0x-prefixed hex address', field)
  out.fill(0, offset, offset + 12)
  out.set(hexToBytes(hex.slice(2)), offset + 12)
}

/** Writes an unsigned integer as a big-endian 32-byte word. */
function putUint(out: Uint8Array, offset: number, value: bigint, max: bigint, field: string): void {
  if (typeof value !== 'bigint' || value < 0n || value > max) {
    throw new ProtocolError(`must be an integer from 0 to ${max}`, field)
  }
  // Small values (prices, times, seqs) fit a double: byte by byte without BigInt arithmetic,
  // which made ABI-encoding the leaves of a 100,000-attestation batch take seconds.
  if (value <= BigInt(Number.MAX_SAFE_INTEGER)) {
    let v = Number(value)
    out.fill(0, offset, offset + 24)
    for (let i = offset + 31; i >= offset + 24; i--) {
      out[i] = v % 256
      v = Math.floor(v / 256)
    }
    return
  }
  out.set(hexToBytes(value.toString(16).padStart(64, '0')), offset)
}

/** The attestation's seven fields as ABI words, at `out[offset..offset + 224]`. */
function putAttestationWords(out: Uint8Array, offset: number, a: Attestation): void {
  putBytes32(out, offset, a.jobId, 'jobId')
  putBytes32(out, offset + 32, a.modelHash, 'modelHash')
  putBytes32(out, offset + 64, a.inputHash, 'inputHash')
  putBytes32(out, offset + 96, a.outputHash, 'outputHash')
  putAddress(out, offset + 128, a.device, 'device')
  putUint(out, offset + 160, a.price, U256_MAX, 'price')
  putUint(out, offset + 192, a.completedAt, U64_MAX, 'completedAt')
}

const keccakText = (text: string) => keccak256(utf8ToBytes(text))

const DOMAIN_TYPEHASH = keccakText('EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)')
const ATTESTATION_TYPEHASH = keccakText(
  `Attestation(${ATTESTATION_TYPES.Attestation.map((f) => `${f.type} ${f.name}`).join(',')})`,
)
const NAME_HASH = keccakText(ATTESTATION_DOMAIN_NAME)
const VERSION_HASH = keccakText(ATTESTATION_DOMAIN_VERSION)

const domainSeparators = new Map<string, Uint8Array>()

/** The EIP-712 domain separator (cached for the few domains a process uses). */
export function attestationDomainSeparator(domain: AttestationDomain): Uint8Array {
  const key = `${domain.chainId}:${String(domain.verifyingContract).toLowerCase()}`
  let separator = domainSeparators.get(key)
  if (!separator) {
    const words = new Uint8Array(5 * 32)
    words.set(DOMAIN_TYPEHASH, 0)
    words.set(NAME_HASH, 32)
    words.set(VERSION_HASH, 64)
    putUint(words, 96, domain.chainId, U256_MAX, 'domain.chainId')
    putAddress(words, 128, domain.verifyingContract, 'domain.verifyingContract')
    separator = keccak256(words)
    if (domainSeparators.size >= 16) domainSeparators.clear()
    domainSeparators.set(key, separator)
  }
  return separator
}

/** EIP-712 `hashStruct(attestation)`. */
export function attestationStructHash(attestation: Attestation): Uint8Array {
  const words = new Uint8Array(8 * 32)
  words.set(ATTESTATION_TYPEHASH, 0)
  putAttestationWords(words, 32, attestation)
  return keccak256(words)
}

/**
 * The 32-byte EIP-712 digest that is signed: `keccak256(0x1901 ‖ domainSeparator ‖
 * hashStruct(attestation))` with domain `EIP712Domain(string name,string version,uint256
 * chainId,address verifyingContract)`, name "depinfer", version "1". Equals viem's
 * `hashTypedData`. Throws ProtocolError naming the field when one is malformed or out of range.
 */
export function attestationDigest(domain: AttestationDomain, attestation: Attestation): Uint8Array {
  return eip712Digest(domain, attestationStructHash(attestation))
}

/** `keccak256(0x1901 ‖ domainSeparator ‖ structHash)`. */
function eip712Digest(domain: AttestationDomain, structHash: Uint8Array): Uint8Array {
  const message = new Uint8Array(2 + 32 + 32)
  message[0] = 0x19
  message[1] = 0x01
  message.set(attestationDomainSeparator(domain), 2)
  message.set(structHash, 34)
  return keccak256(message)
}

const typedDataDomain = (domain: AttestationDomain) => ({
  name: ATTESTATION_DOMAIN_NAME,
  version: ATTESTATION_DOMAIN_VERSION,
  chainId: domain.chainId,
  verifyingContract: domain.verifyingContract,
})

/** The typed data in viem's `signTypedData` / `hashTypedData` form (e.g. for wallets). */
export function attestationTypedData(domain: AttestationDomain, attestation: Attestation) {
  return {
    domain: typedDataDomain(domain),
    types: ATTESTATION_TYPES,
    primaryType: 'Attestation' as const,
    message: { ...attestation },
  }
}

// ---------------------------------------------------------------------------------------------
// Batch signatures
// ---------------------------------------------------------------------------------------------

/**
 * The EIP-712 type a device signs once for several attestations (`signAttestations`): `root` is
 * the Merkle root (merkle.ts: sorted leaves, sorted-pair keccak256, as OpenZeppelin's
 * `MerkleProof`) over the attestations' `hashStruct`s.
 */
export const ATTESTATION_BATCH_TYPES = { AttestationBatch: [{ name: 'root', type: 'bytes32' }] } as const
const ATTESTATION_BATCH_TYPEHASH = keccakText('AttestationBatch(bytes32 root)')

/** The EIP-712 digest of `AttestationBatch(root)` in the attestation domain (viem's `hashTypedData`). */
export function attestationBatchDigest(domain: AttestationDomain, root: Hex): Uint8Array {
  const words = new Uint8Array(2 * 32)
  words.set(ATTESTATION_BATCH_TYPEHASH, 0)
  putBytes32(words, 32, root, 'root')
  return eip712Digest(domain, keccak256(words))
}

/** `AttestationBatch(root)` in viem's `signTypedData` / `hashTypedData` form. */
export function attestationBatchTypedData(domain: AttestationDomain, root: Hex) {
  return {
    domain: typedDataDomain(domain),
    types: ATTESTATION_BATCH_TYPES,
    primaryType: 'AttestationBatch' as const,
    message: { root },
  }
}

/** A signature split into the 65-byte ECDSA signature and the batch proof (empty: a lone attestation). */
export interface AttestationSignatureParts {
  ecdsa: Uint8Array
  proof: Hex[]
}

/**
 * Splits an attestation's signature: 65 bytes r ‖ s ‖ v, then (signed in a batch) the
 * attestation's Merkle proof, 32 bytes per level. Undefined when the length is not 65 + 32k
 * with k ≤ MAX_BATCH_PROOF_LEVELS or the hex is malformed.
 */
export function splitAttestationSignature(signature: Hex | Uint8Array): AttestationSignatureParts | undefined {
  let bytes: Uint8Array
  if (signature instanceof Uint8Array) bytes = signature
  else if (typeof signature === 'string' && /^0x([0-9a-fA-F]{2})*$/.test(signature)) bytes = hexToBytes(signature.slice(2))
  else return undefined
  const levels = (bytes.length - 65) / 32
  if (!Number.isInteger(levels) || levels < 0 || levels > MAX_BATCH_PROOF_LEVELS) return undefined
  const proof: Hex[] = []
  for (let at = 65; at < bytes.length; at += 32) proof.push(toHex(bytes.subarray(at, at + 32)))
  return { ecdsa: bytes.subarray(0, 65), proof }
}

/**
 * The digest the ECDSA part of `signature` signs for this attestation: the attestation's own
 * EIP-712 digest for a lone signature, else that of `AttestationBatch(root)` with the root the
 * proof leads to from the attestation's `hashStruct`.
 */
function signedDigest(domain: AttestationDomain, attestation: Attestation, proof: readonly Hex[]): { digest: Uint8Array; root?: Hex } {
  if (proof.length === 0) return { digest: attestationDigest(domain, attestation) }
  const root = processMerkleProof(toHex(attestationStructHash(attestation)), proof)
  return { digest: attestationBatchDigest(domain, root), root }
}

/**
 * Signs several attestations with one ECDSA signature, returning each attestation's signature
 * (in order): the 65-byte signature of `AttestationBatch(root)` followed by the attestation's
 * proof. One attestation is signed alone (`signAttestation`: the plain 65 bytes wallets make).
 * A device signs the jobs of one onnxruntime batch together: signing was ~0.4 ms of its ~2 ms
 * per job, and the edge verifies each root once (`VerifiedBatchRoots`). With `nonces` the
 * signature uses a nonce made ahead of time (ecdsa-nonces.ts) instead of RFC 6979's.
 */
export function signAttestations(
  privateKey: Uint8Array,
  domain: AttestationDomain,
  attestations: readonly Attestation[],
  nonces?: EcdsaNonces,
): Hex[] {
  if (attestations.length === 0) throw new RangeError('nothing to sign')
  if (attestations.length === 1) return [signAttestation(privateKey, domain, attestations[0]!, nonces)]
  if (attestations.length > 2 ** MAX_BATCH_PROOF_LEVELS) throw new RangeError(`at most ${2 ** MAX_BATCH_PROOF_LEVELS} attestations per batch`)
  const tree = buildMerkleTree(attestations.map((a) => toHex(attestationStructHash(a))))
  const signature = signDigest(privateKey, attestationBatchDigest(domain, tree.root), nonces)
  return attestations.map((_, i) => `${signature}${tree.proof(i).map((node) => node.slice(2)).join('')}` as Hex)
}

/**
 * Roots of batch signatures already verified, per device key and domain, so the other
 * attestations of a batch cost a proof (a few keccak256) instead of a signature check. Bounded:
 * the oldest are forgotten first (a forgotten root is verified again, nothing more).
 */
export class VerifiedBatchRoots {
  readonly #entries = new Set<string>()
  constructor(private readonly capacity = 4096) {}

  static key(address: Hex, domain: AttestationDomain, root: Hex, ecdsa: Uint8Array): string {
    return `${address}:${domain.chainId}:${domain.verifyingContract.toLowerCase()}:${root}:${bytesToHex(ecdsa)}`
  }

  has(key: string): boolean {
    return this.#entries.has(key)
  }

  add(key: string): void {
    if (this.#entries.size >= this.capacity) this.#entries.delete(this.#entries.values().next().value!)
    this.#entries.add(key)
  }
}

/**
 * The AttestationRegistry leaf of an attestation numbered `seq` (uint64):
 * `keccak256(keccak256(abi.encode(jobId, modelHash, inputHash, outputHash, device, price,
 * completedAt, seq)))`, i.e. OZ `StandardMerkleTree` with `ATTESTATION_LEAF_TYPES`.
 */
export function attestationLeaf(attestation: Attestation, seq: bigint): Hex {
  const words = new Uint8Array(8 * 32)
  putAttestationWords(words, 0, attestation)
  putUint(words, 224, seq, U64_MAX, 'seq')
  return toHex(keccak256(keccak256(words)))
}

// ---------------------------------------------------------------------------------------------
// Keys and signatures (secp256k1, Ethereum conventions)
// ---------------------------------------------------------------------------------------------

type Point = WeierstrassPoint<bigint>
const { Point: Secp256k1Point } = secp256k1
const Fn = Secp256k1Point.Fn
const CURVE_ORDER = Fn.ORDER
const HALF_ORDER = CURVE_ORDER >> 1n

/** The compressed (33-byte) public key of a 32-byte secp256k1 private key. */
export function publicKeyOf(privateKey: Uint8Array): Uint8Array {
  return secp256k1.getPublicKey(privateKey, true)
}

function addressOfPoint(point: Point): Hex {
  const uncompressed = point.toBytes(false) // 0x04 ‖ x ‖ y
  return toHex(keccak256(uncompressed.subarray(1)).subarray(12))
}

/**
 * The Ethereum address (lowercase) of a public key, compressed (33 bytes) or uncompressed
 * (65 bytes, 0x04 prefix). Throws if the bytes are not a point on the curve.
 */
export function addressOf(publicKey: Uint8Array): Hex {
  return addressOfPoint(Secp256k1Point.fromBytes(publicKey))
}

function signatureBytes(signature: Hex | Uint8Array): Uint8Array | undefined {
  if (signature instanceof Uint8Array) return signature.length === 65 ? signature : undefined
  return typeof signature === 'string' && /^0x[0-9a-fA-F]{130}$/.test(signature) ? hexToBytes(signature.slice(2)) : undefined
}

interface ParsedSignature {
  r: bigint
  s: bigint
  /** 0 or 1: the parity of R's y (v - 27). */
  recovery: number
}

/** r ‖ s ‖ v with 0 < r < n, 0 < s ≤ n/2 (low s) and v ∈ {27, 28}; undefined otherwise. */
function parseSignature(signature: Hex | Uint8Array): ParsedSignature | undefined {
  const bytes = signatureBytes(signature)
  if (!bytes) return undefined
  const v = bytes[64]!
  if (v !== 27 && v !== 28) return undefined
  const r = bytesToNumberBE(bytes.subarray(0, 32))
  const s = bytesToNumberBE(bytes.subarray(32, 64))
  if (r === 0n || r >= CURVE_ORDER || s === 0n || s > HALF_ORDER) return undefined
  return { r, s, recovery: v - 27 }
}

/**
 * Signs the attestation's EIP-712 digest (low s) and returns the 65-byte r ‖ s ‖ v signature
 * Ethereum wallets produce. Without `nonces` the nonce is RFC 6979's, so the signature equals
 * viem's `signTypedData`; with them, one of the pool's random nonces (same verification).
 */
export function signAttestation(privateKey: Uint8Array, domain: AttestationDomain, attestation: Attestation, nonces?: EcdsaNonces): Hex {
  return signDigest(privateKey, attestationDigest(domain, attestation), nonces)
}

/** The 65-byte r ‖ s ‖ v signature of a 32-byte digest (low s). */
export function signDigest(privateKey: Uint8Array, digest: Uint8Array, nonces?: EcdsaNonces): Hex {
  if (nonces) return toHex(signDigestWithNonce(privateKey, digest, nonces))
  // prehash: false — the digest is what is signed (noble v2 would otherwise SHA-256 it first).
  const recovered = secp256k1.sign(digest, privateKey, { prehash: false, lowS: true, format: 'recovered' })
  const recovery = recovered[0]!
  // 2 and 3 (R.x ≥ n) happen with probability ~2^-128 and have no Ethereum encoding.
  if (recovery > 1) throw new Error('signature has no Ethereum encoding (R.x >= n); sign again')
  const out = new Uint8Array(65)
  out.set(recovered.subarray(1, 65), 0)
  out[64] = 27 + recovery
  return toHex(out)
}

/**
 * Builds the generator's table that signing uses (noble's constant-time, blinded path) with
 * window 8 instead of noble's 6: measured 0.47 → 0.37 ms per signature here, for ~65 ms and a
 * few MB once per process. A device signs every job, so it calls this at start; signing works
 * (slower) without it.
 */
export function prepareSigning(): void {
  Secp256k1Point.BASE.precompute(SIGNING_WINDOW, false)
  // The blinded path builds its (wider) table on first use: use it now, with a throwaway key.
  secp256k1.sign(new Uint8Array(32), secp256k1.utils.randomSecretKey(), { prehash: false })
}
const SIGNING_WINDOW = 8

/**
 * The address that signed the attestation (ecrecover), alone or in a batch (then the root its
 * proof leads to). Throws ProtocolError (field `signature`) for a signature that is malformed,
 * high-s, has v other than 27/28, or recovers no key; ProtocolError naming the field for a
 * malformed attestation.
 */
export function recoverAttestationSigner(domain: AttestationDomain, attestation: Attestation, signature: Hex | Uint8Array): Hex {
  const parts = splitAttestationSignature(signature)
  const parsed = parts && parseSignature(parts.ecdsa)
  if (!parts || !parsed) throw new ProtocolError(SIGNATURE_FORMAT, 'signature')
  const { digest } = signedDigest(domain, attestation, parts.proof)
  let point: Point
  try {
    point = new secp256k1.Signature(parsed.r, parsed.s, parsed.recovery).recoverPublicKey(digest) as Point
  } catch {
    throw new ProtocolError('recovers no public key', 'signature')
  }
  return addressOfPoint(point)
}

/**
 * The address that signed a 32-byte digest (ecrecover), or undefined for a signature that is
 * malformed, high-s, has v other than 27/28, or recovers no key.
 */
export function recoverDigestSigner(digest: Uint8Array, signature: Hex | Uint8Array): Hex | undefined {
  const parsed = parseSignature(signature)
  if (!parsed) return undefined
  try {
    return addressOfPoint(new secp256k1.Signature(parsed.r, parsed.s, parsed.recovery).recoverPublicKey(digest) as Point)
  } catch {
    return undefined
  }
}

const SIGNATURE_FORMAT = `must be 65 bytes r ‖ s ‖ v with low s and v = 27 or 28, then at most ${MAX_BATCH_PROOF_LEVELS} 32-byte proof elements`

declare const PREPARED: unique symbol

/**
 * A device's public key decoded once, with precomputed multiples for fast verification.
 * Opaque; make one per device with `preparePublicKey` and keep it while the device is known.
 */
export interface PreparedPublicKey {
  /** The compressed public key. */
  readonly publicKey: Uint8Array
  /** Its address (lowercase). */
  readonly address: Hex
  readonly [PREPARED]: true
}

const preparedPoints = new WeakMap<PreparedPublicKey, Point>()

/**
 * The generator with its own wider table for verification with prepared keys: noble's
 * `Point.BASE` comes with window 6; window 10 cuts its multiplication by roughly a third for
 * ~1.5 MB and ~0.15 s once per process (built by the first `preparePublicKey`). A separate
 * point object, so noble's shared BASE (and every other user of it) is left as it is.
 */
const BASE_WINDOW = 10
let fastBase: Point | undefined
function preparedBase(): Point {
  if (!fastBase) {
    const base = Secp256k1Point.fromAffine(Secp256k1Point.BASE.toAffine())
    base.precompute(BASE_WINDOW)
    base.multiplyUnsafe(3n)
    fastBase = base
  }
  return fastBase
}

/** Default window of a prepared key's table (see `preparePublicKey`). */
export const PREPARED_KEY_WINDOW = 8

/**
 * Decodes and validates a public key (compressed or uncompressed) once and precomputes a
 * fixed-window table of its multiples, so `verifyAttestationSignature` needs no point
 * decompression and about half the point additions. `windowSize` trades memory and setup time
 * for speed: 8 (the default) ≈ 33 windows × 128 points, measured ~0.5 MB of heap and ~30 ms
 * to build per key; 6 ≈ 0.15 MB; 4 ≈ 0.06 MB (slower verification). Throws for bytes that are
 * not a point on the curve.
 */
export function preparePublicKey(publicKey: Uint8Array, options: { windowSize?: number } = {}): PreparedPublicKey {
  const windowSize = options.windowSize ?? PREPARED_KEY_WINDOW
  if (!Number.isInteger(windowSize) || windowSize < 2 || windowSize > 12) {
    throw new RangeError(`windowSize must be an integer from 2 to 12, got ${windowSize}`)
  }
  const point = Secp256k1Point.fromBytes(publicKey)
  preparedBase()
  point.precompute(windowSize)
  // Build the table now (verification multiplies with multiplyUnsafe, which uses this table)
  // rather than on the first signature. Not `precompute(w, false)`: that builds the wider
  // table of the constant-time blinded path instead, which verification never uses.
  point.multiplyUnsafe(3n)
  const prepared = Object.freeze({ publicKey: point.toBytes(true), address: addressOfPoint(point) }) as PreparedPublicKey
  preparedPoints.set(prepared, point)
  return prepared
}

/**
 * Whether `signature` is the device's signature of the attestation, checked against its known
 * public key (raw bytes, or prepared with `preparePublicKey` — much faster) without recovery.
 * True exactly when `recoverAttestationSigner` would return the key's address: the signature
 * must be 65 bytes (then a batch proof, if signed in a batch), low s, with v = 27/28 matching
 * R's parity. With `verifiedRoots` (and a prepared key) a batch root already verified for this
 * key, domain and signature is not checked again. Returns false for any bad signature; throws
 * ProtocolError for a malformed attestation and Error for a public key that is not a point on
 * the curve.
 */
export function verifyAttestationSignature(
  publicKey: Uint8Array | PreparedPublicKey,
  domain: AttestationDomain,
  attestation: Attestation,
  signature: Hex | Uint8Array,
  verifiedRoots?: VerifiedBatchRoots,
): boolean {
  const preparedPoint = publicKey instanceof Uint8Array ? undefined : preparedPoints.get(publicKey)
  if (!(publicKey instanceof Uint8Array) && !preparedPoint) throw new TypeError('not a key made by preparePublicKey')
  const parts = splitAttestationSignature(signature)
  const parsed = parts && parseSignature(parts.ecdsa)
  if (!parts || !parsed) return false
  const { digest, root } = signedDigest(domain, attestation, parts.proof)
  // Only prepared keys use the cache: their address names the key the root was checked against.
  const cacheKey = root !== undefined && verifiedRoots && !(publicKey instanceof Uint8Array)
    ? VerifiedBatchRoots.key(publicKey.address, domain, root, parts.ecdsa)
    : undefined
  if (cacheKey !== undefined && verifiedRoots!.has(cacheKey)) return true
  const valid = verifyDigest(preparedPoint ?? (publicKey as Uint8Array), digest, parsed)
  if (valid && cacheKey !== undefined) verifiedRoots!.add(cacheKey)
  return valid
}

function verifyDigest(publicKey: Point | Uint8Array, digest: Uint8Array, { r, s, recovery }: ParsedSignature): boolean {
  const preparedPoint = publicKey instanceof Uint8Array ? undefined : publicKey
  // ECDSA (SEC 1 4.1.4): R = (h/s)·G + (r/s)·P must have x = r and, for v, the y parity.
  const h = Fn.create(bytesToNumberBE(digest))
  const sInv = Fn.inv(s)
  const u1 = Fn.mul(h, sInv)
  const u2 = Fn.mul(r, sInv)
  const R = preparedPoint
    ? preparedBase().multiplyUnsafe(u1).add(preparedPoint.multiplyUnsafe(u2))
    : Secp256k1Point.BASE.mulAddUnsafe(u1, Secp256k1Point.fromBytes(publicKey as Uint8Array), u2)
  if (R.is0()) return false
  const { x, y } = R.toAffine()
  // x = r exactly (not r + n): v = 27/28 cannot express the overflow case.
  return x === r && Number(y & 1n) === recovery
}

// ---------------------------------------------------------------------------------------------
// Wire form
// ---------------------------------------------------------------------------------------------

/**
 * Validates the JSON wire form (`AttestationSchema`; throws ZodError) and converts it: hex
 * lowercased, price and completedAt as bigints.
 */
export function attestationFromWire(wire: unknown): SignedAttestation {
  const w = AttestationSchema.parse(wire)
  const lower = (hex: string) => hex.toLowerCase() as Hex
  return {
    attestation: {
      jobId: lower(w.jobId),
      modelHash: lower(w.modelHash),
      inputHash: lower(w.inputHash),
      outputHash: lower(w.outputHash),
      device: lower(w.device),
      price: BigInt(w.price),
      completedAt: BigInt(w.completedAt),
    },
    signature: lower(w.signature),
  }
}

/** The JSON wire form: hex lowercased, price and completedAt as decimal strings. */
export function attestationToWire(attestation: Attestation, signature: Hex): AttestationWire {
  return AttestationSchema.parse({
    jobId: attestation.jobId.toLowerCase(),
    modelHash: attestation.modelHash.toLowerCase(),
    inputHash: attestation.inputHash.toLowerCase(),
    outputHash: attestation.outputHash.toLowerCase(),
    device: attestation.device.toLowerCase(),
    price: attestation.price.toString(),
    completedAt: attestation.completedAt.toString(),
    signature: signature.toLowerCase(),
  })
}
