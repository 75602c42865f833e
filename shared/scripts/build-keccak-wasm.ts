/**
 * `npm run build:wasm -w shared`: compiles the generated keccak WebAssembly text
 * (shared/scripts/keccak-wat.ts) into shared/src/keccak/keccak.wasm, which is committed so that
 * installing and running need no compiler. shared/src/keccak.test.ts checks that the committed
 * file is exactly what this produces.
 */
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { compileKeccakWasm } from './compile-keccak-wasm.js'

export const KECCAK_WASM_PATH = fileURLToPath(new URL('../src/keccak/keccak.wasm', import.meta.url))

const bytes = await compileKeccakWasm()
writeFileSync(KECCAK_WASM_PATH, bytes)
console.log(`wrote ${KECCAK_WASM_PATH} (${bytes.length} bytes)`)
