// The protocol package runs in Node and in workerd under nodejs_compat; both implement
// node:crypto's createHash natively (src/hash.ts). Only the slice used is declared, so the
// package still type-checks without Node's globals. The edge's type-check includes this file
// too (edge/tsconfig.json): it compiles shared's sources without Node's types.
declare module 'node:crypto' {
  interface Hash {
    /** Strings are hashed as UTF-8. */
    update(data: Uint8Array | string): Hash
    digest(): Uint8Array
  }
  export function createHash(algorithm: 'sha256'): Hash
}
