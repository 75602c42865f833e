// Node (device agent, CLI, tests): the committed binary, compiled once at load.
import { readFileSync } from 'node:fs'

export const keccakModule = new WebAssembly.Module(readFileSync(new URL('./keccak.wasm', import.meta.url)))
