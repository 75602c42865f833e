/**
 * Merkle trees over 32-byte leaves, compatible with OpenZeppelin's `StandardMerkleTree`
 * (`@openzeppelin/merkle-tree` 1.x, default options) and with `MerkleProof.verify` on-chain.
 *
 * The layout is OZ's, exactly, so roots and proofs agree with theirs for the same leaves:
 * - the leaves (already hashed, e.g. `attestationLeaf`) are sorted ascending by value
 *   (`sortLeaves: true`, OZ's default; the sort is stable, so equal leaves keep their order);
 * - the tree is a flat array of `2n - 1` nodes: sorted leaf `i` sits at index `2n - 2 - i`
 *   (leaves fill the end in reverse) and inner node `i` is `hashPair(node[2i+1], node[2i+2])`,
 *   filled from the last inner node down to the root at index 0;
 * - `hashPair(a, b) = keccak256(min(a, b) ‖ max(a, b))` (sorted pair), as `MerkleProof` does;
 * - a proof lists the siblings from the leaf up to (not including) the root.
 * One leaf is its own root, with an empty proof. An empty tree is an error (as in OZ).
 *
 * Nodes are kept as bytes in one buffer; hex strings are made only for the root and for proof
 * elements, once per node, so proving every leaf of a large tree stays cheap.
 */
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js'
import type { Hex } from './attestation.js'
import { keccak256 } from './keccak.js'

export interface MerkleTree {
  /** The root, as lowercase hex. */
  readonly root: Hex
  /** The number of leaves. */
  readonly length: number
  /**
   * The proof of a leaf, given by its value or by its index in the array passed to
   * `buildMerkleTree`. Throws if the leaf is not in the tree. For a leaf given more than once,
   * any of its positions is proven (all of their proofs verify).
   */
  proof(leafOrIndex: Hex | number): Hex[]
}

const HEX32 = /^0x[0-9a-fA-F]{64}$/

function nodeBytes(hex: string, what: string): Uint8Array {
  if (!HEX32.test(hex)) throw new Error(`${what} must be 32 bytes of 0x-prefixed hex, got ${JSON.stringify(hex)}`)
  return hexToBytes(hex.slice(2))
}

/** Compares 32-byte nodes at `a[ia..]` and `b[ib..]` as big-endian numbers. */
function compare32(a: Uint8Array, ia: number, b: Uint8Array, ib: number): number {
  for (let k = 0; k < 32; k++) {
    const d = a[ia + k]! - b[ib + k]!
    if (d !== 0) return d
  }
  return 0
}

/** keccak256 of the sorted pair `a[ia..ia+32]`, `b[ib..ib+32]`. */
function hashPairBytes(a: Uint8Array, ia: number, b: Uint8Array, ib: number): Uint8Array {
  const pair = new Uint8Array(64)
  const aFirst = compare32(a, ia, b, ib) <= 0
  pair.set(a.subarray(ia, ia + 32), aFirst ? 0 : 32)
  pair.set(b.subarray(ib, ib + 32), aFirst ? 32 : 0)
  return keccak256(pair)
}

/** `keccak256(min(a, b) ‖ max(a, b))`: an inner node of the tree (OZ `standardNodeHash`). */
export function hashMerklePair(a: Hex, b: Hex): Hex {
  return `0x${bytesToHex(hashPairBytes(nodeBytes(a, 'node'), 0, nodeBytes(b, 'node'), 0))}`
}

/**
 * Builds the tree over `leaves` (32-byte hashes; upper- or lowercase hex). Roughly 0.5 s for
 * 100,000 leaves; proofs cost one array copy each after the first use of a node.
 */
export function buildMerkleTree(leaves: readonly Hex[]): MerkleTree {
  const n = leaves.length
  if (n === 0) throw new Error('a Merkle tree needs at least one leaf')
  const normalized = leaves.map((leaf, i) => {
    if (!HEX32.test(leaf)) throw new Error(`leaves[${i}] must be 32 bytes of 0x-prefixed hex, got ${JSON.stringify(leaf)}`)
    return leaf.toLowerCase() as Hex
  })
  // Same-length lowercase hex strings order exactly as the numbers they spell, so a string sort
  // is OZ's numeric sort. Array.prototype.sort is stable, as OZ relies on.
  const order = Array.from({ length: n }, (_, i) => i)
  order.sort((x, y) => {
    const a = normalized[x]!
    const b = normalized[y]!
    return a < b ? -1 : a > b ? 1 : 0
  })

  const size = 2 * n - 1
  const nodes = new Uint8Array(32 * size)
  const hexes = new Array<Hex | undefined>(size)
  /** Tree index of each input leaf, by its position in `leaves`. */
  const treeIndexOf = new Int32Array(n)
  order.forEach((valueIndex, sortedIndex) => {
    const treeIndex = size - 1 - sortedIndex
    const hex = normalized[valueIndex]!
    nodes.set(hexToBytes(hex.slice(2)), 32 * treeIndex)
    hexes[treeIndex] = hex
    treeIndexOf[valueIndex] = treeIndex
  })
  for (let i = size - 1 - n; i >= 0; i--) {
    nodes.set(hashPairBytes(nodes, 32 * (2 * i + 1), nodes, 32 * (2 * i + 2)), 32 * i)
  }

  const hexAt = (i: number): Hex => {
    let hex = hexes[i]
    if (hex === undefined) {
      hex = `0x${bytesToHex(nodes.subarray(32 * i, 32 * i + 32))}`
      hexes[i] = hex
    }
    return hex
  }
  let byLeaf: Map<string, number> | undefined

  return {
    root: hexAt(0),
    length: n,
    proof(leafOrIndex: Hex | number): Hex[] {
      let index: number | undefined
      if (typeof leafOrIndex === 'number') {
        if (!Number.isInteger(leafOrIndex) || leafOrIndex < 0 || leafOrIndex >= n) {
          throw new RangeError(`leaf index ${leafOrIndex} is out of range for ${n} leaves`)
        }
        index = treeIndexOf[leafOrIndex]!
      } else {
        if (!byLeaf) {
          byLeaf = new Map()
          for (let v = 0; v < n; v++) byLeaf.set(normalized[v]!, treeIndexOf[v]!)
        }
        index = byLeaf.get(leafOrIndex.toLowerCase())
        if (index === undefined) throw new Error(`leaf ${leafOrIndex} is not in the tree`)
      }
      const proof: Hex[] = []
      while (index > 0) {
        proof.push(hexAt(index % 2 === 1 ? index + 1 : index - 1))
        index = (index - 1) >> 1
      }
      return proof
    },
  }
}

/**
 * The root that `proof` leads to from `leaf` (OZ `processProof`, `MerkleProof.processProof`).
 * Throws if any node is not 32 bytes of hex.
 */
export function processMerkleProof(leaf: Hex, proof: readonly Hex[]): Hex {
  let node = nodeBytes(leaf, 'leaf')
  proof.forEach((sibling, i) => {
    node = hashPairBytes(node, 0, nodeBytes(sibling, `proof[${i}]`), 0)
  })
  return `0x${bytesToHex(node)}`
}

/**
 * Whether `proof` proves `leaf` under `root` (as `MerkleProof.verify`). False, not an error,
 * when any of them is not 32 bytes of hex.
 */
export function verifyMerkleProof(root: Hex, leaf: Hex, proof: readonly Hex[]): boolean {
  if (!HEX32.test(root) || !HEX32.test(leaf) || !proof.every((p) => HEX32.test(p))) return false
  return processMerkleProof(leaf, proof) === root.toLowerCase()
}
