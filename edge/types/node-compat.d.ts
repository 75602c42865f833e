// The Worker runs with nodejs_compat, which provides these Node modules; only the slices the edge
// uses are declared, because @types/node's globals clash with @cloudflare/workers-types.
declare module 'node:buffer' {
  export const Buffer: {
    from(buffer: ArrayBufferLike, byteOffset?: number, length?: number): Buffer
  }
}

declare module 'node:net' {
  import type { Duplex } from 'node:stream'
  export function connect(options: { host: string; port: number; noDelay?: boolean }): Duplex
}

declare module 'node:tls' {
  import type { Duplex } from 'node:stream'
  export function connect(options: { host: string; port: number; servername?: string }): Duplex
}
