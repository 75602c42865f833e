/** What the logs and problem details say of a caught value, whatever was thrown. */
import { describe, expect, it } from 'vitest'
import { messageOf } from './errors.js'

describe('messageOf', () => {
  it('says an Error by its message, and a thrown string, object or value by what it holds', () => {
    expect(messageOf(new RangeError('out of range'))).toBe('out of range')
    expect(messageOf('Failed to load model')).toBe('Failed to load model')
    expect(messageOf({ message: 'from a plain object' })).toBe('from a plain object')
    expect(messageOf({ code: 7, reason: 'busy' })).toBe('{"code":7,"reason":"busy"}')
    expect(messageOf(undefined)).toBe('undefined')
    expect(messageOf(42n)).toBe('42')
    const circular: Record<string, unknown> = {}
    circular.self = circular
    expect(messageOf(circular)).toBe('[object Object]')
  })
})
