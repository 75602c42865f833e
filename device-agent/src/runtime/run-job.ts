/**
 * Runs one job's tensors through a loaded model's onnxruntime session and returns the outputs as
 * raw tensors. Input checks use the protocol package's validation, the same the edge applies.
 */
import {
  checkInputs,
  checkOutputNames,
  datatypeFromOrtType,
  ORT_TYPE_BY_DATATYPE,
  TensorError,
  typedElements,
  bytesOf,
  type RawTensor,
  messageOf,
} from '@depinfer/shared'
import * as ort from 'onnxruntime-node'
import type { LoadedModel } from './loaded-model.js'

/** A job the model cannot run: the caller's inputs are at fault, retrying elsewhere won't help. */
export class InvalidJobInputError extends Error {
  override name = 'InvalidJobInputError'
  constructor(message: string, readonly field: string) {
    super(message)
  }
}

export function checkJobTensors(model: LoadedModel, inputs: readonly RawTensor[], outputs: readonly string[]): void {
  try {
    checkInputs(model.name, model.inputs ?? [], inputs)
    checkOutputNames(model.name, model.outputs ?? [], outputs)
  } catch (error) {
    if (error instanceof TensorError) throw new InvalidJobInputError(error.message, error.field)
    throw error
  }
}

/** A C/C++ source file and line in an onnxruntime message, with the space after it. */
const SOURCE_LOCATION = /(?:\/[\w.+-]+)+\.(?:h|hpp|cc|cpp|c):\d+\s*/g

/**
 * The C++ function onnxruntime names after a source location, when it does:
 * `void onnxruntime::model_load_utils::ValidateOpsetForDomain(` up to its argument list.
 */
const CPP_FUNCTION = /(?:[\w<>*&,]+(?:::[\w<>*&,]+)*\s+)*\w+(?:::~?\w+)+\(/y
/** What may follow a C++ signature's argument list: ` const`, ` [with T = …]`. */
const CPP_QUALIFIERS = /(?:\s*const\b)?(?:\s*\[with [^\]]*\])?\s*/y

/**
 * onnxruntime's message without the source files of its build (`/onnxruntime_src/…/reshape_helper.h:45`)
 * and the C++ functions that follow them (`void onnxruntime::…::ValidateOpsetForDomain(const
 * std::unordered_map<…>&, …, int)`), which say nothing to whoever the message goes to, and took
 * the 300 characters a device advertises before the reason itself.
 */
export function withoutSourceLocations(message: string): string {
  let text = ''
  let from = 0
  for (const match of message.matchAll(SOURCE_LOCATION)) {
    text += message.slice(from, match.index)
    from = match.index + match[0].length
    CPP_FUNCTION.lastIndex = from
    if (CPP_FUNCTION.exec(message)) {
      CPP_QUALIFIERS.lastIndex = afterClosingParen(message, CPP_FUNCTION.lastIndex)
      CPP_QUALIFIERS.exec(message)
      from = CPP_QUALIFIERS.lastIndex
    }
  }
  return (text + message.slice(from)).trim()
}

/**
 * Sentences of onnxruntime's messages that say nothing about the case at hand: its message for
 * an opset newer than it knows opens with two of them (~250 characters), and the cut to what a
 * device advertises then dropped the one that matters ("Current official support for domain
 * ai.onnx is till opset 26").
 */
const BOILERPLATE = [
  'ONNX Runtime only *guarantees* support for models stamped with official released onnx opset versions.',
  'The operator schemas and or other functionality may change before next ONNX release and in this case ONNX Runtime will not guarantee backward compatibility.',
]

/** onnxruntime's message without its source locations (withoutSourceLocations) and boilerplate. */
export function plainOrtMessage(message: string): string {
  let text = withoutSourceLocations(message)
  for (const sentence of BOILERPLATE) text = text.split(sentence).join('')
  return text.replace(/\s{2,}/g, ' ').trim()
}

/** The index after the `)` closing the `(` just before `start` (`start` itself when unbalanced). */
function afterClosingParen(text: string, start: number): number {
  let depth = 1
  for (let i = start; i < text.length; i++) {
    if (text[i] === '(') depth++
    else if (text[i] === ')' && --depth === 0) return i + 1
  }
  return start
}

/**
 * A failed run's reason reaches the caller in the job's answer. onnxruntime would also print it
 * (~0.4 KB in red on stderr, from the run's logger) for every input a model refuses: any caller
 * could fill a provider's log, and the batching probe's expected failures looked like faults.
 */
const RUN_OPTIONS: ort.InferenceSession.RunOptions = { logSeverityLevel: 4 }

/**
 * onnxruntime's CPU kernels vectorize from a tensor's first aligned address, so where its data
 * starts decides the order of a sum, and so its last bits: a row summed from a view 4 bytes into
 * a buffer differed from the same row in a fresh array (an audit: a ReduceSum output one ulp off
 * onnxruntime run directly). A job's inputs are views into its frame at any offset; one that does
 * not start at a multiple of this many bytes of its buffer runs from a copy of its own, whose
 * buffer the allocator aligns as it does a caller's own array.
 */
const INPUT_ALIGNMENT_BYTES = 64

function alignedBytes(bytes: Uint8Array): Uint8Array {
  if (bytes.byteOffset % INPUT_ALIGNMENT_BYTES === 0) return bytes
  const copy = new Uint8Array(new ArrayBuffer(bytes.byteLength))
  copy.set(bytes)
  return copy
}

/**
 * Two inputs that give one named dimension (ONNX dim_param, e.g. `sequence` of token ids and of
 * their attention mask) different sizes, said with their names: onnxruntime's own refusal of
 * such a job ("… cannot broadcast … 3 by 4") names no input. Said only once onnxruntime has
 * refused: it does not hold inputs to their dimensions' names when the graph can run, and
 * neither is a job refused for them here.
 */
export function namedDimensionMismatch(metadata: readonly ort.InferenceSession.ValueMetadata[], inputs: readonly RawTensor[]): string | undefined {
  const first = new Map<string, { input: string; axis: number; size: number }>()
  for (const meta of metadata) {
    const tensor = inputs.find((input) => input.name === meta.name)
    if (!meta.isTensor || tensor === undefined) continue
    for (const [axis, dim] of meta.shape.entries()) {
      const size = tensor.shape[axis]
      if (typeof dim !== 'string' || dim === '' || size === undefined) continue
      const seen = first.get(dim)
      if (seen === undefined) first.set(dim, { input: meta.name, axis, size })
      else if (seen.size !== size) {
        return `${JSON.stringify(meta.name)} is ${size} along ${JSON.stringify(dim)} (dimension ${axis}), where ${JSON.stringify(seen.input)} is ${seen.size} (dimension ${seen.axis}): inputs that share a named dimension must agree on its size`
      }
    }
  }
  return undefined
}

export async function runModel(
  session: ort.InferenceSession,
  inputs: readonly RawTensor[],
  outputNames: readonly string[],
): Promise<RawTensor[]> {
  // No prototype: an input named `__proto__` (a published model may have one) would otherwise set
  // the object's prototype instead of a key, and every job would fail.
  const feeds = Object.create(null) as Record<string, ort.Tensor>
  for (const tensor of inputs) {
    // The ORT typings list one data type per tensor type; typedElements returns exactly the
    // array type ORT expects for this datatype (Uint16Array bits for FP16, Uint8Array for BOOL).
    const data = typedElements(tensor.datatype, alignedBytes(tensor.data)) as unknown as Float32Array
    feeds[tensor.name] = new ort.Tensor(ORT_TYPE_BY_DATATYPE[tensor.datatype] as 'float32', data, tensor.shape)
  }
  let results: ort.InferenceSession.ReturnType
  try {
    results = outputNames.length > 0 ? await session.run(feeds, [...outputNames], RUN_OPTIONS) : await session.run(feeds, RUN_OPTIONS)
  } catch (error) {
    // onnxruntime rejects inputs the graph cannot process (e.g. spatial dims too small).
    const reason = plainOrtMessage(messageOf(error))
    const mismatch = namedDimensionMismatch(session.inputMetadata, inputs)
    throw new InvalidJobInputError(`onnxruntime: ${reason}${mismatch === undefined ? '' : ` (${mismatch})`}`, 'inputs')
  }
  return Object.entries(results).map(([name, tensor]) => {
    const datatype = datatypeFromOrtType(tensor.type)
    if (!datatype) throw new Error(`output ${name} has unsupported type ${tensor.type}`)
    return { name, datatype, shape: [...tensor.dims], data: bytesOf(tensor.data as ArrayBufferView) }
  })
}
