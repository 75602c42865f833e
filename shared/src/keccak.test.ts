import { readFileSync } from 'node:fs'
import { keccak_256 } from '@noble/hashes/sha3.js'
import { describe, expect, it } from 'vitest'
import { compileKeccakWasm } from '../scripts/compile-keccak-wasm.js'
import { keccak256, keccak256Chunks } from './keccak.js'
import { seededRandom } from './seeded-random.js'

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex')

function bytesOf(length: number, seed: number): Uint8Array {
  const random = seededRandom(seed)
  return Uint8Array.from({ length }, () => Math.floor(random() * 256))
}

describe('keccak256 (WebAssembly kernel)', () => {
  it('gives the known digests of the empty string and "abc"', () => {
    // Keccak-256 (Ethereum's), not SHA3-256: the padding byte differs.
    expect(hex(keccak256(new Uint8Array()))).toBe('c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470')
    expect(hex(keccak256(new TextEncoder().encode('abc')))).toBe('4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45')
  })

  // Around the 136-byte block and the kernel's input area (960 blocks = 130,560 bytes).
  const lengths = [1, 55, 135, 136, 137, 271, 272, 273, 4096, 130_559, 130_560, 130_561, 261_120, 400_001]
  it.each(lengths)('matches @noble/hashes on %i bytes', (length) => {
    const data = bytesOf(length, length)
    expect(hex(keccak256(data))).toBe(hex(keccak_256(data)))
  })

  it('hashes chunks as their concatenation, wherever the cuts fall', () => {
    const random = seededRandom(7)
    for (let trial = 0; trial < 200; trial++) {
      const data = bytesOf(Math.floor(random() * 140_000), trial)
      const cuts = Array.from({ length: Math.floor(random() * 6) }, () => Math.floor(random() * (data.length + 1))).sort((a, b) => a - b)
      const chunks = [0, ...cuts].map((from, i) => data.subarray(from, [...cuts, data.length][i]))
      expect(hex(keccak256Chunks(chunks)), `trial ${trial}`).toBe(hex(keccak_256(data)))
    }
  })

  it('returns a fresh array each time (not a view of the kernel memory)', () => {
    const first = keccak256(new Uint8Array([1]))
    const copy = Uint8Array.from(first)
    keccak256(new Uint8Array([2]))
    expect(first).toEqual(copy)
  })

  it('runs the committed keccak.wasm, which is exactly the build of shared/scripts/keccak-wat.ts', async () => {
    const committed = readFileSync(new URL('./keccak/keccak.wasm', import.meta.url))
    expect(Buffer.from(await compileKeccakWasm()).equals(committed), 'run `npm run build:wasm -w shared`').toBe(true)
  })
})
