import { EcdsaNonces, publicKeyOf, addressOf, verifyAttestationSignature, type Attestation, type AttestationDomain, type Hex } from '@depinfer/shared'
import { describe, expect, it } from 'vitest'
import { AttestationSigner } from './attestation-signer.js'

const privateKey = Uint8Array.from({ length: 32 }, (_, i) => i + 1)
const publicKey = publicKeyOf(privateKey)
const domain: AttestationDomain = { chainId: 31337n, verifyingContract: '0x5fbdb2315678afecb367f032d93f642f64180aa3' }
const hex32 = (n: number) => `0x${n.toString(16).padStart(64, '0')}` as Hex
const attestation = (n: number): Attestation => ({
  jobId: hex32(n),
  modelHash: hex32(1000 + n),
  inputHash: hex32(2000 + n),
  outputHash: hex32(3000 + n),
  device: addressOf(publicKey),
  price: BigInt(n),
  completedAt: 1_750_000_000_000n,
})

describe('AttestationSigner', () => {
  it('signs the jobs that finish in one turn with one signature, each carrying its own proof', async () => {
    const signer = new AttestationSigner(privateKey)
    const jobs = [1, 2, 3].map(attestation)
    const signatures = await Promise.all(jobs.map((a) => signer.sign(domain, a)))
    expect(new Set(signatures.map((s) => s.slice(0, 132))).size).toBe(1)
    expect(new Set(signatures).size).toBe(3)
    jobs.forEach((a, i) => expect(verifyAttestationSignature(publicKey, domain, a, signatures[i]!)).toBe(true))
    expect(verifyAttestationSignature(publicKey, domain, jobs[0]!, signatures[1]!)).toBe(false)
  })

  it('signs a job that finishes alone as a plain 65-byte signature, and later turns separately', async () => {
    const signer = new AttestationSigner(privateKey)
    const first = await signer.sign(domain, attestation(1))
    const second = await signer.sign(domain, attestation(2))
    expect(first).toMatch(/^0x[0-9a-f]{130}$/)
    expect(second).toMatch(/^0x[0-9a-f]{130}$/)
    expect(verifyAttestationSignature(publicKey, domain, attestation(2), second)).toBe(true)
  })

  it('gives each EIP-712 domain its own root', async () => {
    const signer = new AttestationSigner(privateKey)
    const other: AttestationDomain = { chainId: 1n, verifyingContract: domain.verifyingContract }
    const [a, b, c] = await Promise.all([signer.sign(domain, attestation(1)), signer.sign(other, attestation(2)), signer.sign(domain, attestation(3))])
    expect(verifyAttestationSignature(publicKey, domain, attestation(1), a)).toBe(true)
    expect(verifyAttestationSignature(publicKey, other, attestation(2), b)).toBe(true)
    expect(b).toMatch(/^0x[0-9a-f]{130}$/)
    expect(verifyAttestationSignature(publicKey, domain, attestation(3), c)).toBe(true)
  })

  it('signs with nonces made between jobs and tops the pool up again after each turn', async () => {
    const nonces = new EcdsaNonces(4)
    const signer = new AttestationSigner(privateKey, nonces)
    const turns = async (n: number) => { for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve)) }
    await turns(10)
    expect(nonces.size).toBe(4)
    const signature = await signer.sign(domain, attestation(1))
    expect(nonces.size).toBe(3)
    expect(verifyAttestationSignature(publicKey, domain, attestation(1), signature)).toBe(true)
    await turns(10)
    expect(nonces.size).toBe(4)
    // Pooled nonces are random: the same attestation signed again gets another signature.
    const again = await signer.sign(domain, attestation(1))
    expect(again).not.toBe(signature)
    expect(verifyAttestationSignature(publicKey, domain, attestation(1), again)).toBe(true)
  })
})
