/**
 * Deterministic (seeded) model inputs for calibration and for comparing fp32 with int8 outputs.
 *
 * Image models get synthetic text images, because activation ranges and fp32/int8 agreement
 * measured on noise say little about real inputs: a classifier fed noise sits near its decision
 * boundary, where any perturbation flips it. Text is drawn with a 5×8 bitmap font (Latin, mixed
 * case), dark on light, blurred and noisy, half of the lines rotated 180° (what the PaddleOCR
 * direction classifier tells apart; it gets ≈90% of these right, so they look like text to it):
 *
 *  - 'text-line': one line per image, resized to the input height and padded on the right with
 *    zeros, normalized to [-1, 1] (PaddleOCR's classifier/recognizer preprocessing), half of
 *    them upside down (the direction classifier's input);
 *  - 'text-line-upright': the same, all upright (the recognizer's input: the classifier has
 *    turned the upside-down lines around by then);
 *  - 'text-page': several lines on a page, ImageNet mean/std normalization (PaddleOCR's detector);
 *  - 'normal': standard normal values, for anything that is not an image.
 */

import { seededRandom } from '@depinfer/shared'

/** Standard normal values (Box–Muller) from a uniform source. */
export function normalSource(random: () => number): () => number {
  return () => {
    const u = 1 - random()
    const v = random()
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
  }
}

export type SampleKind = 'text-line' | 'text-line-upright' | 'text-page' | 'normal'

/** The sample kind that suits an input: text images for [N, 3, H, W] float inputs. */
export function defaultSampleKind(shape: readonly number[]): SampleKind {
  if (shape.length === 4 && shape[1] === 3) return shape[2]! <= 64 ? 'text-line' : 'text-page'
  return 'normal'
}

/** `count` samples of `shape` (batch dimension included) as one flat array per sample. */
export function generateSamples(kind: SampleKind, shape: readonly number[], count: number, seed: number): Float32Array[] {
  const random = seededRandom(seed)
  const out: Float32Array[] = []
  for (let i = 0; i < count; i++) {
    if (kind === 'normal') {
      const normal = normalSource(random)
      out.push(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, normal))
      continue
    }
    const [batch, channels, height, width] = shape as [number, number, number, number]
    const sample = new Float32Array(batch * channels * height * width)
    for (let b = 0; b < batch; b++) {
      const line = kind === 'text-line' || kind === 'text-line-upright'
      const image = line ? textLine(random, height, width, kind === 'text-line') : textPage(random, height, width)
      sample.set(normalize(image, line ? 'symmetric' : 'imagenet', channels), b * channels * height * width)
    }
    out.push(sample)
  }
  return out
}

/** An RGB image, values 0–255, planar (channel-major) like the NCHW tensors it becomes. */
interface Image {
  height: number
  width: number
  /** 3 planes of height × width. */
  data: Float32Array
}

// 5×8 glyphs (rows top to bottom, bit 4 = leftmost column); row 6 is the baseline, row 7 holds
// descenders. Mixed case matters: ascenders and descenders are what make a line's direction
// visible.
const GLYPHS: readonly (readonly number[])[] = [
  [0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11, 0], // A
  [0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e, 0], // B
  [0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e, 0], // C
  [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f, 0], // E
  [0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f, 0], // G
  [0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11, 0], // H
  [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f, 0], // L
  [0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11, 0], // M
  [0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10, 0], // P
  [0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11, 0], // R
  [0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e, 0], // S
  [0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0], // T
  [0x11, 0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0], // Y
  [0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e, 0], // 1
  [0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f, 0], // 2
  [0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02, 0], // 4
  [0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e, 0], // 6
  [0x00, 0x00, 0x0e, 0x01, 0x0f, 0x11, 0x0f, 0], // a
  [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1e, 0], // b
  [0x00, 0x00, 0x0e, 0x10, 0x10, 0x11, 0x0e, 0], // c
  [0x01, 0x01, 0x0d, 0x13, 0x11, 0x11, 0x0f, 0], // d
  [0x00, 0x00, 0x0e, 0x11, 0x1f, 0x10, 0x0e, 0], // e
  [0x00, 0x00, 0x0f, 0x11, 0x11, 0x0f, 0x01, 0x0e], // g
  [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0], // h
  [0x04, 0x00, 0x0c, 0x04, 0x04, 0x04, 0x0e, 0], // i
  [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0], // k
  [0x0c, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e, 0], // l
  [0x00, 0x00, 0x1a, 0x15, 0x15, 0x11, 0x11, 0], // m
  [0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0], // n
  [0x00, 0x00, 0x0e, 0x11, 0x11, 0x11, 0x0e, 0], // o
  [0x00, 0x00, 0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10], // p
  [0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0], // r
  [0x00, 0x00, 0x0e, 0x10, 0x0e, 0x01, 0x1e, 0], // s
  [0x08, 0x08, 0x1c, 0x08, 0x08, 0x09, 0x06, 0], // t
  [0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0d, 0], // u
  [0x00, 0x00, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x0e], // y
]

/** A glyph as an ink coverage function over [0,1)² (0 = paper, 1 = ink). */
type Glyph = (u: number, v: number) => number

function fontGlyph(rows: readonly number[]): Glyph {
  const bit = (r: number, c: number) => (r < 0 || r > 7 || c < 0 || c > 4 ? 0 : (rows[r]! >> (4 - c)) & 1)
  return (u, v) => {
    // Bilinear coverage of the bitmap, thresholded: smooth strokes rather than blocky pixels
    // (the classifier recognizes direction markedly better on them: 91% vs 86% correct).
    const x = u * 5 - 0.5
    const y = v * 8 - 0.5
    const c0 = Math.floor(x)
    const r0 = Math.floor(y)
    const fx = x - c0
    const fy = y - r0
    const top = bit(r0, c0) * (1 - fx) + bit(r0, c0 + 1) * fx
    const bottom = bit(r0 + 1, c0) * (1 - fx) + bit(r0 + 1, c0 + 1) * fx
    return Math.min(1, Math.max(0, ((top * (1 - fy) + bottom * fy) - 0.3) * 3))
  }
}

/** Draws one line of text into a new image of `height` × `lineWidth`. */
function renderLine(random: () => number, height: number, lineWidth: number, ink: number[], paper: number[]): Image {
  const image: Image = { height, width: lineWidth, data: new Float32Array(3 * height * lineWidth) }
  const plane = height * lineWidth
  for (let c = 0; c < 3; c++) image.data.fill(paper[c]!, c * plane, (c + 1) * plane)
  const glyphHeight = Math.round(height * (0.55 + random() * 0.3))
  const top = Math.floor(random() * Math.max(1, height - glyphHeight))
  const glyphWidth = Math.round(glyphHeight * 0.62)
  const gap = Math.max(1, Math.round(glyphWidth * (0.12 + random() * 0.25)))
  for (let x = Math.floor(random() * gap * 2); x + glyphWidth <= lineWidth; x += glyphWidth + gap) {
    if (random() < 0.12) continue // a space
    const glyph = fontGlyph(GLYPHS[Math.floor(random() * GLYPHS.length)]!)
    for (let y = 0; y < glyphHeight; y++) {
      for (let dx = 0; dx < glyphWidth; dx++) {
        const a = glyph((dx + 0.5) / glyphWidth, (y + 0.5) / glyphHeight)
        if (a === 0) continue
        const i = (top + y) * lineWidth + x + dx
        for (let c = 0; c < 3; c++) image.data[c * plane + i] = ink[c]! * a + paper[c]! * (1 - a)
      }
    }
  }
  return image
}

function colors(random: () => number): { ink: number[]; paper: number[] } {
  const paper = 170 + random() * 85
  const ink = random() * 90
  const tint = () => (random() - 0.5) * 30
  return { ink: [ink + tint(), ink + tint(), ink + tint()], paper: [paper + tint(), paper + tint(), paper + tint()] }
}

/** 3×3 box blur (scanned text is never pixel-sharp), then Gaussian noise. */
function blurAndNoise(image: Image, random: () => number, blur: boolean, sigma: number): void {
  const { height, width, data } = image
  const plane = height * width
  const normal = normalSource(random)
  for (let c = 0; c < 3; c++) {
    const src = data.slice(c * plane, (c + 1) * plane)
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        let v = src[y * width + x]!
        if (blur) {
          let sum = 0
          let n = 0
          for (let dy = -1; dy <= 1; dy++) {
            for (let dx = -1; dx <= 1; dx++) {
              const yy = y + dy
              const xx = x + dx
              if (yy >= 0 && yy < height && xx >= 0 && xx < width) {
                sum += src[yy * width + xx]!
                n++
              }
            }
          }
          v = sum / n
        }
        data[c * plane + y * width + x] = Math.min(255, Math.max(0, v + normal() * sigma))
      }
    }
  }
}

function rotate180(image: Image): void {
  const plane = image.height * image.width
  for (let c = 0; c < 3; c++) image.data.subarray(c * plane, (c + 1) * plane).reverse()
}

/**
 * One text line, `height` × (70–100% of `width`), padded to `width` with NaN (filled later).
 * Long lines, like the crops a detector hands the classifier: on short ones the classifier is
 * unsure (its decision margin is small), and agreement measured there mostly counts coin flips.
 */
function textLine(random: () => number, height: number, width: number, rotate: boolean): Image {
  const lineWidth = Math.max(height, Math.round(width * (0.7 + random() * 0.3)))
  const { ink, paper } = colors(random)
  const line = renderLine(random, height, Math.min(width, lineWidth), ink, paper)
  blurAndNoise(line, random, random() < 0.6, 2 + random() * 8)
  if (random() < 0.5 && rotate) rotate180(line)
  const image: Image = { height, width, data: new Float32Array(3 * height * width).fill(Number.NaN) }
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < line.width; x++) image.data[c * height * width + y * width + x] = line.data[c * height * line.width + y * line.width + x]!
    }
  }
  return image
}

/** A page with several text lines at random places (a detector's input). */
function textPage(random: () => number, height: number, width: number): Image {
  const { ink, paper } = colors(random)
  const page: Image = { height, width, data: new Float32Array(3 * height * width) }
  const plane = height * width
  for (let c = 0; c < 3; c++) page.data.fill(paper[c]!, c * plane, (c + 1) * plane)
  const lines = 2 + Math.floor(random() * 6)
  for (let l = 0; l < lines; l++) {
    const lineHeight = Math.max(8, Math.round(Math.min(height / 4, 16 + random() * 32)))
    const lineWidth = Math.max(lineHeight, Math.round(width * (0.2 + random() * 0.7)))
    const line = renderLine(random, lineHeight, Math.min(width, lineWidth), ink, paper)
    const top = Math.floor(random() * Math.max(1, height - lineHeight))
    const left = Math.floor(random() * Math.max(1, width - line.width))
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < lineHeight && top + y < height; y++) {
        for (let x = 0; x < line.width; x++) page.data[c * plane + (top + y) * width + left + x] = line.data[c * lineHeight * line.width + y * line.width + x]!
      }
    }
  }
  blurAndNoise(page, random, random() < 0.6, 2 + random() * 8)
  return page
}

const IMAGENET_MEAN = [0.485, 0.456, 0.406]
const IMAGENET_STD = [0.229, 0.224, 0.225]

/** 0–255 pixels to model input values; NaN (padding) becomes 0, as PaddleOCR pads. */
function normalize(image: Image, mode: 'symmetric' | 'imagenet', channels: number): Float32Array {
  const plane = image.height * image.width
  const out = new Float32Array(channels * plane)
  for (let c = 0; c < channels; c++) {
    for (let i = 0; i < plane; i++) {
      const v = image.data[(c % 3) * plane + i]!
      out[c * plane + i] = Number.isNaN(v) ? 0 : mode === 'symmetric' ? (v / 255 - 0.5) / 0.5 : (v / 255 - IMAGENET_MEAN[c % 3]!) / IMAGENET_STD[c % 3]!
    }
  }
  return out
}
