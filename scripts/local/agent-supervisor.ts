/**
 * Restarts `npm start`'s device agent when it exits on its own (a crash: e.g. onnxruntime
 * aborting the process), and says so. Without it the local network went on with no device, every
 * request answered 503, and nothing in the log but onnxruntime's last words.
 */
import { messageOf } from '@depinfer/shared'
import type { AgentProcess } from './agent-process.js'

export interface AgentSupervisorOptions {
  /** Starts (and restarts) the agent. */
  start: () => AgentProcess
  /** True once the whole network is stopping: an agent exiting then is expected. */
  stopping: () => boolean
  log: (message: string) => void
  restartDelayMs?: number
  /** Exits in a row, each within `quickExitMs` of its start, after which it gives up. */
  maxQuickExits?: number
  quickExitMs?: number
}

/** Starts the agent and keeps it running; returns the first process. */
export function superviseAgent(options: AgentSupervisorOptions): AgentProcess {
  const { restartDelayMs = 1_000, maxQuickExits = 3, quickExitMs = 60_000 } = options
  let quickExits = 0
  const watch = (agent: AgentProcess, restarted: boolean) => {
    agent.started.then(
      () => {
        const startedAt = Date.now()
        agent.child.once('exit', (code, signal) => {
          if (options.stopping()) return
          quickExits = Date.now() - startedAt < quickExitMs ? quickExits + 1 : 0
          const how = signal ? `signal ${signal}` : `exit code ${code}`
          if (quickExits >= maxQuickExits) {
            options.log(`the device agent ${agent.deviceId} exited (${how}), ${quickExits} times in a row within ${quickExitMs / 1000} s of its start: not restarting it again (its output is above)`)
            return
          }
          options.log(`the device agent ${agent.deviceId} exited (${how}); restarting it`)
          setTimeout(() => {
            if (!options.stopping()) watch(options.start(), true)
          }, restartDelayMs)
        })
      },
      // Not started (its registration failed): the first one's caller sees that through
      // `started`; a restart's is said here.
      (error: unknown) => {
        if (restarted) options.log(`the device agent ${agent.deviceId} could not be restarted: ${messageOf(error)}`)
      },
    )
  }
  const first = options.start()
  watch(first, false)
  return first
}
