// The Worker runs with nodejs_compat, which provides node:buffer; only the slice of its API the
// edge uses is declared here, because @types/node's globals clash with @cloudflare/workers-types.
declare module 'node:buffer' {
  export const Buffer: {
    from(buffer: ArrayBufferLike, byteOffset?: number, length?: number): Buffer
  }
}
