import { HttpRequestError } from 'viem'
import { describe, expect, it } from 'vitest'
import { shortError } from './chain-client.js'

describe('shortError', () => {
  it("says why an RPC request failed, without the RPC's URL (a keyed URL holds its key)", () => {
    const error = new HttpRequestError({ url: 'https://rpc.example/v2/SECRET-KEY', details: 'connect ECONNREFUSED 127.0.0.1:8545' })
    expect(shortError(error)).toBe('HTTP request failed. (connect ECONNREFUSED 127.0.0.1:8545)')
    expect(shortError(error)).not.toContain('SECRET-KEY')
    const quoting = new HttpRequestError({ url: 'https://rpc.example/v2/SECRET-KEY', details: 'Fetch API cannot load: https://rpc.example/v2/SECRET-KEY' })
    expect(shortError(quoting)).toBe('HTTP request failed. (Fetch API cannot load: <rpc url>)')
  })

  it('keeps one line of 300 characters at most, and reads errors that are not viem\'s', () => {
    expect(shortError(new HttpRequestError({ url: 'http://x', details: 'y'.repeat(1_000) })).length).toBeLessThanOrEqual(300)
    expect(shortError(new Error('plain'))).toBe('plain')
    expect(shortError('text')).toBe('text')
  })

  it("names the contracts' custom errors a node reports only by selector", () => {
    const error = new Error('Execution reverted with reason: custom error 0xdb42144d(0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc, 0, 0x3d7670).')
    expect(shortError(error)).toBe(
      'Execution reverted with reason: custom error InsufficientBalance(address,uint256,uint256) 0xdb42144d(0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc, 0, 0x3d7670).',
    )
    expect(shortError(new Error('custom error 0x12345678()'))).toBe('custom error 0x12345678()')
  })
})
