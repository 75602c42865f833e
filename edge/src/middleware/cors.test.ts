import { describe, expect, it } from 'vitest'
import { allowedOrigins } from './cors.js'

describe('allowedOrigins (CORS_ALLOW_ORIGINS)', () => {
  it('reads entries as browsers send Origin: lower-case host, no default port, no trailing slash', () => {
    const allowed = allowedOrigins(' https://App.Example:443/ , http://localhost:5173,http://127.0.0.1:80')
    expect(allowed).toEqual(new Set(['https://app.example', 'http://localhost:5173', 'http://127.0.0.1']))
  })

  it('ignores entries that can match no Origin header', () => {
    expect(allowedOrigins('https://app.example/path,app.example,https://a.example?x=1,https://user@b.example,null,,https://ok.example')).toEqual(new Set(['https://ok.example']))
  })

  it('is * when any entry is *, and empty when unset', () => {
    expect(allowedOrigins('https://app.example, *')).toBe('*')
    expect(allowedOrigins(undefined)).toEqual(new Set())
    expect(allowedOrigins(' ')).toEqual(new Set())
  })
})
