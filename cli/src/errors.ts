/**
 * The failures the `depinfer` CLI expects (a bad argument, a file it cannot read, an edge it
 * cannot reach or that refuses): each is reported as one line naming what is wrong, with no stack
 * trace, since the stack would only say where the CLI noticed, not what to fix.
 */
import { readFile } from 'node:fs/promises'
import { messageOf } from '@depinfer/shared'

/** An expected failure: main prints its message alone and exits with `exitCode`. */
export class CliError extends Error {
  override name = 'CliError'
  constructor(
    message: string,
    /** 2 for what the command line or environment asks for wrongly, 1 for the rest. */
    readonly exitCode: 1 | 2 = 1,
    options?: ErrorOptions,
  ) {
    super(message, options)
  }
}

/** A command line that cannot work as given: printed with the usage. */
export class UsageError extends CliError {
  override name = 'UsageError'
  constructor(message: string) {
    super(message, 2)
  }
}

/**
 * What went wrong in a Node system error, without the parts the caller names itself: Node writes
 * `ENOENT: no such file or directory, open '/x.onnx'`, and the caller says which file it was.
 */
export function systemErrorText(error: unknown): string {
  const message = messageOf(error)
  return /^[A-Z0-9_]+: (.+?)(, \w+ '.*')?$/.exec(message)?.[1] ?? message
}

/** Reads a file the user named, as a CliError naming it (`what`: e.g. "the model file") when it cannot be read. */
export async function readUserFile(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path)
  } catch (error) {
    throw new CliError(`cannot read ${what} ${path}: ${systemErrorText(error)}`, 1, { cause: error })
  }
}
