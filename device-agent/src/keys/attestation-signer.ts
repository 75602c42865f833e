/**
 * Signs together the attestations of jobs that finish together (shared `signAttestations`: one
 * ECDSA signature over a Merkle root, each job's signature carrying its proof). The jobs of one
 * onnxruntime batch resume one after another in the same turn of the event loop, so everything
 * asked for in one turn is signed at once right after it; a job that finishes alone is signed
 * alone, as a plain EIP-712 attestation.
 *
 * Signatures use nonces made between jobs (shared `EcdsaNonces`): the scalar multiplication a
 * signature needs (~0.4 ms) is then off the answer's path. The pool is topped up one nonce per
 * turn of the event loop, so a job that arrives meanwhile waits for one nonce at most.
 */
import { EcdsaNonces, signAttestations, type Attestation, type AttestationDomain, type Hex } from '@depinfer/shared'

interface PendingSignature {
  domain: AttestationDomain
  attestation: Attestation
  resolve: (signature: Hex) => void
  reject: (error: unknown) => void
}

export class AttestationSigner {
  #pending: PendingSignature[] = []
  #refilling = false

  constructor(
    private readonly privateKey: Uint8Array,
    private readonly nonces = new EcdsaNonces(),
  ) {
    this.#refillSoon()
  }

  /** The attestation's signature, made with those of every other attestation asked for in this turn. */
  sign(domain: AttestationDomain, attestation: Attestation): Promise<Hex> {
    return new Promise((resolve, reject) => {
      if (this.#pending.length === 0) setImmediate(() => this.#signPending())
      this.#pending.push({ domain, attestation, resolve, reject })
    })
  }

  #signPending(): void {
    const pending = this.#pending
    this.#pending = []
    // One root per EIP-712 domain: the edge gives every job its own, normally all the same.
    const byDomain = new Map<string, PendingSignature[]>()
    for (const item of pending) {
      const key = `${item.domain.chainId}:${item.domain.verifyingContract.toLowerCase()}`
      const group = byDomain.get(key)
      if (group) group.push(item)
      else byDomain.set(key, [item])
    }
    for (const group of byDomain.values()) {
      try {
        const signatures = signAttestations(this.privateKey, group[0]!.domain, group.map((item) => item.attestation), this.nonces)
        group.forEach((item, i) => item.resolve(signatures[i]!))
      } catch (error) {
        group.forEach((item) => item.reject(error))
      }
    }
    this.#refillSoon()
  }

  #refillSoon(): void {
    if (this.#refilling || this.nonces.size >= this.nonces.capacity) return
    this.#refilling = true
    const step = () => {
      // Signing first: a turn that has attestations waiting gives them the pool as it is.
      if (this.#pending.length === 0 && this.nonces.refill(1) === 1) {
        setImmediate(step).unref()
        return
      }
      this.#refilling = false
    }
    setImmediate(step).unref()
  }
}
