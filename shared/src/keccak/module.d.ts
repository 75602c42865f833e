// What `#keccak-module` provides in every runtime (see package.json "imports").
export declare const keccakModule: WebAssembly.Module
