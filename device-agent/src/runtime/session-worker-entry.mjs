// A worker thread does not inherit the module hooks of the thread that started it: register
// tsx's loader here, then run the TypeScript worker (see worker-session.ts).
import { register } from 'tsx/esm/api'

register()
await import('./session-worker.ts')
