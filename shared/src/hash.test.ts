import { describe, expect, it } from 'vitest'
import { sha256Chunks, sha256Hex } from './hash.js'

// The shared package type-checks without Node or DOM types: reach the runtime's WebCrypto and
// Node's Buffer through globalThis.
const { crypto: webCrypto, Buffer: NodeBuffer } = globalThis as unknown as {
  crypto: { subtle: { digest(algorithm: string, data: Uint8Array): Promise<ArrayBuffer> } }
  Buffer: { from(text: string, encoding: string): Uint8Array }
}

/** SHA-256 by WebCrypto, as lowercase hex: an independent reference. */
async function referenceSha256(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await webCrypto.subtle.digest('SHA-256', bytes))
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('')
}

/** Deterministic pseudo-random bytes (xorshift32). */
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

describe('sha256Hex', () => {
  it.each([
    ['', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
    ['abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1'],
  ])('hashes the string %j to the FIPS 180 test vector', (input, hex) => {
    expect(sha256Hex(input)).toBe(hex)
  })

  it('hashes one million "a" to the FIPS 180 test vector', () => {
    expect(sha256Hex('a'.repeat(1_000_000))).toBe('cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0')
  })

  it('hashes bytes the same as the string they encode', () => {
    expect(sha256Hex(new Uint8Array([0x61, 0x62, 0x63]))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
    expect(sha256Hex(new Uint8Array(0))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
  })

  it('hashes a string as its UTF-8 encoding', async () => {
    const text = 'héllo ✓ 🚀 Ω'
    expect(sha256Hex(text)).toBe(await referenceSha256(NodeBuffer.from(text, 'utf8')))
    expect(sha256Hex(text)).toBe(sha256Hex(new TextEncoder().encode(text)))
  })

  it('agrees with WebCrypto on pseudo-random inputs of many lengths (across block boundaries)', async () => {
    for (const length of [1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 65_537]) {
      const bytes = pseudoRandomBytes(length, length * 7919)
      expect(sha256Hex(bytes)).toBe(await referenceSha256(bytes))
    }
  })

  it('hashes only the bytes of a view, not the rest of its buffer', () => {
    const backing = new Uint8Array([0xff, 0x61, 0x62, 0x63, 0xff])
    expect(sha256Hex(backing.subarray(1, 4))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
    const buffer = NodeBuffer.from('xxabcxx', 'utf8')
    expect(sha256Hex(buffer.subarray(2, 5))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  })

  it('returns 64 lowercase hex digits', () => {
    expect(sha256Hex('depinfer')).toMatch(/^[0-9a-f]{64}$/)
  })
})

describe('sha256Chunks', () => {
  it('hashes the concatenation of its chunks, however the bytes are split', async () => {
    const bytes = pseudoRandomBytes(70_001, 17)
    const expected = await referenceSha256(bytes)
    for (const cuts of [[], [0], [1], [63, 64, 65], [32, 32, 40_000], [70_000]]) {
      const chunks: Uint8Array[] = []
      let from = 0
      for (const cut of cuts) {
        chunks.push(bytes.subarray(from, cut))
        from = cut
      }
      chunks.push(bytes.subarray(from))
      const digest = sha256Chunks(chunks)
      expect(digest).toBeInstanceOf(Uint8Array)
      expect(Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join(''), `cuts ${cuts.join(',')}`).toBe(expected)
    }
    expect(sha256Chunks([])).toEqual(sha256Chunks([new Uint8Array(0)]))
  })
})
