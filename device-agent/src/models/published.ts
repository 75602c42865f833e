/**
 * Models published on the edge: its listing (`GET /api/models`), the file URL of each version,
 * which of them a device's `published` sources select, and which file of each it runs (the
 * version's own, or a variant published with it).
 */
import {
  ID_PATTERN,
  PublishedVariantSchema,
  TensorSpecSchema,
  variantAccepted,
  compareVersions,
  VersionSchema,
  type ModelVariant,
  type PublishedVariant,
  type TensorSpec,
  messageOf,
} from '@depinfer/shared'
import { z } from 'zod'
import type { AgentConfig, Precision, PublishedSource } from '../config.js'
import { AGENT_VERSION } from '../version.js'
import { networkMessage } from './download.js'
import { DownloadError, httpStatusError } from './errors.js'

export type EdgeSettings = NonNullable<AgentConfig['edge']>

/** One version of one model, as the edge lists it. */
export interface PublishedModel {
  name: string
  version: string
  /** sha256 of the ONNX file (lowercase hex): what the device must end up with. */
  sha256: string
  /** Bytes of the file. */
  size: number
  priceWei?: string
  description?: string
  /** The declared tensors, when the listing has valid ones (the status shows them while loading). */
  inputs?: TensorSpec[]
  outputs?: TensorSpec[]
  /** Files published with the version to run instead of its own (valid entries only). */
  variants: PublishedVariant[]
  /** Who owns the name (the edge's `owner`), and when this version was published (Unix ms). */
  owner?: string
  publishedAt?: number
}

const PublishedEntrySchema = z.object({
  name: z.string().regex(ID_PATTERN),
  version: VersionSchema,
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  size: z.number().int().nonnegative(),
  priceWei: z.string().optional(),
  description: z.string().optional(),
  owner: z.string().optional(),
  publishedAt: z.number().optional(),
  inputs: z.unknown(),
  outputs: z.unknown(),
  variants: z.unknown(),
})

const TensorSpecsSchema = z.array(TensorSpecSchema).min(1)

const ListingSchema = z.object({ models: z.array(z.unknown()) })

export class ListingError extends DownloadError {
  override name = 'ListingError'
}

/** Headers of every request to the edge: the provider's API key. */
export function edgeHeaders(edge: EdgeSettings): Record<string, string> {
  return { authorization: `Bearer ${edge.apiKey}`, 'user-agent': `depinfer-agent/${AGENT_VERSION}` }
}

/** `GET {edge}/api/models/{name}/versions/{version}/file`, or `…/variants/{kind}/file` for a variant's. */
function publishedFileUrl(edge: EdgeSettings, model: { name: string; version: string }, variant: ModelVariant = 'fp32'): string {
  const versionUrl = `${edge.url}/api/models/${encodeURIComponent(model.name)}/versions/${encodeURIComponent(model.version)}`
  return variant === 'fp32' ? `${versionUrl}/file` : `${versionUrl}/variants/${variant}/file`
}

/**
 * Every version of every published model. An entry that is not valid is left out (and
 * reported through `log`) rather than failing the whole listing: one bad entry must not stop a
 * device from serving the others.
 */
export async function listPublishedModels(
  edge: EdgeSettings,
  options: { timeoutMs: number; signal?: AbortSignal; log?: (message: string) => void },
): Promise<PublishedModel[]> {
  const url = `${edge.url}/api/models`
  const signals = [AbortSignal.timeout(options.timeoutMs), ...(options.signal ? [options.signal] : [])]
  let response: Response
  try {
    response = await fetch(url, { headers: { ...edgeHeaders(edge), accept: 'application/json' }, signal: AbortSignal.any(signals) })
  } catch (error) {
    options.signal?.throwIfAborted()
    throw new ListingError(`cannot list published models at ${url}: ${networkMessage(error)}`, true, { cause: error })
  }
  if (!response.ok) {
    // The edge's 404 for its listing: a route it does not have, e.g. edge.url given with a path.
    throw await httpStatusError(response, `listing published models at ${url}`, true, ' (set edge.url to the edge\'s address without a path: the agent adds /api/models)')
  }
  let body: unknown
  try {
    body = await response.json()
  } catch (error) {
    throw new ListingError(`the published models at ${url} are not JSON: ${messageOf(error)}`, true, { cause: error })
  }
  const listing = ListingSchema.safeParse(body)
  if (!listing.success) throw new ListingError(`the published models at ${url} are not a {"models": [...]} listing`, false)
  const models: PublishedModel[] = []
  for (const [index, entry] of listing.data.models.entries()) {
    const parsed = PublishedEntrySchema.safeParse(entry)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!
      options.log?.(`ignoring published model #${index}: ${issue.path.join('.') || '(entry)'}: ${issue.message}`)
      continue
    }
    const { inputs, outputs, variants, ...model } = parsed.data
    const inputSpecs = TensorSpecsSchema.safeParse(inputs)
    const outputSpecs = TensorSpecsSchema.safeParse(outputs)
    models.push({
      ...model,
      ...(inputSpecs.success && outputSpecs.success && { inputs: inputSpecs.data, outputs: outputSpecs.data }),
      // A variant entry this agent cannot read (e.g. a newer kind) is skipped: the version's own
      // file is always there to run.
      variants: (Array.isArray(variants) ? variants : []).flatMap((variant) => {
        const entry = PublishedVariantSchema.safeParse(variant)
        return entry.success ? [entry.data] : []
      }),
    })
  }
  return models
}

/** The file of a published version a device runs, and where to get it. */
export interface FileToRun {
  variant: ModelVariant
  sha256: string
  size: number
  url: string
}

/**
 * Which file of `model` to run: with `int8-when-accepted`, its int8 variant where the publisher's
 * report meets the publisher's threshold (variantAccepted, the rule the edge routes by); else
 * the version's own file.
 */
export function fileToRun(edge: EdgeSettings, model: PublishedModel, precision: Precision): FileToRun {
  const int8 = precision === 'int8-when-accepted' ? model.variants.find((v) => v.kind === 'int8' && variantAccepted(v)) : undefined
  if (int8) return { variant: 'int8', sha256: int8.sha256, size: int8.size, url: publishedFileUrl(edge, model, 'int8') }
  return { variant: 'fp32', sha256: model.sha256, size: model.size, url: publishedFileUrl(edge, model) }
}

/** Each model name's versions, newest first (numerically, as the edge orders them). */
function versionsByName(models: readonly PublishedModel[]): Map<string, PublishedModel[]> {
  const byName = new Map<string, PublishedModel[]>()
  for (const model of models) {
    const versions = byName.get(model.name)
    if (versions) versions.push(model)
    else byName.set(model.name, [model])
  }
  for (const versions of byName.values()) versions.sort((a, b) => compareVersions(b.version, a.version))
  return byName
}

/** The newest `count` versions of each model name (every one for "all"), newest first per name. */
function newestVersions(models: readonly PublishedModel[], count: number | 'all' = 1): PublishedModel[] {
  return [...versionsByName(models).values()].flatMap((newestFirst) => (count === 'all' ? newestFirst : newestFirst.slice(0, count)))
}

export interface FitLimits {
  /** The largest file `published: "*"` picks. */
  maxModelBytes: number
  /** The most names of one owner `published: "*"` picks (default MAX_STAR_NAMES_PER_OWNER). */
  maxNamesPerOwner?: number
  /** Free bytes in the cache directory. */
  freeBytes: number
  /**
   * Bytes of a file in the cache already: all of it when it is there (it needs no more space
   * then), what its interrupted download holds (its .part), or 0.
   */
  cachedBytes: (sha256: string) => number
}

export interface Selection {
  selected: PublishedModel[]
  /**
   * Models the sources asked for that cannot be served, and why (logged, listed by `status`).
   * `passedOver`: one `"*"` leaves out because it does not fit, as `"*"` means to; not a failure.
   */
  problems: { model: string; name: string; version?: string; reason: string; passedOver?: true }[]
}

/**
 * The most published versions `"*"` serves in all (named sources' included), and the most names
 * of one owner it serves. Anyone with a key can publish, a version costs one request, and the
 * device's status lists each served model's inputs and outputs (up to 64 KiB each,
 * MAX_TENSOR_METADATA_CHARS): an audit published versions until the status passed the broker's
 * 40 MiB, and the device went offline for good. Names published longest ago come first, so a
 * flood of new names cannot push out the models a device already serves.
 */
export const MAX_STAR_MODELS = 64
export const MAX_STAR_NAMES_PER_OWNER = 8

/**
 * The published models `sources` select: a named one at its given version, or its newest (the
 * newest `versions` of it); for "*" the newest version (or `versions`) of every model among
 * those that fit this device (the file it would run, `fileOf`: ≤ maxModelBytes, and room for it
 * in the cache after the models picked before it). A named model is not held to maxModelBytes:
 * the operator chose it.
 */
export function selectPublished(
  sources: readonly PublishedSource[],
  listing: readonly PublishedModel[],
  limits: FitLimits,
  fileOf: (model: PublishedModel) => { sha256: string; size: number } = (model) => model,
): Selection {
  const selected: PublishedModel[] = []
  const problems: Selection['problems'] = []
  const has = (model: PublishedModel) => selected.some((chosen) => chosen.name === model.name && chosen.version === model.version)
  let spaceLeft = limits.freeBytes
  /** The space a file still needs: what of it is not in the cache yet. */
  const needs = (file: { sha256: string; size: number }) => Math.max(0, file.size - limits.cachedBytes(file.sha256))
  const take = (model: PublishedModel) => {
    if (has(model)) return
    selected.push(model)
    spaceLeft -= needs(fileOf(model))
  }
  for (const source of sources.filter((s) => s.published !== '*')) {
    const versions = listing.filter((model) => model.name === source.published)
    const models = source.version === undefined ? newestVersions(versions, source.versions) : versions.filter((m) => m.version === source.version)
    if (models.length > 0) models.forEach(take)
    else {
      const wanted = `${source.published}${source.version === undefined ? '' : ` v${source.version}`}`
      problems.push({ model: wanted, name: source.published, ...(source.version !== undefined && { version: source.version }), reason: 'not published on the edge' })
    }
  }
  const everything = sources.find((s) => s.published === '*')
  if (everything) {
    // Round by round: every name's newest version first, then its next newest, and so on,
    // smallest first within a round: within the free space, as many models as possible, and
    // never an older version in the place of a newer one that fits. A version that does not fit
    // (over maxModelBytes, or no room) is passed over for the name's next newest in the next
    // round: a device too small for a model's newest version serves the newest it can.
    const newestFirst = starEligible(versionsByName(listing), problems, limits.maxNamesPerOwner ?? MAX_STAR_NAMES_PER_OWNER)
    const taken = new Map<string, number>()
    const wanted = everything.versions ?? 1
    const wants = (name: string) => wanted === 'all' || (taken.get(name) ?? 0) < wanted
    for (;;) {
      const round = [...newestFirst].flatMap(([name, versions]) => (wants(name) && versions.length > 0 ? [versions.shift()!] : []))
      if (round.length === 0) break
      for (const model of round.sort((a, b) => fileOf(a).size - fileOf(b).size)) {
        // One a named source took already is one of this name's versions.
        if (!has(model)) {
          const file = fileOf(model)
          const missing = needs(file)
          const reason =
            selected.length >= MAX_STAR_MODELS
              ? `"*" serves at most ${MAX_STAR_MODELS} published versions in all; name the model to serve it`
              : file.size > limits.maxModelBytes
                ? `${file.size} bytes, over maxModelBytes (${limits.maxModelBytes})`
                : missing > spaceLeft
                  ? `${file.size} bytes${missing < file.size ? ` (${missing} still to download)` : ''}, more than the ${Math.max(0, spaceLeft)} left free in the cache`
                  : undefined
          if (reason !== undefined) {
            problems.push({ model: `${model.name} v${model.version}`, name: model.name, version: model.version, reason, passedOver: true })
            continue
          }
          take(model)
        }
        taken.set(model.name, (taken.get(model.name) ?? 0) + 1)
      }
    }
  }
  return { selected, problems }
}

/**
 * The names `"*"` may take, out of `byName`: the longest published first (by their oldest
 * version's publishedAt), at most `namesPerOwner` of one owner and MAX_STAR_MODELS in all; the
 * rest are added to `problems` as passed over.
 */
function starEligible(byName: Map<string, PublishedModel[]>, problems: Selection['problems'], namesPerOwner: number): Map<string, PublishedModel[]> {
  const since = (versions: readonly PublishedModel[]) => Math.min(...versions.map((v) => v.publishedAt ?? Number.POSITIVE_INFINITY))
  const names = [...byName].sort(([a, av], [b, bv]) => since(av) - since(bv) || (a < b ? -1 : 1))
  const perOwner = new Map<string, number>()
  const eligible = new Map<string, PublishedModel[]>()
  for (const [name, versions] of names) {
    const owner = versions[0]?.owner ?? `name:${name}`
    const owned = perOwner.get(owner) ?? 0
    const reason =
      eligible.size >= MAX_STAR_MODELS
        ? `"*" serves at most ${MAX_STAR_MODELS} published names, those published longest ago first; name the model to serve it`
        : owned >= namesPerOwner
          ? `"*" serves at most ${namesPerOwner} names of one owner (${owner}); name the model to serve it, or raise maxNamesPerOwner`
          : undefined
    if (reason !== undefined) {
      problems.push({ model: name, name, reason, passedOver: true })
      continue
    }
    perOwner.set(owner, owned + 1)
    eligible.set(name, versions)
  }
  return eligible
}
