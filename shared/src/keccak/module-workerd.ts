// workerd forbids compiling WebAssembly from bytes at run time ("code generation disallowed by
// embedder"); a .wasm import is compiled at deploy time instead (wrangler's CompiledWasm rule).
import compiled from './keccak.wasm'
import type { KeccakKernel } from './module.js'

export const keccakKernel = new WebAssembly.Instance(compiled, {}).exports as unknown as KeccakKernel
