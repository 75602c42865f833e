#!/usr/bin/env node
// Runs the TypeScript quantizer CLI through tsx's loader, registered relative to this file so the
// command works from any directory.
import { register } from 'tsx/esm/api'

register()
const { main } = await import('../src/quantize/cli.ts')
process.exitCode = await main(process.argv.slice(2))
