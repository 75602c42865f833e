/**
 * The file through which a model's child process and the agent pass large tensors. Through the
 * process's IPC channel, 3 MB each way took 23 ms here (a pipe moves 64 KB per wake-up of each
 * side); written to and read from this file, 5.5 ms. The file is in /dev/shm (memory) where there
 * is one, is unlinked as soon as both processes hold it (nothing is left behind, however either
 * ends), and is used by one run at a time: the agent writes a run's inputs from offset 0, the
 * process reads them, runs, and writes the outputs from offset 0 for the agent to read.
 */
import { randomUUID } from 'node:crypto'
import { closeSync, existsSync, ftruncateSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { RawTensor } from '@depinfer/shared'
import { InvalidJobInputError } from './run-job.js'

/** Where a tensor's bytes lie in the scratch file. */
export interface ScratchRegion {
  offset: number
  length: number
}

/** A tensor between the agent and a session host: its bytes inline, or in the scratch file. */
export type HostTensor = Omit<RawTensor, 'data'> & { data: Uint8Array | ScratchRegion }

/** Tensors smaller than this go inline: the channel's own cost per message is what counts for them. */
const SCRATCH_MIN_BYTES = 64 * 1024
/**
 * A file grown past this is emptied once read: /dev/shm is memory that no process's resident size
 * shows (not the model's memory limit's), held until the file shrinks.
 */
const SCRATCH_KEEP_BYTES = 64 * 1024 * 1024

/** The scratch file's descriptor in the child process (after stdin, stdout, stderr and the IPC channel). */
export const CHILD_SCRATCH_FD = 4

export class ScratchFile {
  private constructor(readonly fd: number) {}

  /** A new scratch file, already unlinked once `adopted` is called (after the child has it). */
  static create(): { scratch: ScratchFile; adopted: () => void } {
    const path = join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), `depinfer-session-${randomUUID()}`)
    const fd = openSync(path, 'w+', 0o600)
    return { scratch: new ScratchFile(fd), adopted: () => unlinkSync(path) }
  }

  /** The scratch file a child process was started with. */
  static inherited(): ScratchFile {
    return new ScratchFile(CHILD_SCRATCH_FD)
  }

  /** The tensors as they travel: the large ones written one after another from offset 0. */
  put(tensors: readonly RawTensor[]): HostTensor[] {
    let offset = 0
    return tensors.map((tensor) => {
      if (tensor.data.byteLength < SCRATCH_MIN_BYTES) return tensor
      const region = { offset, length: tensor.data.byteLength }
      for (let written = 0; written < region.length; ) {
        written += writeSync(this.fd, tensor.data, written, region.length - written, region.offset + written)
      }
      offset += region.length
      return { ...tensor, data: region }
    })
  }

  /**
   * The tensors with their bytes, read from the file where they were put there; refused (field
   * `outputs`) before anything is read when they are more than `maxBytes` together.
   */
  take(tensors: readonly HostTensor[], maxBytes = Number.POSITIVE_INFINITY): RawTensor[] {
    const bytes = tensors.reduce((sum, tensor) => sum + (tensor.data instanceof Uint8Array ? tensor.data.byteLength : tensor.data.length), 0)
    const fileEnd = Math.max(0, ...tensors.map((tensor) => (tensor.data instanceof Uint8Array ? 0 : tensor.data.offset + tensor.data.length)))
    try {
      if (bytes > maxBytes) throw new InvalidJobInputError(`the outputs are ${bytes} bytes, more than the ${maxBytes} the run's results may carry`, 'outputs')
      return tensors.map((tensor) => this.#read(tensor))
    } finally {
      if (fileEnd > SCRATCH_KEEP_BYTES) ftruncateSync(this.fd, 0)
    }
  }

  #read(tensor: HostTensor): RawTensor {
    if (tensor.data instanceof Uint8Array) return tensor as RawTensor
    const { offset, length } = tensor.data
    const data = new Uint8Array(length)
    for (let read = 0; read < length; ) {
      const n = readSync(this.fd, data, read, length - read, offset + read)
      if (n === 0) throw new Error(`the scratch file ended at ${offset + read} bytes, before tensor ${tensor.name} did`)
      read += n
    }
    return { ...tensor, data }
  }

  close(): void {
    closeSync(this.fd)
  }
}
