import { SimpleMerkleTree, StandardMerkleTree } from '@openzeppelin/merkle-tree'
import { concat, keccak256 } from 'viem'
import { describe, expect, it } from 'vitest'
import { type Attestation, ATTESTATION_LEAF_TYPES, attestationLeaf, type Hex } from './attestation.js'
import { buildMerkleTree, hashMerklePair, processMerkleProof, verifyMerkleProof } from './merkle.js'

/** Deterministic 32-byte leaves (xorshift32), lowercase hex. */
function leaves(count: number, seed: number): Hex[] {
  let x = seed >>> 0 || 1
  return Array.from({ length: count }, () => {
    let hex = '0x'
    for (let i = 0; i < 32; i++) {
      x ^= x << 13
      x >>>= 0
      x ^= x >>> 17
      x ^= x << 5
      x >>>= 0
      hex += (x & 0xff).toString(16).padStart(2, '0')
    }
    return hex as Hex
  })
}

/** MerkleProof.processProof written independently with viem: sorted-pair keccak256. */
function referenceProcessProof(leaf: Hex, proof: readonly Hex[]): Hex {
  return proof.reduce<Hex>((node, sibling) => {
    const [a, b] = BigInt(node) <= BigInt(sibling) ? [node, sibling] : [sibling, node]
    return keccak256(concat([a, b]))
  }, leaf)
}

const SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 16, 100]

describe('buildMerkleTree', () => {
  it.each(SIZES)('matches OpenZeppelin SimpleMerkleTree root and proofs exactly (%i leaves)', (count) => {
    const values = leaves(count, count * 101)
    const ours = buildMerkleTree(values)
    const oz = SimpleMerkleTree.of(values)
    expect(ours.root).toBe(oz.root)
    expect(ours.length).toBe(count)
    values.forEach((leaf, i) => {
      expect(ours.proof(i)).toEqual(oz.getProof(i))
      expect(ours.proof(leaf)).toEqual(oz.getProof(leaf))
    })
  })

  it.each(SIZES)('proves every leaf (%i leaves), checked by an independent processProof', (count) => {
    const values = leaves(count, count * 7)
    const tree = buildMerkleTree(values)
    for (const leaf of values) {
      const proof = tree.proof(leaf)
      expect(referenceProcessProof(leaf, proof)).toBe(tree.root)
      expect(processMerkleProof(leaf, proof)).toBe(tree.root)
      expect(verifyMerkleProof(tree.root, leaf, proof)).toBe(true)
    }
    // A balanced-ish tree: no proof is longer than ceil(log2(n)).
    expect(Math.max(...values.map((leaf) => tree.proof(leaf).length))).toBe(count === 1 ? 0 : Math.ceil(Math.log2(count)))
  })

  it('is StandardMerkleTree over attestation tuples when given attestationLeaf leaves', () => {
    const tuples = Array.from({ length: 9 }, (_, i) => {
      const [jobId, modelHash, inputHash, outputHash] = leaves(4, 1000 + i)
      const a: Attestation = {
        jobId: jobId!,
        modelHash: modelHash!,
        inputHash: inputHash!,
        outputHash: outputHash!,
        device: `0x${'ab'.repeat(19)}${i.toString(16).padStart(2, '0')}`,
        price: 10n ** 18n * BigInt(i),
        completedAt: 1_750_000_000_000n + BigInt(i),
      }
      return { a, seq: 500n + BigInt(i) }
    })
    const oz = StandardMerkleTree.of(
      tuples.map(({ a, seq }) => [a.jobId, a.modelHash, a.inputHash, a.outputHash, a.device, a.price, a.completedAt, seq]),
      [...ATTESTATION_LEAF_TYPES],
    )
    const tree = buildMerkleTree(tuples.map(({ a, seq }) => attestationLeaf(a, seq)))
    expect(tree.root).toBe(oz.root)
    tuples.forEach((_, i) => expect(tree.proof(i)).toEqual(oz.getProof(i)))
  })

  it('is a single leaf\'s own root, with an empty proof', () => {
    const [leaf] = leaves(1, 3) as [Hex]
    const tree = buildMerkleTree([leaf])
    expect(tree.root).toBe(leaf)
    expect(tree.proof(leaf)).toEqual([])
    expect(verifyMerkleProof(leaf, leaf, [])).toBe(true)
  })

  it('hashes a two-leaf tree as keccak256 of the sorted pair', () => {
    const [a, b] = leaves(2, 11) as [Hex, Hex]
    const [lo, hi] = BigInt(a) < BigInt(b) ? [a, b] : [b, a]
    expect(buildMerkleTree([a, b]).root).toBe(keccak256(concat([lo, hi])))
    expect(buildMerkleTree([b, a]).root).toBe(keccak256(concat([lo, hi])))
    expect(hashMerklePair(a, b)).toBe(keccak256(concat([lo, hi])))
    expect(hashMerklePair(b, a)).toBe(keccak256(concat([lo, hi])))
  })

  it('does not depend on the order of the leaves (they are sorted, as OZ does)', () => {
    const values = leaves(33, 5)
    expect(buildMerkleTree([...values].reverse()).root).toBe(buildMerkleTree(values).root)
  })

  it('accepts uppercase hex as the same leaves and answers in lowercase', () => {
    const values = leaves(6, 8)
    const upper = values.map((v) => `0x${v.slice(2).toUpperCase()}` as Hex)
    const tree = buildMerkleTree(upper)
    expect(tree.root).toBe(buildMerkleTree(values).root)
    expect(tree.proof(upper[2]!)).toEqual(tree.proof(values[2]!))
    expect(tree.proof(2).every((node) => node === node.toLowerCase())).toBe(true)
  })

  it('handles duplicate leaves as OZ does', () => {
    const [a, b, c] = leaves(3, 21) as [Hex, Hex, Hex]
    const values = [a, b, a, c, a]
    const tree = buildMerkleTree(values)
    const oz = SimpleMerkleTree.of(values)
    expect(tree.root).toBe(oz.root)
    values.forEach((leaf, i) => {
      expect(tree.proof(i)).toEqual(oz.getProof(i))
      expect(verifyMerkleProof(tree.root, leaf, tree.proof(leaf))).toBe(true)
    })
  })

  it('rejects an empty tree, malformed leaves, unknown leaves and indexes out of range', () => {
    expect(() => buildMerkleTree([])).toThrow()
    expect(() => buildMerkleTree(['0x1234'])).toThrow(/leaves\[0\]/)
    expect(() => buildMerkleTree([...leaves(2, 1), `0x${'zz'.repeat(32)}`])).toThrow(/leaves\[2\]/)
    const tree = buildMerkleTree(leaves(5, 1))
    expect(() => tree.proof(leaves(1, 2)[0]!)).toThrow(/not in the tree/)
    expect(() => tree.proof(5)).toThrow(RangeError)
    expect(() => tree.proof(-1)).toThrow(RangeError)
    expect(() => tree.proof(1.5)).toThrow(RangeError)
  })
})

describe('verifyMerkleProof', () => {
  const values = leaves(7, 77)
  const tree = buildMerkleTree(values)
  const leaf = values[3]!
  const proof = tree.proof(leaf)

  it('accepts the proof and rejects every kind of wrong one', () => {
    expect(verifyMerkleProof(tree.root, leaf, proof)).toBe(true)
    const flip = (hex: Hex) => `${hex.slice(0, -1)}${hex.endsWith('0') ? '1' : '0'}` as Hex
    expect(verifyMerkleProof(tree.root, flip(leaf), proof)).toBe(false) // tampered leaf
    expect(verifyMerkleProof(flip(tree.root), leaf, proof)).toBe(false) // other root
    proof.forEach((_, i) => {
      const tampered = proof.map((node, j) => (i === j ? flip(node) : node))
      expect(verifyMerkleProof(tree.root, leaf, tampered)).toBe(false) // one sibling tampered
    })
    expect(verifyMerkleProof(tree.root, leaf, tree.proof(values[4]!))).toBe(false) // another leaf's proof
    expect(verifyMerkleProof(tree.root, leaf, proof.slice(1))).toBe(false) // truncated
    expect(verifyMerkleProof(tree.root, leaf, [...proof, proof[0]!])).toBe(false) // extended
    expect(verifyMerkleProof(tree.root, leaf, [...proof].reverse())).toBe(false) // reordered
    expect(verifyMerkleProof(tree.root, leaves(1, 999)[0]!, proof)).toBe(false) // a leaf not in the tree
  })

  it('is false, not an error, for malformed input', () => {
    expect(verifyMerkleProof('0x12', leaf, proof)).toBe(false)
    expect(verifyMerkleProof(tree.root, '0x12', proof)).toBe(false)
    expect(verifyMerkleProof(tree.root, leaf, [...proof.slice(0, -1), '0x12'])).toBe(false)
  })

  it('compares the root case-insensitively', () => {
    expect(verifyMerkleProof(`0x${tree.root.slice(2).toUpperCase()}`, leaf, proof)).toBe(true)
  })
})

describe('a large tree', () => {
  it('has a proof for every one of 100,000 leaves (a spread of them checked, some by the reference processProof)', () => {
    const values = leaves(100_000, 12345)
    const tree = buildMerkleTree(values)
    for (let i = 0; i < values.length; i++) {
      const proof = tree.proof(i)
      if (proof.length < 16 || proof.length > 17) expect.fail(`leaf ${i}: proof of ${proof.length} nodes in a 100,000-leaf tree`)
      // Verifying costs ~17 hashes per leaf: every 11th leaf keeps this test to a second or two.
      if (i % 997 === 0) expect(referenceProcessProof(values[i]!, proof)).toBe(tree.root)
      else if (i % 11 === 0 && !verifyMerkleProof(tree.root, values[i]!, proof)) expect.fail(`leaf ${i} does not verify`)
    }
  })
})
