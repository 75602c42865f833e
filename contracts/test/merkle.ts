/**
 * Test helper: an OpenZeppelin-StandardMerkleTree-compatible tree over attestation tuples,
 * written independently of viem/ethers (keccak from @noble/hashes, ABI encoding by hand).
 *
 * Layout follows @openzeppelin/merkle-tree: leaves sorted by hash, stored in reverse at the end
 * of a flat array of 2n-1 nodes, node i = hashPair(node 2i+1, node 2i+2) with sorted pairs.
 */
import { keccak_256 } from '@noble/hashes/sha3.js'
import { bytesToHex, concatBytes, hexToBytes } from '@noble/hashes/utils.js'

export type Hex = `0x${string}`

export interface Attestation {
  jobId: Hex
  modelHash: Hex
  inputHash: Hex
  outputHash: Hex
  device: Hex
  price: bigint
  completedAt: bigint
  seq: bigint
}

const toHex = (bytes: Uint8Array): Hex => `0x${bytesToHex(bytes)}`
const fromHex = (hex: Hex): Uint8Array => hexToBytes(hex.slice(2))

/** A 32-byte ABI word: big-endian, left-padded. */
function word(value: bigint | Uint8Array, bits = 256): Uint8Array {
  const out = new Uint8Array(32)
  if (value instanceof Uint8Array) {
    if (value.length > 32) throw new Error('word too long')
    out.set(value, 32 - value.length)
    return out
  }
  if (value < 0n || value >= 1n << BigInt(bits)) throw new Error(`uint${bits} out of range: ${value}`)
  let v = value
  for (let i = 31; i >= 0 && v > 0n; i--) {
    out[i] = Number(v & 0xffn)
    v >>= 8n
  }
  return out
}

function bytes32(hex: Hex): Uint8Array {
  const b = fromHex(hex)
  if (b.length !== 32) throw new Error(`not bytes32: ${hex}`)
  return b
}

/** abi.encode(bytes32,bytes32,bytes32,bytes32,address,uint256,uint64,uint64) — all static words. */
export function encodeAttestation(a: Attestation): Uint8Array {
  const device = fromHex(a.device)
  if (device.length !== 20) throw new Error(`not an address: ${a.device}`)
  return concatBytes(
    bytes32(a.jobId),
    bytes32(a.modelHash),
    bytes32(a.inputHash),
    bytes32(a.outputHash),
    word(device),
    word(a.price),
    word(a.completedAt, 64),
    word(a.seq, 64),
  )
}

/** StandardMerkleTree leaf: keccak256(bytes.concat(keccak256(abi.encode(...)))). */
export function leafHash(a: Attestation): Hex {
  return toHex(keccak_256(keccak_256(encodeAttestation(a))))
}

function compare(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0)
    if (d !== 0) return d
  }
  return 0
}

export function hashPair(a: Hex, b: Hex): Hex {
  const [x, y] = [fromHex(a), fromHex(b)].sort(compare) as [Uint8Array, Uint8Array]
  return toHex(keccak_256(concatBytes(x, y)))
}

export class AttestationMerkleTree {
  readonly root: Hex
  private readonly tree: Hex[]
  private readonly indexByLeaf = new Map<Hex, number>()

  constructor(readonly values: readonly Attestation[]) {
    if (values.length === 0) throw new Error('empty tree')
    const leaves = values.map(leafHash).sort((x, y) => compare(fromHex(x), fromHex(y)))
    const size = 2 * leaves.length - 1
    const tree = new Array<Hex>(size)
    leaves.forEach((leaf, i) => {
      tree[size - 1 - i] = leaf
      this.indexByLeaf.set(leaf, size - 1 - i)
    })
    for (let i = size - 1 - leaves.length; i >= 0; i--) {
      tree[i] = hashPair(node(tree, 2 * i + 1), node(tree, 2 * i + 2))
    }
    this.tree = tree
    this.root = node(tree, 0)
  }

  proof(a: Attestation): Hex[] {
    let index = this.indexByLeaf.get(leafHash(a))
    if (index === undefined) throw new Error('attestation is not in the tree')
    const proof: Hex[] = []
    while (index > 0) {
      proof.push(node(this.tree, index % 2 === 1 ? index + 1 : index - 1))
      index = Math.floor((index - 1) / 2)
    }
    return proof
  }
}

function node(tree: readonly Hex[], i: number): Hex {
  const n = tree[i]
  if (n === undefined) throw new Error(`missing tree node ${i}`)
  return n
}
