// solc-js ships no type declarations; this covers the part of its API the build uses.
declare module 'solc' {
  export type ImportResult = { contents: string } | { error: string }
  export interface CompileCallbacks {
    import?: (path: string) => ImportResult
  }
  /** Standard JSON in, standard JSON out. */
  export function compile(input: string, callbacks?: CompileCallbacks): string
  export function version(): string
  const solc: { compile: typeof compile; version: typeof version }
  export default solc
}
