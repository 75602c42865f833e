// The protocol package targets plain ES2022 so it type-checks without Node's or workerd's
// globals; both runtimes provide the WHATWG text codecs it uses, declared here minimally.
declare class TextEncoder {
  encode(input?: string): Uint8Array
}
declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean })
  decode(input?: Uint8Array): string
}
