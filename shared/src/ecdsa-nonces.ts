/**
 * secp256k1 ECDSA with nonces made ahead of time. A signature's cost is almost all in its nonce:
 * the point k·G (~0.4 ms here, constant-time). It does not depend on the message, so a device
 * makes nonces while it waits for jobs and signs a finished job with two multiplications mod n
 * (microseconds) instead of a scalar multiplication on the answer's path.
 *
 * The nonces are random (CSPRNG), not RFC 6979's deterministic ones: standard ECDSA (SEC 1
 * 4.1.3), as OpenSSL signs. Each nonce is handed out once and dropped; one used twice would
 * reveal the private key, which is why the pool only ever gives a nonce away (`take`) and keeps
 * no copy. The signatures are ordinary 65-byte r ‖ s ‖ v with low s: anything that recovers or
 * verifies Ethereum signatures (viem, `ecrecover`) accepts them.
 *
 * The pool lives in one process's memory. A process cloned with its memory (a VM snapshot
 * restored twice, CRIU) would hold the same nonces twice and could sign two messages with one:
 * do not run a signing agent from a memory snapshot. Restarting the agent is safe (a new pool).
 */
import { secp256k1 } from '@noble/curves/secp256k1.js'
import { bytesToNumberBE } from '@noble/curves/utils.js'

const { Point } = secp256k1
const Fn = Point.Fn
const HALF_ORDER = Fn.ORDER >> 1n

/** One nonce, ready to sign with: r = (k·G).x, k⁻¹ and the parity of (k·G).y. */
interface EcdsaNonce {
  readonly r: bigint
  readonly kInverse: bigint
  readonly yParity: 0 | 1
}

function makeNonce(): EcdsaNonce {
  for (;;) {
    // Uniform in [1, n-1] (noble reduces 48 random bytes mod n-1: bias below 2^-128).
    const k = bytesToNumberBE(secp256k1.utils.randomSecretKey())
    // Constant-time and blinded: the nonce must not leak through timing.
    const { x, y } = Point.BASE.multiply(k).toAffine()
    // x ≥ n (probability ~2^-128) has no Ethereum encoding (v is 27 or 28 only); x = 0 mod n
    // would give r = 0. Either way draw again.
    if (x >= Fn.ORDER || x === 0n) continue
    // k⁻¹ = b·(k·b)⁻¹ with a random b: the inversion's running time depends on its input, and
    // it must not depend on k (noble blinds its own signing's inversion the same way).
    const blind = bytesToNumberBE(secp256k1.utils.randomSecretKey())
    return { r: x, kInverse: Fn.mul(blind, Fn.inv(Fn.mul(k, blind))), yParity: Number(y & 1n) as 0 | 1 }
  }
}

/**
 * A pool of nonces for one process. `take` never blocks: an empty pool makes a nonce on the
 * spot (the cost the pool exists to avoid, no worse than signing without it).
 */
export class EcdsaNonces {
  readonly #ready: EcdsaNonce[] = []

  constructor(readonly capacity = 32) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`)
  }

  get size(): number {
    return this.#ready.length
  }

  /** Makes up to `count` nonces (never past `capacity`); returns how many it made. */
  refill(count = this.capacity): number {
    let made = 0
    while (made < count && this.#ready.length < this.capacity) {
      this.#ready.push(makeNonce())
      made++
    }
    return made
  }

  /** A nonce nobody else gets: from the pool, or made now when it is empty. */
  take(): EcdsaNonce {
    return this.#ready.pop() ?? makeNonce()
  }
}

/**
 * The 65-byte r ‖ s ‖ v (v = 27 + y parity, low s) signature of a 32-byte digest with the
 * private key, using one nonce from `nonces`. The digest is signed as is (no hashing).
 */
export function signDigestWithNonce(privateKey: Uint8Array, digest: Uint8Array, nonces: EcdsaNonces): Uint8Array {
  if (digest.length !== 32) throw new RangeError(`a digest is 32 bytes, got ${digest.length}`)
  if (privateKey.length !== 32) throw new RangeError(`a private key is 32 bytes, got ${privateKey.length}`)
  const d = bytesToNumberBE(privateKey)
  if (!Fn.isValidNot0(d)) throw new RangeError('the private key is not a secp256k1 scalar')
  // bits2int: a 256-bit digest for a 256-bit order is taken whole, then reduced mod n.
  const z = Fn.create(bytesToNumberBE(digest))
  for (;;) {
    const { r, kInverse, yParity } = nonces.take()
    let s = Fn.mul(kInverse, Fn.add(z, Fn.mul(r, d)))
    if (s === 0n) continue // probability ~2^-256: use another nonce
    let parity = yParity
    // Low s (EIP-2): s and n - s both verify; n - s belongs to -R, whose y has the other parity.
    if (s > HALF_ORDER) {
      s = Fn.neg(s)
      parity ^= 1
    }
    const out = new Uint8Array(65)
    out.set(Fn.toBytes(r), 0)
    out.set(Fn.toBytes(s), 32)
    out[64] = 27 + parity
    return out
  }
}
