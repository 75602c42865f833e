/**
 * One model on the device: its file (sha256-verified identity), its onnxruntime session and the
 * descriptor the agent advertises. Loading failures are kept on the model, never thrown past it,
 * so one bad model never stops the others from serving.
 */
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { basename } from 'node:path'
import {
  cutToLength,
  datatypeFromOrtType,
  MODEL_ERROR_MAX_CHARS,
  nodeOpTypes,
  readOnnxModelInfo,
  type ModelDescriptor,
  type ModelVariant,
  type TensorSpec,
  messageOf,
} from '@depinfer/shared'
import type * as ort from 'onnxruntime-node'
import { isLocalSource, isUrlSource, modelIdentity, type AgentConfig, type ExecutionProviderName } from '../config.js'
import { bundledModelPath } from '../models/bundled.js'
import { cachedModelPath, type ModelFileRequest } from '../models/download.js'
import { ChecksumMismatchError } from '../models/errors.js'
import { batchingProblem } from './batch-probe.js'
import type { OrtRuntime } from './execution.js'
import type { ModelSession } from './model-session.js'
import { plainOrtMessage } from './run-job.js'

export type ModelState = ModelDescriptor['state']

/** Where a downloaded model comes from (published on the edge, or any URL), and what it must hash to. */
export interface RemoteFile extends Omit<ModelFileRequest, 'label'> {
  /** The tensors the edge's listing declares: advertised while the model is loading. */
  inputs?: TensorSpec[]
  outputs?: TensorSpec[]
  /**
   * Set when the file is a variant published with the version (its int8 file) rather than the
   * version's own: which kind, and the sha256 of the version's own file, which stays the model's
   * identity in the status and in the jobs the edge sends. `fallback` is that file: what the
   * device runs instead when the variant cannot be loaded.
   */
  variant?: { kind: Exclude<ModelVariant, 'fp32'>; of: string; fallback?: Pick<RemoteFile, 'url' | 'sha256' | 'size'> }
}

export interface LoadedModel {
  name: string
  version: string
  path: string
  /** Set for a model that is downloaded into the cache (path is then its cache path). */
  remote?: RemoteFile
  state: ModelState
  /** Why loading failed, when state is 'failed'. */
  error?: string
  /** The sha256 of the file loaded (verified): what attestations name as the model hash. */
  sha256?: string
  session?: ModelSession
  /** The execution provider the session was created on (after any fallback). */
  executionProvider?: ExecutionProviderName
  inputs?: TensorSpec[]
  outputs?: TensorSpec[]
  /** Rows the agent stacks into one run; 1 unless every input and output has a dynamic dim 0. */
  maxBatch: number
  /**
   * Set when its session was lost because its file could not be read again (deleted, or changed
   * on disk): a downloaded model then gets its file again (models/provision.ts).
   */
  fileLost?: boolean
}

/**
 * The configured models whose name and version are known from the config alone (bundled, file,
 * URL), not loaded yet. Published ones are known only from the edge's listing (models/provision.ts).
 */
export function modelsFromConfig(config: AgentConfig): LoadedModel[] {
  return config.models.flatMap((source): LoadedModel[] => {
    if (isLocalSource(source)) {
      return [{ ...modelIdentity(source), path: 'bundled' in source ? bundledModelPath(source.bundled) : source.path, state: 'loading', maxBatch: 1 }]
    }
    if (isUrlSource(source)) {
      // Never the edge's API key: the URL may be any host.
      return [remoteModel(config.cacheDir, source, { url: source.url, sha256: source.sha256, fromEdge: false })]
    }
    return []
  })
}

/** A model to download into `cacheDir`, not loaded yet. */
export function remoteModel(cacheDir: string, identity: { name: string; version: string }, remote: RemoteFile): LoadedModel {
  return { name: identity.name, version: identity.version, path: cachedModelPath(cacheDir, remote.sha256), remote, state: 'loading', maxBatch: 1 }
}

export interface SessionSettings {
  /** Creates the session with the configured options and execution providers. */
  runtime: OrtRuntime
  /** The configured batch limit, applied where the model allows batching. */
  maxBatch: number
  /** Says why a model runs unbatched when its first dimension looked like a batch axis. */
  log?: (line: string) => void
  /** How long each run of the batching probe may take where the session can stop it: PROBE_RUN_MS unless a test shortens it. */
  probeRunMs?: number
}

/**
 * Reads, hashes and opens a model file. Never throws: failures land in `state`/`error`. A
 * downloaded model's bytes must hash to its expected sha256: they are checked here, on exactly
 * the bytes handed to onnxruntime, so nothing that changed on disk after the download's own
 * check can be loaded.
 */
export async function loadModel(
  model: LoadedModel,
  settings: SessionSettings,
): Promise<LoadedModel> {
  try {
    const what = `model ${model.name} v${model.version} (${model.path})`
    const { bytes, sha256 } = await readHashed(model.path)
    if (model.remote && sha256 !== model.remote.sha256) throw new ChecksumMismatchError(model.remote.sha256, sha256, what)
    model.sha256 = sha256
    // The tensors as the file declares them, read as the edge reads a published model: the
    // device advertises what the registry lists. onnxruntime's metadata says [] (a scalar) both
    // for a scalar and for a tensor of unknown rank, which v2 metadata cannot describe (the
    // file is refused here, as it is at publishing), and [] again for an output whose declared
    // shape its own inference contradicts. The reading also refuses, whatever the file's source,
    // a tensor in an external data file (assertSelfContained): onnxruntime would read it from a
    // path the file names, relative to this process's working directory (this device's key, say),
    // and answer it.
    const info = readOnnxModelInfo(bytes)
    const declared = new Map([...info.inputs, ...info.outputs].map((spec) => [spec.name, spec]))
    // When the session moves to a worker thread: the same bytes, or nothing.
    let rereadFailed = false
    const reread = async () => {
      rereadFailed = true
      const again = await readHashed(model.path)
      if (again.sha256 !== sha256) throw new ChecksumMismatchError(sha256, again.sha256, what)
      rereadFailed = false
      return again.bytes
    }
    // A worker thread that dies takes the model with it: failed, so it is no longer advertised as ready.
    const lost = (reason: Error) => {
      model.state = 'failed'
      model.error = reason.message
      if (rereadFailed) model.fileLost = true
      settings.log?.(`model ${model.name} v${model.version} failed: ${reason.message}`)
    }
    // Published on the edge by anyone with a key: never opened or run on the agent's thread.
    const { session, executionProvider } = await settings.runtime.createSession(bytes, model.name, reread, lost, model.remote?.fromEdge === true)
    model.session = session
    model.executionProvider = executionProvider
    model.inputs = model.session.inputMetadata.map((meta) => declared.get(meta.name) ?? tensorSpec(meta, model.name))
    model.outputs = model.session.outputMetadata.map((meta) => declared.get(meta.name) ?? tensorSpec(meta, model.name))
    // Batched only where dimension 0 is dynamic everywhere and rows are answered independently.
    const dynamicRows = [...model.inputs, ...model.outputs].every((spec) => spec.shape[0] === -1)
    const problem = dynamicRows && settings.maxBatch > 1 ? (dynamicQuantization(bytes) ?? (await batchingProblem(session, model.inputs, settings.probeRunMs))) : undefined
    if (problem) settings.log?.(`model ${model.name} v${model.version} runs unbatched: ${problem}`)
    model.maxBatch = dynamicRows && !problem ? settings.maxBatch : 1
    model.state = 'ready'
  } catch (error) {
    model.state = 'failed'
    model.error = messageOf(error)
    // A session opened before the failure (its thread, its memory) is not kept.
    await model.session?.release().catch(() => {})
    delete model.session
  }
  return model
}

/**
 * Operators that quantize an activation at run time with one scale for the whole tensor they
 * are given (depinfer-quantize's and onnxruntime's dynamic int8 models): in a batch, one caller's
 * rows change the scale, and so the outputs, of another's.
 */
const DYNAMIC_QUANTIZE_OPS: readonly string[] = ['DynamicQuantizeLinear', 'DynamicQuantizeMatMul']

/**
 * Why a model that quantizes activations at run time is not batched, or undefined. Said from its
 * operators rather than left to the batching probe: the probe sees the dependence only where an
 * output shows it on the probe's rows, and a label (ArgMax) or a threshold hid it there while
 * real callers' rows changed each other's answers (an audit: an int8 classifier's label).
 */
function dynamicQuantization(bytes: Uint8Array): string | undefined {
  const ops = nodeOpTypes(bytes)
  const found = DYNAMIC_QUANTIZE_OPS.filter((op) => ops.has(op))
  if (found.length === 0) return undefined
  return `it quantizes activations at run time (${found.join(', ')}), with one scale for the whole batch, so a row's outputs depend on the other rows of its batch`
}

/** A file's bytes and their sha256 (hex). */
async function readHashed(path: string): Promise<{ bytes: Buffer; sha256: string }> {
  const bytes = await readFile(path)
  return { bytes, sha256: createHash('sha256').update(bytes).digest('hex') }
}

function tensorSpec(meta: ort.InferenceSession.ValueMetadata, modelName: string): TensorSpec {
  if (!meta.isTensor) throw new Error(`model ${modelName}: ${meta.name} is not a tensor (unsupported)`)
  const datatype = datatypeFromOrtType(meta.type)
  if (!datatype) throw new Error(`model ${modelName}: ${meta.name} has unsupported type ${meta.type}`)
  // onnxruntime reports named dynamic dimensions as strings; the v2 metadata convention is -1.
  const shape = meta.shape.map((dim) => (typeof dim === 'number' && dim >= 0 ? dim : -1))
  return { name: meta.name, datatype, shape }
}

/**
 * The sha256 the model is known by on the network: the version's own file, also when this device
 * runs a variant of it. Jobs name it; undefined until the file is known.
 */
export function modelSha256(model: LoadedModel): string | undefined {
  return model.remote?.variant?.of ?? model.sha256
}

/**
 * The descriptor advertised in the device status. A loaded model is described by its file's
 * sha256 and its session's tensors; a downloaded one that is not ready (loading or failed) by what
 * the edge's listing declares, when it declares tensors; any other carries no spec and is left out.
 * `sha256` is the model's identity (modelSha256); `runs` says which file actually runs.
 */
export function describe(model: LoadedModel): ModelDescriptor | undefined {
  const spec = model.state !== 'ready' && model.remote ? model.remote : model
  if (!spec.sha256 || !spec.inputs || !spec.outputs) return undefined
  return {
    name: model.name,
    version: model.version,
    sha256: model.remote?.variant?.of ?? spec.sha256,
    platform: 'onnxruntime_onnx',
    inputs: spec.inputs,
    outputs: spec.outputs,
    maxBatch: model.maxBatch,
    state: model.state,
    ...(model.executionProvider && { executionProvider: model.executionProvider }),
    ...(model.state === 'ready' && model.session && { thread: model.session.thread }),
    runs: { variant: model.remote?.variant?.kind ?? 'fp32', sha256: spec.sha256 },
    ...(model.state === 'failed' && model.error !== undefined && { error: advertisedError(model) }),
  }
}

/** An absolute file path in a message (not a URL's path: that follows `host`), with what precedes it. */
const ABSOLUTE_PATH = /(^|[\s'"(=])(\/[^\s'"():,]+)/g

/**
 * A load error as the device advertises it: one line, without onnxruntime's build paths, and
 * with this device's file paths cut to their file names (the cache's location, the install's
 * directories are the provider's business), cut to size.
 */
function advertisedError(model: LoadedModel): string {
  const text = plainOrtMessage(model.error ?? '')
    .replace(ABSOLUTE_PATH, (_, before: string, path: string) => `${before}${basename(path)}`)
    .replace(/\s+/g, ' ')
  return cutToLength(text, MODEL_ERROR_MAX_CHARS)
}
