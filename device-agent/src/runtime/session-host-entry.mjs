// A worker thread or a child process does not inherit the module hooks of the thread that started
// it: register tsx's loader here, then run the TypeScript host (see session-host.ts).
import { register } from 'tsx/esm/api'

register()
await import('./session-host-main.ts')
