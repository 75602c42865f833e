/**
 * Job ids: the bytes32 each device's attestation is signed over. The first 6 bytes are the
 * time the Gateway minted the id (milliseconds since the epoch, big-endian), the other 26 are
 * random (208 bits: as unguessable as ever). The time lets the edge find an archived job's batch
 * from its id alone (batching/archive.ts) instead of keeping a row per job in D1 forever.
 */
import { bytesToHex, type Hex } from 'viem'

const TIME_BYTES = 6
const ID_BYTES = 32

/** A new job id minted at `nowMs`. */
export function newJobId(nowMs: number = Date.now()): Hex {
  const bytes = crypto.getRandomValues(new Uint8Array(ID_BYTES))
  let time = nowMs
  for (let i = TIME_BYTES - 1; i >= 0; i--) {
    bytes[i] = time % 256
    time = Math.floor(time / 256)
  }
  return bytesToHex(bytes)
}

/** When the job id `0x…` (32 bytes of hex) was minted, by its first 6 bytes. */
export function jobIdTimeMs(jobId: string): number {
  return Number.parseInt(jobId.slice(2, 2 + 2 * TIME_BYTES), 16)
}
