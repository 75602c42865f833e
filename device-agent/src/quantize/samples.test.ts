import { describe, expect, it } from 'vitest'
import { seededRandom } from '@depinfer/shared'
import { defaultSampleKind, generateSamples } from './samples.js'

describe('sample inputs', () => {
  it('are the same for the same seed and differ between seeds', () => {
    const a = generateSamples('text-line', [1, 3, 48, 192], 3, 7)
    const b = generateSamples('text-line', [1, 3, 48, 192], 3, 7)
    const c = generateSamples('text-line', [1, 3, 48, 192], 3, 8)
    expect(a).toEqual(b)
    expect(a[0]).not.toEqual(c[0])
    expect(a[0]).not.toEqual(a[1])
  })

  it('are text lines normalized to [-1, 1], zero-padded on the right, with dark ink on light paper', () => {
    for (const sample of generateSamples('text-line', [2, 3, 48, 192], 5, 1)) {
      expect(sample.length).toBe(2 * 3 * 48 * 192)
      expect(Math.min(...sample)).toBeGreaterThanOrEqual(-1)
      expect(Math.max(...sample)).toBeLessThanOrEqual(1)
      // Paper is light (> 0 after normalization) on most of the line, ink dark on some of it.
      const line = sample.subarray(0, 48 * 134) // every line covers at least 70% of the width
      const light = line.filter((v) => v > 0.2).length / line.length
      const dark = line.filter((v) => v < -0.2).length / line.length
      expect(light).toBeGreaterThan(0.4)
      expect(dark).toBeGreaterThan(0.02)
    }
  })

  it('fall back to standard normal values for non-image inputs', () => {
    const [sample] = generateSamples('normal', [1, 10000], 1, 3)
    const mean = sample!.reduce((s, v) => s + v, 0) / sample!.length
    const variance = sample!.reduce((s, v) => s + (v - mean) ** 2, 0) / sample!.length
    expect(Math.abs(mean)).toBeLessThan(0.05)
    expect(Math.abs(variance - 1)).toBeLessThan(0.05)
  })

  it('pick text lines for [N,3,48,W], pages for larger images, normal values otherwise', () => {
    expect(defaultSampleKind([1, 3, 48, 192])).toBe('text-line')
    expect(defaultSampleKind([1, 3, 640, 640])).toBe('text-page')
    expect(defaultSampleKind([1, 128])).toBe('normal')
  })

  it('come from a seeded generator with a stable sequence', () => {
    const random = seededRandom(42)
    expect([random(), random(), random()].map((v) => v.toFixed(6))).toEqual(
      (() => {
        const again = seededRandom(42)
        return [again(), again(), again()].map((v) => v.toFixed(6))
      })(),
    )
  })
})
