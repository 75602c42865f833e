// The keccak kernel is WebAssembly (src/keccak.ts); the protocol package type-checks without
// Node's or workerd's globals, so the little of the WebAssembly API it uses is declared here,
// along with what its two loaders import (src/keccak/module-node.ts, module-workerd.ts).
declare namespace WebAssembly {
  class Module {
    constructor(bytes: Uint8Array)
  }
  class Instance {
    constructor(module: Module, imports?: object)
    readonly exports: Record<string, unknown>
  }
}

declare module '*.wasm' {
  const compiled: WebAssembly.Module
  export default compiled
}

declare module 'node:fs' {
  export function readFileSync(path: URL): Uint8Array
}

// module-node.ts finds keccak.wasm next to itself.
declare class URL {
  constructor(url: string, base?: string | URL)
}
interface ImportMeta {
  readonly url: string
}
