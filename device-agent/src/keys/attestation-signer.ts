/**
 * Signs together the attestations of jobs that finish together (shared `signAttestations`: one
 * ECDSA signature over a Merkle root, each job's signature carrying its proof). The jobs of one
 * onnxruntime batch resume one after another in the same turn of the event loop, so everything
 * asked for in one turn is signed at once right after it; a job that finishes alone is signed
 * alone, as a plain EIP-712 attestation.
 */
import { signAttestations, type Attestation, type AttestationDomain, type Hex } from '@depinfer/shared'

interface PendingSignature {
  domain: AttestationDomain
  attestation: Attestation
  resolve: (signature: Hex) => void
  reject: (error: unknown) => void
}

export class AttestationSigner {
  #pending: PendingSignature[] = []

  constructor(private readonly privateKey: Uint8Array) {}

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
        const signatures = signAttestations(this.privateKey, group[0]!.domain, group.map((item) => item.attestation))
        group.forEach((item, i) => item.resolve(signatures[i]!))
      } catch (error) {
        group.forEach((item) => item.reject(error))
      }
    }
  }
}
