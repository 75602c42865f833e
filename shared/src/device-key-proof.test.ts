import { recoverMessageAddress, verifyMessage } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import { addressOf, publicKeyOf } from './attestation.js'
import { deviceKeyProofMessage, signDeviceKeyProof, verifyDeviceKeyProof } from './device-key-proof.js'

const privateKeyFrom = (byte: number) => new Uint8Array(32).fill(byte)
const hex = (bytes: Uint8Array) => `0x${Buffer.from(bytes).toString('hex')}` as const

describe('device key proof', () => {
  const key = privateKeyFrom(7)
  const publicKey = publicKeyOf(key)

  it('is an EIP-191 personal signature of the device id message, as viem makes and checks it', async () => {
    const proof = signDeviceKeyProof(key, 'pi-kitchen')
    const message = deviceKeyProofMessage('pi-kitchen')
    expect(await recoverMessageAddress({ message, signature: proof })).toBe(privateKeyToAccount(hex(key)).address)
    expect(await verifyMessage({ address: addressOf(publicKey), message, signature: proof })).toBe(true)
    // and a proof viem signs verifies here
    const viemProof = await privateKeyToAccount(hex(key)).signMessage({ message })
    expect(verifyDeviceKeyProof(publicKey, 'pi-kitchen', viemProof)).toBe(true)
  })

  it('verifies for the key and device id it was made for only', () => {
    const proof = signDeviceKeyProof(key, 'pi-kitchen')
    expect(verifyDeviceKeyProof(publicKey, 'pi-kitchen', proof)).toBe(true)
    expect(verifyDeviceKeyProof(publicKey, 'pi-garage', proof)).toBe(false)
    expect(verifyDeviceKeyProof(publicKeyOf(privateKeyFrom(8)), 'pi-kitchen', proof)).toBe(false)
    // Another key's proof for this device id: the key is borrowed, not held.
    expect(verifyDeviceKeyProof(publicKey, 'pi-kitchen', signDeviceKeyProof(privateKeyFrom(8), 'pi-kitchen'))).toBe(false)
  })

  it.each([
    ['empty', '0x'],
    ['not hex', `0x${'zz'.repeat(65)}`],
    ['v = 0', `0x${'11'.repeat(64)}00`],
    ['all zero', `0x${'00'.repeat(65)}`],
  ])('refuses a malformed proof (%s) without throwing', (_case, proof) => {
    expect(verifyDeviceKeyProof(publicKey, 'pi-kitchen', proof)).toBe(false)
  })

  it('refuses a public key that is not a point on the curve without throwing', () => {
    expect(verifyDeviceKeyProof(new Uint8Array(33).fill(2), 'pi-kitchen', signDeviceKeyProof(key, 'pi-kitchen'))).toBe(false)
  })
})
