/**
 * keccak256, the one hash of the on-chain side (EIP-712, Merkle leaves and nodes). Tensor
 * commitments are SHA-256 (hash.ts), which both runtimes have natively.
 *
 * The permutation runs in WebAssembly (shared/scripts/keccak-wat.ts generates it; the committed
 * src/keccak/keccak.wasm is its build): every job takes several keccaks (struct hash, digest,
 * leaf) and a cron tick hashes every leaf and node of a batch of up to 100,000, and JS keccaks
 * work on 32-bit halves of the 64-bit lanes — js-sha3 managed ~45 MB/s here, @noble/hashes
 * half that. `#keccak-module` (package.json "imports")
 * instantiates the module the way each runtime allows.
 */
import { keccakKernel as kernel } from '#keccak-module'

// Must match the layout the module was generated with (shared/scripts/keccak-wat.ts).
const RATE_BYTES = 136
const STATE_BYTES = 200
const INPUT_OFFSET = 512

// The memory never grows, so this view stays valid.
const heap = new Uint8Array(kernel.memory.buffer)
const INPUT_BLOCKS = Math.floor((heap.length - INPUT_OFFSET) / RATE_BYTES)
const INPUT_CAPACITY = INPUT_BLOCKS * RATE_BYTES

/** keccak256 of `data`. */
export function keccak256(data: Uint8Array): Uint8Array {
  return keccak256Chunks([data])
}

/**
 * keccak256 of the concatenation of `chunks`, without concatenating them: each is copied into
 * the kernel's input area, absorbed a full area at a time, then padded (Keccak's 0x01 … 0x80,
 * not SHA-3's 0x06) and squeezed. Synchronous, so one shared kernel instance is safe.
 */
export function keccak256Chunks(chunks: readonly Uint8Array[]): Uint8Array {
  heap.fill(0, 0, STATE_BYTES)
  let filled = 0
  for (const chunk of chunks) {
    for (let at = 0; at < chunk.length; ) {
      const take = Math.min(chunk.length - at, INPUT_CAPACITY - filled)
      heap.set(chunk.subarray(at, at + take), INPUT_OFFSET + filled)
      filled += take
      at += take
      if (filled === INPUT_CAPACITY) {
        kernel.absorb(INPUT_OFFSET, INPUT_BLOCKS)
        filled = 0
      }
    }
  }
  const fullBlocks = Math.floor(filled / RATE_BYTES)
  if (fullBlocks > 0) {
    kernel.absorb(INPUT_OFFSET, fullBlocks)
    heap.copyWithin(INPUT_OFFSET, INPUT_OFFSET + fullBlocks * RATE_BYTES, INPUT_OFFSET + filled)
    filled -= fullBlocks * RATE_BYTES
  }
  heap.fill(0, INPUT_OFFSET + filled, INPUT_OFFSET + RATE_BYTES)
  heap[INPUT_OFFSET + filled] = 0x01
  heap[INPUT_OFFSET + RATE_BYTES - 1]! |= 0x80
  kernel.absorb(INPUT_OFFSET, 1)
  return heap.slice(0, 32)
}
