/**
 * A deterministic example input for the bundled text-direction classifier: a 48×192 RGB
 * "text line" (dark strokes on light paper) normalized as PaddleOCR does, (v/255 − 0.5) / 0.5.
 */
export const EXAMPLE_SHAPE = [1, 3, 48, 192] as const

export function exampleTextLine(seed = 1): number[] {
  const [, channels, height, width] = EXAMPLE_SHAPE
  const data: number[] = []
  let state = seed >>> 0
  const random = () => ((state = (state * 1664525 + 1013904223) >>> 0) / 2 ** 32)
  const strokes = Array.from({ length: 14 }, (_, i) => ({ x: 8 + i * 13, w: 2 + Math.floor(random() * 3) }))
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const inText = y > 12 && y < 36 && strokes.some((s) => x >= s.x && x < s.x + s.w)
        const pixel = inText ? 30 + random() * 20 : 225 + random() * 30
        data.push(Math.round(((pixel / 255 - 0.5) / 0.5) * 1e4) / 1e4)
      }
    }
  }
  return data
}

export function exampleInferRequest(seed = 1) {
  return {
    id: `example-${seed}`,
    inputs: [{ name: 'x', shape: [...EXAMPLE_SHAPE], datatype: 'FP32', data: exampleTextLine(seed) }],
  }
}
