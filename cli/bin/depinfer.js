#!/usr/bin/env node
// Runs the TypeScript CLI through tsx's loader, registered relative to this file so the command
// works from any directory.
import { register } from 'tsx/esm/api'

register()
await import('../src/main.ts')
