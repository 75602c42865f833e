/** What the logs and problem details say of a caught value, whatever was thrown. */
import { describe, expect, it } from 'vitest'
import { messageOf, stackOf } from './errors.js'

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

describe('stackOf', () => {
  it('says an Error by its stack (its message without one), and anything else as messageOf does', () => {
    const error = new Error('model failed')
    expect(stackOf(error)).toBe(error.stack)
    expect(stackOf(error)).toMatch(/^Error: model failed\n\s+at /)
    const stackless = new Error('no stack')
    stackless.stack = undefined
    expect(stackOf(stackless)).toBe('no stack')
    expect(stackOf({ code: 7 })).toBe('{"code":7}')
  })
})
