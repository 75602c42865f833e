/**
 * The WebAssembly text of keccak256's absorb step (Keccak-f[1600] over 136-byte blocks),
 * generated rather than hand-written: the 24-round permutation is straight-line code over 25
 * i64 locals, which is what makes it fast (JS implementations juggle 32-bit halves), and
 * writing those ~400 instructions out by hand would hide the few facts they derive from — the
 * rotation offsets, the lane permutation and the round constants — which are computed here from
 * the Keccak reference definitions (FIPS 202 §3.2) instead of being copied as tables.
 *
 * Memory layout (shared with shared/src/keccak.ts): bytes 0–199 hold the 25 lanes of the state,
 * little-endian as Keccak defines them; 200–391 the round constants; input blocks anywhere from
 * INPUT_OFFSET on.
 */

export const RATE_BYTES = 136
export const STATE_BYTES = 200
const ROUND_CONSTANTS_OFFSET = 200
export const INPUT_OFFSET = 512
export const MEMORY_PAGES = 2

/** Round constants RC[0..23] from the LFSR rc(t) of FIPS 202 Algorithm 5. */
export function roundConstants(): bigint[] {
  // R as FIPS 202 writes it, R[0] first: each step shifts in a 0 at R[0] and folds R[8] back.
  const rcBit = (t: number): number => {
    if (t % 255 === 0) return 1
    let r = [1, 0, 0, 0, 0, 0, 0, 0]
    for (let i = 1; i <= t % 255; i++) {
      r = [0, ...r]
      r[0] = r[0]! ^ r[8]!
      r[4] = r[4]! ^ r[8]!
      r[5] = r[5]! ^ r[8]!
      r[6] = r[6]! ^ r[8]!
      r = r.slice(0, 8)
    }
    return r[0]!
  }
  const constants: bigint[] = []
  for (let round = 0; round < 24; round++) {
    let value = 0n
    for (let j = 0; j <= 6; j++) {
      if (rcBit(j + 7 * round)) value |= 1n << BigInt(2 ** j - 1)
    }
    constants.push(value)
  }
  return constants
}

/** Rotation offsets r[x + 5y] (FIPS 202 Algorithm 2, ρ). */
export function rotationOffsets(): number[] {
  const offsets = new Array<number>(25).fill(0)
  let x = 1
  let y = 0
  for (let t = 0; t < 24; t++) {
    offsets[x + 5 * y] = (((t + 1) * (t + 2)) / 2) % 64
    ;[x, y] = [y, (2 * x + 3 * y) % 5]
  }
  return offsets
}

const lane = (i: number) => `(local.get $a${i})`

/** The module's text: one export `absorb(ptr, blocks)` and the memory. */
export function keccakWat(): string {
  const rho = rotationOffsets()
  const lines: string[] = []
  const emit = (line: string) => lines.push(line)
  const locals = ['a', 'b'].flatMap((p) => Array.from({ length: 25 }, (_, i) => `$${p}${i}`))
    .concat(Array.from({ length: 5 }, (_, i) => `$c${i}`), Array.from({ length: 5 }, (_, i) => `$d${i}`))

  // θ: column parities, then each lane XOR the neighbours' parities.
  for (let x = 0; x < 5; x++) {
    emit(`(local.set $c${x} (i64.xor (i64.xor (i64.xor (i64.xor ${lane(x)} ${lane(x + 5)}) ${lane(x + 10)}) ${lane(x + 15)}) ${lane(x + 20)}))`)
  }
  for (let x = 0; x < 5; x++) {
    emit(`(local.set $d${x} (i64.xor (local.get $c${(x + 4) % 5}) (i64.rotl (local.get $c${(x + 1) % 5}) (i64.const 1))))`)
  }
  // ρ and π together: B[y, 2x+3y] = rot(A[x, y] ^ D[x], r[x, y]).
  for (let y = 0; y < 5; y++) {
    for (let x = 0; x < 5; x++) {
      const from = x + 5 * y
      const to = y + 5 * ((2 * x + 3 * y) % 5)
      const mixed = `(i64.xor ${lane(from)} (local.get $d${x}))`
      emit(`(local.set $b${to} ${rho[from] === 0 ? mixed : `(i64.rotl ${mixed} (i64.const ${rho[from]}))`})`)
    }
  }
  // χ: A[x, y] = B[x, y] ^ (~B[x+1, y] & B[x+2, y]).
  for (let y = 0; y < 5; y++) {
    for (let x = 0; x < 5; x++) {
      const b = (dx: number) => `(local.get $b${((x + dx) % 5) + 5 * y})`
      emit(`(local.set $a${x + 5 * y} (i64.xor ${b(0)} (i64.and (i64.xor ${b(1)} (i64.const -1)) ${b(2)})))`)
    }
  }
  // ι: round constant by index from memory.
  emit(`(local.set $a0 (i64.xor ${lane(0)} (i64.load offset=${ROUND_CONSTANTS_OFFSET} (i32.shl (local.get $round) (i32.const 3)))))`)
  const roundBody = lines.splice(0)

  const constantsBytes = roundConstants()
    .map((c) => Array.from({ length: 8 }, (_, i) => Number((c >> BigInt(8 * i)) & 0xffn)))
    .flat()
    .map((b) => `\\${b.toString(16).padStart(2, '0')}`)
    .join('')
  const lanesOfBlock = RATE_BYTES / 8

  return [
    '(module',
    `  (memory (export "memory") ${MEMORY_PAGES})`,
    `  (data (i32.const ${ROUND_CONSTANTS_OFFSET}) "${constantsBytes}")`,
    '  ;; Absorbs `blocks` 136-byte blocks starting at `ptr` into the state at bytes 0..199.',
    '  (func (export "absorb") (param $ptr i32) (param $blocks i32) (local $round i32)',
    `    ${locals.map((name) => `(local ${name} i64)`).join(' ')}`,
    ...Array.from({ length: 25 }, (_, i) => `    (local.set $a${i} (i64.load offset=${8 * i} (i32.const 0)))`),
    '    (block $done',
    '      (loop $block',
    '        (br_if $done (i32.eqz (local.get $blocks)))',
    ...Array.from({ length: lanesOfBlock }, (_, i) => `        (local.set $a${i} (i64.xor ${lane(i)} (i64.load offset=${8 * i} (local.get $ptr))))`),
    '        (local.set $round (i32.const 0))',
    '        (loop $rounds',
    ...roundBody.map((l) => `          ${l}`),
    '          (local.set $round (i32.add (local.get $round) (i32.const 1)))',
    '          (br_if $rounds (i32.lt_u (local.get $round) (i32.const 24))))',
    `        (local.set $ptr (i32.add (local.get $ptr) (i32.const ${RATE_BYTES})))`,
    '        (local.set $blocks (i32.sub (local.get $blocks) (i32.const 1)))',
    '        (br $block)))',
    ...Array.from({ length: 25 }, (_, i) => `    (i64.store offset=${8 * i} (i32.const 0) ${lane(i)})`),
    '  )',
    ')',
    '',
  ].join('\n')
}
