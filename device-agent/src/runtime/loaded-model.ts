/**
 * One model on the device: its file (sha256-verified identity), its onnxruntime session and the
 * descriptor the agent advertises. Loading failures are kept on the model, never thrown past it,
 * so one bad model never stops the others from serving.
 */
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import {
  datatypeFromOrtType,
  type ModelDescriptor,
  type TensorSpec,
} from '@depinfer/shared'
import type * as ort from 'onnxruntime-node'
import { modelIdentity, type AgentConfig, type ExecutionProviderName } from '../config.js'
import { bundledModelPath } from '../models/bundled.js'
import type { OrtRuntime } from './execution.js'

export type ModelState = ModelDescriptor['state']

export interface LoadedModel {
  name: string
  version: string
  path: string
  state: ModelState
  /** Why loading failed, when state is 'failed'. */
  error?: string
  sha256?: string
  session?: ort.InferenceSession
  /** The execution provider the session was created on (after any fallback). */
  executionProvider?: ExecutionProviderName
  inputs?: TensorSpec[]
  outputs?: TensorSpec[]
  /** Rows the agent stacks into one run; 1 unless every input and output has a dynamic dim 0. */
  maxBatch: number
}

/** The configured models, not loaded yet. */
export function modelsFromConfig(config: AgentConfig): LoadedModel[] {
  return config.models.map((source) => ({
    ...modelIdentity(source),
    path: 'bundled' in source ? bundledModelPath(source.bundled) : source.path,
    state: 'loading',
    maxBatch: 1,
  }))
}

export interface SessionSettings {
  /** Creates the session with the configured options and execution providers. */
  runtime: OrtRuntime
  /** The configured batch limit, applied where the model allows batching. */
  maxBatch: number
}

/** Reads, hashes and opens a model file. Never throws: failures land in `state`/`error`. */
export async function loadModel(
  model: LoadedModel,
  settings: SessionSettings,
): Promise<LoadedModel> {
  try {
    const bytes = await readFile(model.path)
    model.sha256 = createHash('sha256').update(bytes).digest('hex')
    const { session, executionProvider } = await settings.runtime.createSession(bytes, model.name)
    model.session = session
    model.executionProvider = executionProvider
    model.inputs = model.session.inputMetadata.map((meta) => tensorSpec(meta, model.name))
    model.outputs = model.session.outputMetadata.map((meta) => tensorSpec(meta, model.name))
    const batchable = [...model.inputs, ...model.outputs].every((spec) => spec.shape[0] === -1)
    model.maxBatch = batchable ? settings.maxBatch : 1
    model.state = 'ready'
  } catch (error) {
    model.state = 'failed'
    model.error = (error as Error).message
  }
  return model
}

function tensorSpec(meta: ort.InferenceSession.ValueMetadata, modelName: string): TensorSpec {
  if (!meta.isTensor) throw new Error(`model ${modelName}: ${meta.name} is not a tensor (unsupported)`)
  const datatype = datatypeFromOrtType(meta.type)
  if (!datatype) throw new Error(`model ${modelName}: ${meta.name} has unsupported type ${meta.type}`)
  // onnxruntime reports named dynamic dimensions as strings; the v2 metadata convention is -1.
  const shape = meta.shape.map((dim) => (typeof dim === 'number' && dim >= 0 ? dim : -1))
  return { name: meta.name, datatype, shape }
}

/** The descriptor advertised in the device status; models that have not loaded carry no spec. */
export function describe(model: LoadedModel): ModelDescriptor | undefined {
  if (!model.sha256 || !model.inputs || !model.outputs) return undefined
  return {
    name: model.name,
    version: model.version,
    sha256: model.sha256,
    platform: 'onnxruntime_onnx',
    inputs: model.inputs,
    outputs: model.outputs,
    maxBatch: model.maxBatch,
    state: model.state,
    ...(model.executionProvider && { executionProvider: model.executionProvider }),
  }
}
