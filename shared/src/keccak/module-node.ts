// Node (device agent, CLI, tests): the committed binary, compiled once at load.
import { readFileSync } from 'node:fs'
import type { KeccakKernel } from './module.js'

const compiled = new WebAssembly.Module(readFileSync(new URL('./keccak.wasm', import.meta.url)))
export const keccakKernel = new WebAssembly.Instance(compiled, {}).exports as unknown as KeccakKernel
