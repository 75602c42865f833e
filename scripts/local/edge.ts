/**
 * Runs the edge Worker locally in Miniflare (the real workerd runtime) from the same
 * wrangler.toml `wrangler deploy` uses: wrangler bundles it, wrangler's own converter turns the
 * config into Miniflare options, and only local values (broker URL, port) are overridden.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { rmSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Log, LogLevel, Miniflare } from 'miniflare'
import { isAddress, sha256Hex } from '@depinfer/shared'
import { buildContracts } from '../../contracts/scripts/build.js'
import { REPO_ROOT } from './paths.js'
import { edgeTempDir, ramStorageDir } from './edge-dirs.js'

const WRANGLER_TOML = join(REPO_ROOT, 'wrangler.toml')
const MIGRATIONS_DIR = join(REPO_ROOT, 'edge', 'migrations')
export const EDGE_BUNDLE_DIR = join(REPO_ROOT, '.depinfer', 'build', 'edge')

/** Bundles the Worker with wrangler (`wrangler deploy --dry-run`), as a deploy would. */
export async function buildEdge(outDir = EDGE_BUNDLE_DIR): Promise<string> {
  // The Worker imports the registry's ABI from contracts/generated/ (a no-op when up to date).
  await buildContracts()
  await new Promise<void>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [join(REPO_ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js'), 'deploy', '--dry-run', '--outdir', outDir, '--config', WRANGLER_TOML],
      { cwd: REPO_ROOT, env: { ...process.env, WRANGLER_SEND_METRICS: 'false' }, stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let output = ''
    child.stdout.on('data', (chunk) => (output += chunk))
    child.stderr.on('data', (chunk) => (output += chunk))
    child.once('error', reject)
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`wrangler build failed (${code}):\n${output}`))))
  })
  return outDir
}

export interface LocalEdge {
  url: string
  miniflare: Miniflare
  /**
   * Creates an API key (stored hashed in D1) and returns it; `payer` is the Escrow account its
   * priced jobs are charged to (none: the key only runs free jobs).
   */
  createApiKey(label: string, key?: string, payer?: string): Promise<string>
  /** Fires the scheduled (cron) handler once, as Cloudflare would, and waits for it; `scheduledTime` is the tick's time (its `controller.scheduledTime`), now by default. */
  runScheduled(scheduledTime?: Date): Promise<void>
  close(): Promise<void>
}

export interface LocalEdgeOptions {
  /** How the Gateway reaches the broker (mqtt:// or ws://). */
  brokerUrl: string
  host?: string
  /** 0 picks a free port. */
  port?: number
  bundleDir?: string
  /** Overrides of wrangler.toml [vars]. */
  vars?: Record<string, string>
  /** Opens the V8 inspector on this port (profiling, debugging). */
  inspectorPort?: number
}

/**
 * wrangler's API, without the SIGINT/SIGTERM handlers its module installs when loaded: they call
 * `process.exit()` at once. With them, Ctrl-C on `npm start` never ran its shutdown (Miniflare's
 * temp dirs stayed behind in /tmp), and a SIGTERM left the agent and anvil running as orphans.
 */
async function wranglerApi(): Promise<typeof import('wrangler')> {
  const signals = ['SIGINT', 'SIGTERM'] as const
  const before = new Map(signals.map((signal) => [signal, new Set(process.listeners(signal))]))
  const wrangler = await import('wrangler')
  for (const signal of signals) {
    for (const listener of process.listeners(signal)) if (!before.get(signal)!.has(listener)) process.removeListener(signal, listener)
  }
  return wrangler
}

export async function startEdge(options: LocalEdgeOptions): Promise<LocalEdge> {
  const wrangler = await wranglerApi()
  const { workerOptions } = wrangler.unstable_getMiniflareWorkerOptions(WRANGLER_TOML)
  const bundleDir = options.bundleDir ?? EDGE_BUNDLE_DIR
  const tempDir = edgeTempDir()
  const storageDir = ramStorageDir()
  const removeDirs = () => {
    for (const dir of [tempDir, storageDir]) if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
    process.off('exit', removeDirs)
  }
  // Also when the process ends before close() gets there: on Ctrl-C the whole process group is
  // signalled, the children die at once, and `npm start`'s shutdown can end with an empty event
  // loop while still waiting on them.
  process.on('exit', removeDirs)
  let started: Miniflare | undefined
  let url: string
  let db: D1
  try {
    started = inTempDir(tempDir, () =>
      new Miniflare({
        ...workerOptions,
        name: 'depinfer-edge',
        modules: true,
        scriptPath: join(bundleDir, 'index.js'),
        modulesRoot: bundleDir,
        bindings: {
          ...workerOptions.bindings,
          BROKER_URL: options.brokerUrl,
          ...(process.env.DEPINFER_SPOT_CHECK_RATE !== undefined && { SPOT_CHECK_RATE: process.env.DEPINFER_SPOT_CHECK_RATE }),
          ...options.vars,
        },
        // Miniflare's own socket serves its dev entry worker, a JS proxy in front of ours (it adds
        // `request.cf`, pretty error pages, live reload); nothing of it exists on Cloudflare and
        // nothing here needs it. Clients use a socket straight into the Worker instead: in paired
        // runs the proxy cost workerd 0.2–0.7 ms of CPU per inference and 0.4–1.3 ms of c=1 latency.
        host: '127.0.0.1',
        port: 0,
        unsafeDirectSockets: [{ host: options.host ?? '127.0.0.1', port: options.port ?? 0 }],
        ...(storageDir !== undefined && { durableObjectsPersist: join(storageDir, 'do'), d1Persist: join(storageDir, 'd1') }),
        log: new Log(LogLevel.WARN),
        // No internet here: don't try to fetch Cloudflare's `request.cf` data (nothing reads it).
        cf: false,
        ...(options.inspectorPort !== undefined && { inspectorPort: options.inspectorPort }),
      } as ConstructorParameters<typeof Miniflare>[0]),
    )
    await started.ready
    url = (await started.unsafeGetDirectURL()).toString().replace(/\/$/, '')
    db = await started.getD1Database('DB')
    await applyMigrations(db, wrangler.unstable_splitSqlQuery)
  } catch (error) {
    await started?.dispose().catch(() => {})
    removeDirs()
    throw error
  }
  const miniflare = started

  return {
    url,
    miniflare,
    async createApiKey(label, key = `dpi_${randomBytes(24).toString('base64url')}`, payer) {
      if (payer !== undefined && !isAddress(payer)) throw new Error(`payer is not an address: ${payer}`)
      await db
        .prepare('INSERT OR REPLACE INTO api_keys (key_hash, label, created_at, payer_address) VALUES (?, ?, ?, ?)')
        .bind(sha256Hex(key), label, Date.now(), payer?.toLowerCase() ?? null)
        .run()
      return key
    },
    async runScheduled(scheduledTime = new Date()) {
      const worker = await miniflare.getWorker()
      const result = await worker.scheduled({ cron: '* * * * *', scheduledTime })
      if (result.outcome !== 'ok') throw new Error(`scheduled handler ended with outcome ${result.outcome}`)
    },
    async close() {
      try {
        await miniflare.dispose()
      } finally {
        // Also when workerd is gone already (Ctrl-C signals the whole process group).
        removeDirs()
      }
    },
  }
}

type D1 = Awaited<ReturnType<Miniflare['getD1Database']>>

/**
 * Runs `construct` with the OS temp dir set to `dir`: Miniflare makes its own temp dir (R2's
 * files, caches) inside, when constructed. Its dispose() removes that dir fire-and-forget, after
 * dropping its exit hook, so a process exiting right after close() (every `npm start` that
 * failed to start, e.g. on a port in use) left a `miniflare-*` dir in /tmp; ours is removed
 * synchronously with everything in it.
 */
function inTempDir<T>(dir: string, construct: () => T): T {
  const saved = process.env.TMPDIR
  process.env.TMPDIR = dir
  try {
    return construct()
  } finally {
    if (saved === undefined) delete process.env.TMPDIR
    else process.env.TMPDIR = saved
  }
}

/** Applies edge/migrations/*.sql in order, recorded in wrangler's own `d1_migrations` table. */
/** Applies edge/migrations not yet applied (tracked in d1_migrations, as wrangler does). */
export async function applyMigrations(db: D1, splitSqlQuery: (sql: string) => string[]): Promise<void> {
  await db
    .prepare(
      'CREATE TABLE IF NOT EXISTS d1_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)',
    )
    .run()
  const applied = new Set(
    (await db.prepare('SELECT name FROM d1_migrations').all<{ name: string }>()).results.map((r) => r.name),
  )
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => f.endsWith('.sql')).sort()
  for (const file of files.filter((f) => !applied.has(f))) {
    const statements = splitSqlQuery(await readFile(join(MIGRATIONS_DIR, file), 'utf8'))
    await db.batch([
      ...statements.map((sql) => db.prepare(sql)),
      db.prepare('INSERT INTO d1_migrations (name) VALUES (?)').bind(file),
    ])
  }
}
