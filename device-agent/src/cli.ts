/**
 * `depinfer-agent` command line.
 *
 *   depinfer-agent init [--config agent.json]    create the device's signing key (keyPath, mode 0600)
 *   depinfer-agent start [--config agent.json]   serve models until SIGINT/SIGTERM
 *   depinfer-agent status [--config agent.json]  load models (downloading missing ones) and print the status it would advertise
 */
import { parseArgs } from 'node:util'
import { messageOf } from '@depinfer/shared'
import { ConfigError, loadConfig } from './config.js'
import { startAgent } from './agent.js'
import { brokerWarnings } from './broker/warnings.js'
import { deviceStatus, identityOf } from './device-status.js'
import { DeviceKeyError, initDeviceKey, loadDeviceKey } from './keys/device-key.js'
import { logLine } from './log-line.js'
import { loggedProgress, terminalProgress, type ProgressFactory } from './models/progress.js'
import { ModelProvisioner } from './models/provision.js'
import { OrtRuntime } from './runtime/execution.js'
import { tuneGarbageCollection } from './runtime/gc-tuning.js'
import { loadModel, modelsFromConfig } from './runtime/loaded-model.js'
import { AGENT_VERSION, ORT_VERSION } from './version.js'

/** Download progress: a bar redrawn on a terminal, log lines every few seconds in a service's log. */
const progressFor = (log: (message: string) => void): ProgressFactory =>
  process.stderr.isTTY ? terminalProgress(process.stderr) : loggedProgress(log)

const USAGE = 'usage: depinfer-agent <init|start|status> [--config <file.json>] | --version  (init: create the device key; start: serve; status: load the models and print what would be advertised, exit 1 if any failed)'

const COMMANDS = ['init', 'start', 'status']

async function main(argv: string[]): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'v' } },
    })
  } catch (error) {
    // An unknown flag or a --config without its file: one line and the usage, not a stack.
    console.error(`${messageOf(error)}\n${USAGE}`)
    return 2
  }
  const { positionals, values } = parsed
  const command = positionals[0]
  if (values.version) {
    // What a provider reports with a problem, and checks after an upgrade: without a config or a key.
    console.log(`depinfer-agent ${AGENT_VERSION} (onnxruntime-node ${ORT_VERSION}, node ${process.versions.node})`)
    return 0
  }
  if (values.help || !command) {
    console.log(USAGE)
    return values.help ? 0 : 2
  }
  if (!COMMANDS.includes(command)) {
    console.error(`unknown command ${JSON.stringify(command)}\n${USAGE}`)
    return 2
  }
  const config = loadConfig(values.config ?? process.env.DEPINFER_AGENT_CONFIG, process.env)
  const line = logLine(config.deviceId, config.logTimestamps, process.env)
  const log = (message: string) => console.log(line(message))
  if (command === 'init') {
    const key = initDeviceKey(config.keyPath)
    console.log(`created device key ${config.keyPath} (mode 0600)\naddress ${key.address}`)
    return 0
  }
  if (command === 'start') {
    tuneGarbageCollection()
    const agent = await startAgent(config, log, { progress: progressFor(log) })
    await new Promise<void>((resolve) => {
      let stopping = false
      // Kept for the whole stop, not `once`: a signal that arrives while a run holds this thread
      // is handled when the run returns, after the first one, and with no listener left Node
      // would drop it and go on draining. A second signal ends the process there and then.
      const onSignal = (signal: NodeJS.Signals) => {
        if (stopping) {
          log(`${signal} again: exiting without answering the jobs still held`)
          process.exit(128 + (signal === 'SIGINT' ? 2 : 15))
        }
        stopping = true
        resolve()
      }
      process.on('SIGINT', onSignal)
      process.on('SIGTERM', onSignal)
    })
    log('stopping')
    await agent.stop()
    return 0
  }
  if (command === 'status') {
    // Loads every configured model (downloading those not in the cache yet) and prints what
    // `start` would advertise, without a broker. Its log (execution provider fallbacks, download
    // progress) goes to stderr, so stdout stays one JSON document.
    const errorLog = (message: string) => console.error(line(message))
    // Checked here too (a bad file throws ConfigError: exit 1), so a health check catches it before `start`.
    for (const warning of brokerWarnings(config.broker, config.deviceId)) errorLog(`WARNING: ${warning}`)
    const runtime = new OrtRuntime(config.ort, errorLog)
    const settings = { runtime, maxBatch: config.batching.maxBatch, log: errorLog }
    const models = modelsFromConfig(config)
    const provisioner = new ModelProvisioner({
      // A check deletes nothing from the cache: a running agent sharing cacheDir (the default one)
      // may serve versions this config does not select, and would lose their files.
      config: { ...config, keepUnservedFiles: true },
      models: () => models,
      load: (model) => loadModel(model, settings),
      added: (model) => models.push(model),
      changed: () => {},
      retired: (model) => {
        const index = models.indexOf(model)
        if (index >= 0) models.splice(index, 1)
        void model.session?.release().catch((error: unknown) => errorLog(`releasing ${model.name} v${model.version}: ${messageOf(error)}`))
      },
      log: errorLog,
      progress: progressFor(errorLog),
    })
    await Promise.all([
      ...models.filter((model) => !model.remote).map((model) => loadModel(model, settings)),
      provisioner.start(models.filter((model) => model.remote), { poll: false }),
    ])
    // Without its key the device would be advertised but never routed to: not a working device.
    const key = await loadDeviceKey(config.keyPath).catch((error: unknown) => {
      errorLog(`${messageOf(error)}: the edge routes nothing to a device without its key`)
      return undefined
    })
    const failed = [
      ...models.filter((m) => m.state === 'failed').map(({ name, version, error }) => ({ name, version, error })),
      // The same shape as a loaded model's failure: name, version where known, error.
      ...provisioner.problems
        .filter((problem) => !problem.passedOver)
        .map(({ model, name, version, reason }) => ({ name: name ?? model, ...(version !== undefined && { version }), error: reason })),
    ]
    // Models "*" leaves out because they do not fit: listed, but what "*" means, not a failure.
    const passedOver = provisioner.problems
      .filter((problem) => problem.passedOver)
      .map(({ model, name, version, reason }) => ({ name: name ?? model, ...(version !== undefined && { version }), reason }))
    const identity = key && identityOf(key, config.deviceId)
    // Without `online`: this command never connects, and `"online": true` read as "on the network".
    const { online: _notConnected, ...advertised } = deviceStatus(config.deviceId, models, true, identity, runtime.status())
    console.log(JSON.stringify({ ...advertised, failed, passedOver }, null, 2))
    await Promise.all(models.map((model) => model.session?.release()))
    // Scripts and health checks can tell a device that would serve everything it is configured for.
    return failed.length === 0 && key ? 0 : 1
  }
  throw new Error(`command ${command} has no handler`)
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(error instanceof ConfigError || error instanceof DeviceKeyError ? error.message : error)
    process.exit(1)
  },
)
