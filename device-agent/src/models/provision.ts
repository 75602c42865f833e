/**
 * The models an agent downloads: URL sources, and published ones, resolved from the edge's
 * listing (listed again every edge.pollSec to pick up new ones). Each is downloaded into the
 * cache, verified, then loaded; one at a time, so downloads do not split the link between them
 * and a terminal shows one progress bar. A model whose download fails is `failed` with the
 * reason and the others carry on; one that failed for a reason that may pass (network, edge
 * trouble) is tried again at the next listing (a URL source too, as often, with or without an edge).
 */
import { mkdir } from 'node:fs/promises'
import { messageOf, stackOf } from '@depinfer/shared'
import { isPublishedSource, type AgentConfig, type PublishedSource } from '../config.js'
import { remoteModel, type LoadedModel, type RemoteFile } from '../runtime/loaded-model.js'
import { cachedBytes, cachedModelPath, fetchModelFile, freeDiskBytes, removeCachedFile, DEFAULT_BACKOFF } from './download.js'
import { DownloadError, ModelTooLargeError } from './errors.js'
import type { ProgressFactory } from './progress.js'
import { edgeHeaders, fileToRun, listPublishedModels, selectPublished, type FileToRun, type PublishedModel } from './published.js'

export interface ProvisionerOptions {
  config: AgentConfig
  /** Every model the device has (for never adding a name and version twice). */
  models: () => readonly LoadedModel[]
  /** Creates the session of a verified file (the agent's loadModel with its runtime); never throws. */
  load: (model: LoadedModel) => Promise<unknown>
  /** A published model was added, in state 'loading'. */
  added: (model: LoadedModel) => void
  /** A model's state changed (the agent publishes its status again). */
  changed: (model: LoadedModel) => void
  /**
   * A published version its source no longer selects, now that a newer one of the name is ready
   * (`published: "<name>"` and `"*"` serve the newest, or the newest `versions`): the agent stops
   * serving it and releases it once its jobs are answered. A restarted agent would not load it
   * either.
   */
  retired: (model: LoadedModel) => void
  log: (message: string) => void
  progress?: ProgressFactory
  /** Back-off between download attempts (tests shorten it). */
  backoff?: { minMs: number; maxMs: number }
}

export interface SourceProblem {
  /** What the problem is about, as logged: a model ("resnet v3"), or `edge` / `cacheDir` for the listing. */
  model: string
  /** The model's name and version, when the problem is one model's (the version when known). */
  name?: string
  version?: string
  reason: string
  /** A model `"*"` leaves out because it does not fit this device: by design, not a failure. */
  passedOver?: true
}

const label = (model: { name: string; version: string }) => `${model.name} v${model.version}`

/** The files (sha256s) a model may run: the one it loaded or will, and its version's own file behind a variant. */
const cacheFilesOf = (model: LoadedModel): string[] =>
  [model.remote?.sha256, model.remote?.variant?.fallback?.sha256, model.sha256].filter((sha): sha is string => sha !== undefined)

/** How often URL sources' failed downloads are tried again without an edge section (edge.pollSec's default). */
const URL_RETRY_SEC = 60

export class ModelProvisioner {
  readonly #options: ProvisionerOptions
  readonly #sources: PublishedSource[]
  readonly #stopping = new AbortController()
  #queue: Promise<void> = Promise.resolve()
  #timer: NodeJS.Timeout | undefined
  #refreshing: Promise<void> | undefined
  /** Why published sources cannot be served right now, by model (or "edge" for the listing). */
  #problems = new Map<string, SourceProblem>()
  /** What the last listing selected: the versions the sources want now. */
  #selected: readonly PublishedModel[] = []
  /** The last listing: whose files in the cache the sweep may delete (#enqueueSweep). */
  #listing: readonly PublishedModel[] = []
  /** Our models that failed for a reason that may pass. */
  readonly #retryable = new Set<LoadedModel>()
  /**
   * The ongoing conditions (a failing listing, a model not served) logged already, by key: said
   * once while one lasts, forgotten when it ends, so a new incident is said again.
   */
  readonly #said = new Set<string>()

  constructor(options: ProvisionerOptions) {
    this.#options = options
    this.#sources = options.config.models.filter(isPublishedSource)
  }

  /** Published sources that cannot be served now, and why (`depinfer-agent status` lists them). */
  get problems(): SourceProblem[] {
    return [...this.#problems.values()]
  }

  /**
   * Downloads and loads `models` (the URL sources), lists the published models and does the
   * same for those selected; resolves once all of them are ready or failed. With `poll`, lists
   * again every edge.pollSec from then on.
   */
  async start(models: readonly LoadedModel[], { poll }: { poll: boolean }): Promise<void> {
    for (const model of models) this.#enqueue(model)
    if (this.#sources.length > 0) await this.refresh()
    // With URL sources only there is nothing to list, but their downloads that failed for a
    // reason that may pass (a device that booted before its network was up) are tried again as
    // often: every edge.pollSec if there is an edge section, else every URL_RETRY_SEC.
    const urlSources = models.some((model) => model.remote?.fromEdge === false)
    const pollSec = this.#sources.length > 0 || urlSources ? (this.#options.config.edge?.pollSec ?? URL_RETRY_SEC) : 0
    if (poll && pollSec > 0 && !this.#stopping.signal.aborted) {
      this.#timer = setInterval(() => void this.refresh(), pollSec * 1000)
    }
    await this.idle()
  }

  /**
   * Lists the published models and queues the selected ones the device does not have yet, and
   * those of ours that failed for a reason that may have passed. Never throws.
   */
  refresh(): Promise<void> {
    // A slow edge must not pile listings up.
    this.#refreshing ??= this.#refresh().finally(() => (this.#refreshing = undefined))
    return this.#refreshing
  }

  async #refresh(): Promise<void> {
    const { config, models, added, changed } = this.#options
    // URL sources whose download failed for a reason that may have passed since.
    for (const model of models()) {
      if (model.remote?.fromEdge !== false || !this.#retryable.has(model)) continue
      this.#retryable.delete(model)
      model.state = 'loading'
      delete model.error
      changed(model)
      this.#enqueue(model)
    }
    const edge = config.edge
    if (!edge || this.#sources.length === 0) return
    let listing: PublishedModel[]
    let freeBytes: number
    // Which of the two failed is what `status` names: the edge, or the cache directory.
    let failing = 'edge'
    try {
      listing = await listPublishedModels(edge, {
        timeoutMs: config.download.stallTimeoutSec * 1000,
        signal: this.#stopping.signal,
        log: (message) => this.#sayOnce(message),
      })
      failing = 'cacheDir'
      await mkdir(config.cacheDir, { recursive: true })
      freeBytes = await freeDiskBytes(config.cacheDir)
    } catch (error) {
      if (this.#stopping.signal.aborted) return
      const message = messageOf(error)
      const reason = failing === 'cacheDir' && !message.includes(config.cacheDir) ? `cacheDir ${config.cacheDir}: ${message}` : message
      this.#problems = new Map([[failing, { model: failing, reason }]])
      this.#sayOnce(reason, 'listing')
      return
    }
    if (this.#forget('listing')) this.#options.log('listing published models works again')
    this.#listing = listing
    const fileOf = (model: PublishedModel) => fileToRun(edge, model, config.precision)
    const { selected, problems } = selectPublished(
      this.#sources,
      listing,
      { maxModelBytes: config.maxModelBytes, maxNamesPerOwner: config.maxNamesPerOwner, freeBytes, cachedBytes: (sha256) => cachedBytes(config.cacheDir, sha256) },
      fileOf,
    )
    this.#problems = new Map(problems.map((problem) => [problem.model, problem]))
    // Keyed by model: a reason that only changes its figures (the free bytes left) is not news.
    for (const { model, reason } of problems) this.#sayOnce(`not serving published ${model}: ${reason}`, `not-serving ${model}`)
    for (const key of this.#said) if (key.startsWith('not-serving ') && !this.#problems.has(key.slice('not-serving '.length))) this.#forget(key)

    for (const entry of selected) {
      const file = fileOf(entry)
      const existing = models().find((model) => model.name === entry.name && model.version === entry.version)
      if (existing) {
        // (The file it was trying: the one listed, or the version's own after a variant fell back.)
        // A model whose session lost its file (deleted from the cache: README says a missing one is
        // downloaded again; changed on disk) is downloaded and opened again, like a failed download.
        const fileLost = existing.state === 'failed' && existing.fileLost === true
        if ((this.#retryable.has(existing) || fileLost) && (existing.remote?.sha256 === file.sha256 || existing.remote?.sha256 === entry.sha256)) {
          this.#retryable.delete(existing)
          if (fileLost) {
            const lostSession = existing.session
            delete existing.session
            delete existing.fileLost
            void lostSession?.release().catch((error: unknown) => this.#options.log(`releasing ${label(existing)}: ${messageOf(error)}`))
          }
          existing.state = 'loading'
          delete existing.error
          changed(existing)
          this.#enqueue(existing)
        } else if (!existing.remote) {
          // The same file, published, needs no word (its sha256 is known once it has loaded).
          if (existing.sha256 !== undefined && existing.sha256 !== entry.sha256) this.#sayOnce(`published ${label(entry)} is not downloaded: this device serves ${label(existing)} from ${existing.path}`)
        } else if (existing.remote.sha256 !== file.sha256 && existing.remote.sha256 !== entry.sha256) {
          // A published version and its variants do not change; if the edge now lists another
          // file to run, the one being served stays.
          this.#sayOnce(`published ${label(entry)} is now listed with ${file.variant} file sha256 ${file.sha256}; still serving ${existing.remote.sha256}`)
        }
        continue
      }
      const model = remoteModel(config.cacheDir, entry, {
        url: file.url,
        sha256: file.sha256,
        size: file.size,
        headers: edgeHeaders(edge),
        fromEdge: true,
        ...(entry.inputs && entry.outputs && { inputs: entry.inputs, outputs: entry.outputs }),
        ...(file.variant !== 'fp32' && {
          variant: { kind: file.variant, of: entry.sha256, fallback: ownFile(fileToRun(edge, entry, 'fp32')) },
        }),
      })
      added(model)
      this.#enqueue(model)
    }
    this.#retireSuperseded(selected)
    this.#enqueueSweep()
  }

  /**
   * Retires the published versions served here that no source selects any more, once every
   * version selected of the same name is ready: the ones that replace it, not merely another
   * (with `versions: 2`, v3 stays until v5 is ready, not only while v4 is). `selected` is the
   * last listing's choice.
   */
  #retireSuperseded(selected: readonly PublishedModel[] = this.#selected): number {
    this.#selected = selected
    let retired = 0
    const models = this.#options.models()
    const wanted = (model: LoadedModel) => selected.some((entry) => entry.name === model.name && entry.version === model.version)
    const readyHere = (entry: PublishedModel) => models.some((m) => m.name === entry.name && m.version === entry.version && m.state === 'ready')
    for (const model of models) {
      if (!model.remote?.fromEdge || wanted(model)) continue
      const replacements = selected.filter((entry) => entry.name === model.name)
      if (replacements.length === 0 || !replacements.every(readyHere)) continue
      this.#retryable.delete(model)
      this.#options.log(`model ${label(model)}: superseded by a newer version; serving it no more`)
      this.#options.retired(model)
      retired++
    }
    return retired
  }

  /**
   * Deletes from the cache the files of published versions (own files and variants, as the last
   * listing has them) that no model served here runs, will run or falls back to: versions
   * superseded here, or while the agent was down, a variant that would not load, models the
   * config no longer names, and what their interrupted downloads left. Files the edge does not
   * list are never touched. Off with keepUnservedFiles. Queued behind downloads and loads, so it
   * never races one of this agent's own.
   */
  #enqueueSweep(): void {
    const { config, models, log } = this.#options
    if (config.keepUnservedFiles) return
    const listing = this.#listing
    this.#queue = this.#queue.then(async () => {
      const inUse = new Set(models().flatMap(cacheFilesOf))
      // Each listed file, with the versions it is (one file may be several versions, or a variant).
      const versionsOf = new Map<string, string[]>()
      for (const entry of listing) {
        for (const [sha256, what] of [[entry.sha256, label(entry)], ...entry.variants.map((v) => [v.sha256, `${label(entry)} ${v.kind}`])] as const) {
          const versions = versionsOf.get(sha256)
          if (versions) versions.push(what)
          else versionsOf.set(sha256, [what])
        }
      }
      for (const [sha256, versions] of versionsOf) {
        if (inUse.has(sha256) || cachedBytes(config.cacheDir, sha256) === 0) continue
        const what = `${sha256.slice(0, 12)}… (${versions.join(', ')})`
        try {
          const freed = await removeCachedFile(config.cacheDir, sha256)
          if (freed > 0) log(`deleted ${what} from the cache, not served here: ${(freed / 1e6).toFixed(1)} MB freed`)
        } catch (error) {
          // A read-only cache (models put there in advance) keeps its files: said once.
          this.#sayOnce(`${what} stays in the cache, not served here: ${messageOf(error)}`, `sweep ${sha256}`)
        }
      }
    })
  }

  /** Resolves once every queued download and load has finished. */
  async idle(): Promise<void> {
    let queue: Promise<void>
    do {
      queue = this.#queue
      await queue
    } while (queue !== this.#queue)
  }

  /** Stops listing, aborts the download under way (its .part stays for next time), waits for the queue. */
  async stop(): Promise<void> {
    clearInterval(this.#timer)
    this.#stopping.abort()
    await this.#refreshing
    await this.idle()
  }

  #enqueue(model: LoadedModel): void {
    // #provision handles its own failures; the catch only keeps one surprise from stalling the queue.
    this.#queue = this.#queue
      .then(() => this.#provision(model))
      .catch((error: unknown) => {
        model.state = 'failed'
        model.error = messageOf(error)
        this.#options.log(`model ${label(model)} failed: ${stackOf(error)}`)
        this.#options.changed(model)
      })
  }

  /** Downloads (or finds in the cache), verifies and loads one model. Never throws. */
  async #provision(model: LoadedModel): Promise<void> {
    const { config, load, changed, log, progress, backoff } = this.#options
    const remote = model.remote
    if (!remote || this.#stopping.signal.aborted) return
    try {
      const file = await fetchModelFile(
        { ...remote, label: label(model) },
        {
          cacheDir: config.cacheDir,
          attempts: config.download.attempts,
          stallTimeoutMs: config.download.stallTimeoutSec * 1000,
          backoff: backoff ?? DEFAULT_BACKOFF,
          log,
          signal: this.#stopping.signal,
          ...(progress && { progress }),
        },
      )
      if (!file.downloaded) log(`model ${label(model)}: using the cached ${file.path}`)
    } catch (error) {
      // Stopping: the model was never ready, and the status is about to say offline.
      if (this.#stopping.signal.aborted) return
      const retryable = retryableFailure(error)
      // A network failure is tried again with the same file at the next listing; a variant
      // file that is wrong (checksum, size) is not going to get better: serve the version's own.
      if (!retryable && this.#fallBack(model, messageOf(error))) return this.#provision(model)
      model.state = 'failed'
      model.error = cacheProblemCode(error) ? `cacheDir ${config.cacheDir}: ${messageOf(error)}` : messageOf(error)
      const said = `model ${label(model)} failed: ${model.error}`
      // Tried again at every listing: said once while the same failure lasts (a read-only
      // cache would otherwise be logged every edge.pollSec), and again if it changes in more
      // than its figures (how many MB came before the connection broke).
      if (retryable) {
        this.#retryable.add(model)
        this.#sayOnce(said, `failed ${label(model)}: ${model.error.replace(/\d+(\.\d+)?/g, '#')}`)
      } else log(said)
      changed(model)
      return
    }
    for (const key of this.#said) if (key.startsWith(`failed ${label(model)}: `)) this.#forget(key)
    await load(model)
    if (model.state === 'failed' && this.#fallBack(model, model.error ?? 'failed to load')) return this.#provision(model)
    if (model.state === 'failed') log(`model ${label(model)} failed to load: ${model.error}`)
    else log(`model ${label(model)} ready (${remote.variant ? `${remote.variant.kind} variant, ` : ''}sha256 ${model.sha256?.slice(0, 12)}…)`)
    changed(model)
    if (model.state === 'ready' && this.#retireSuperseded() > 0) this.#enqueueSweep()
  }

  /**
   * Switches a model whose variant (int8 file) cannot be used to the version's own file, once:
   * the device then serves the version as every fp32 device does rather than not at all.
   * Returns whether it did (false: not a variant, or already the version's own file).
   */
  #fallBack(model: LoadedModel, why: string): boolean {
    const fallback = model.remote?.variant?.fallback
    if (!model.remote || !fallback) return false
    this.#options.log(`model ${label(model)}: its ${model.remote.variant!.kind} variant cannot be used (${why}); running the version's own file instead`)
    const { variant: _variant, ...own } = model.remote
    model.remote = { ...own, ...fallback }
    model.path = cachedModelPath(this.#options.config.cacheDir, fallback.sha256)
    model.state = 'loading'
    delete model.error
    delete model.sha256
    this.#options.changed(model)
    return true
  }

  /** Logs `message` unless something was said under `key` (default: the message itself) and not forgotten since. */
  #sayOnce(message: string, key = message): void {
    if (this.#said.has(key)) return
    this.#said.add(key)
    this.#options.log(message)
  }

  /** The condition under `key` has ended; returns whether anything had been said about it. */
  #forget(key: string): boolean {
    return this.#said.delete(key)
  }
}

/**
 * Where the version's own file is and what it hashes to: all a fallback needs. Not the whole
 * FileToRun, whose `variant` ('fp32') would be spread over the model's variant on falling back.
 */
function ownFile({ url, sha256, size }: FileToRun): Pick<RemoteFile, 'url' | 'sha256' | 'size'> {
  return { url, sha256, size }
}

/**
 * Error codes of the cache's file system that a provider can fix without restarting the agent
 * (free space, remount read-write, fix permissions): tried again at the next listing, like a
 * network failure.
 */
const CACHE_PROBLEM_CODES = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM'])

/** The cache problem's code of `error` or of what caused it (a failed write of a download carries it as its cause). */
function cacheProblemCode(error: unknown): string | undefined {
  for (let cause = error, depth = 0; cause instanceof Error && depth < 10; cause = cause.cause, depth++) {
    const code = (cause as NodeJS.ErrnoException).code
    if (code !== undefined && CACHE_PROBLEM_CODES.has(code)) return code
  }
  return undefined
}

/**
 * Whether a failed download may succeed later with the same file: a network failure, or a cache
 * problem a provider can fix, among them a file that did not fit in the cache's free space (the
 * downloader does not retry that at once; the provider may free space meanwhile, or the disk
 * filled only for a moment).
 */
export function retryableFailure(error: unknown): boolean {
  return (error instanceof DownloadError && error.retryable) || error instanceof ModelTooLargeError || cacheProblemCode(error) !== undefined
}
