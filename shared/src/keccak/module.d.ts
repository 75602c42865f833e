// What `#keccak-module` provides in every runtime (see package.json "imports"): the instantiated
// kernel of keccak.wasm. Typed here without the WebAssembly namespace, which not every
// consumer's type set declares (Node's types leave it to the DOM library).
export interface KeccakKernel {
  readonly memory: { readonly buffer: ArrayBuffer }
  /** Absorbs `blocks` 136-byte blocks at `ptr` into the state at bytes 0..199. */
  absorb(ptr: number, blocks: number): void
}
export declare const keccakKernel: KeccakKernel
