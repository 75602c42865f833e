/** WebAssembly text → binary with wabt (a build-time tool only; nothing at run time needs it). */
import wabt from 'wabt'
import { keccakWat } from './keccak-wat.js'

export async function compileKeccakWasm(): Promise<Uint8Array> {
  const compiler = await wabt()
  const module = compiler.parseWat('keccak.wat', keccakWat())
  try {
    module.validate()
    return Uint8Array.from(module.toBinary({ canonicalize_lebs: true }).buffer)
  } finally {
    module.destroy()
  }
}
