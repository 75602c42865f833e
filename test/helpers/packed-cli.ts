/**
 * The depinfer CLI as its tarball ships it (scripts/pack.ts: bundled, with viem as a dependency),
 * built once per test run by the global setup. The end-to-end suites that run many chain commands
 * run this one: each command through the repository's bin (tsx's loader resolving viem's modules
 * one by one) took ~1.5 s and 1.9 s of CPU, bundled ~0.6 s and 0.5 s. The repository's bin itself
 * is what cli/src/main.test.ts runs; test/e2e/packages.test.ts installs the tarball.
 */
import { join } from 'node:path'
import { REPO_ROOT } from '../../scripts/local/paths.js'

/** Where the global setup builds it: inside the repository, so viem resolves from its node_modules. */
export const PACKED_CLI_DIR = join(REPO_ROOT, '.depinfer', 'test-build')
export const PACKED_CLI = join(PACKED_CLI_DIR, 'cli', 'bin', 'depinfer.mjs')
