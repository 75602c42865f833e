/**
 * `npm start`: the whole depinfer network on this machine — embedded MQTT broker (aedes), the
 * edge Worker in Miniflare, a local EVM (anvil) with the contracts deployed, and one device agent
 * serving the bundled demo models. The API key's payer (an anvil dev account) has 1 ETH in the
 * Escrow, so priced models work too. The edge routes only to staked devices: a provider (another
 * anvil dev account) stakes in the ProviderRegistry and registers the agent's device before the
 * agent starts. The demo models are published (at price 0) under the printed key before anything is
 * printed, so nobody else can claim their names and charge for the demo. Prints the URL, the API
 * key and a curl to try. Ctrl-C stops everything.
 *
 * Environment: DEPINFER_PORT (edge, default 8787), DEPINFER_MQTT_PORT (1883),
 * DEPINFER_MQTT_WS_PORT (9001), DEPINFER_API_KEY (else one is generated), DEPINFER_CORS_ORIGINS,
 * DEPINFER_SPOT_CHECK_RATE, DEPINFER_PROVIDER_FEE_WEI (0).
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import type { LocalBroker } from './local/broker.js'
import type { LocalNetwork } from './local/network.js'
import { REPO_ROOT } from './local/paths.js'
import { waitFor } from './local/wait-for.js'
import { stackOf } from '../shared/src/errors.js'
import { WEI_PATTERN } from '../edge/src/payments/wei.js'

/** A TCP port from the environment; a typo stops here with one line, not deep inside the broker or workerd. */
function portFromEnv(name: string, fallback: number): number {
  const value = process.env[name]
  if (value === undefined || value === '') return fallback
  const port = Number(value)
  if (!/^[0-9]+$/.test(value) || port < 1 || port > 65_535) {
    console.error(`depinfer: ${name} must be a TCP port from 1 to 65535, got ${JSON.stringify(value)}`)
    process.exit(2)
  }
  return port
}

/**
 * DEPINFER_SPOT_CHECK_RATE reaches the edge as SPOT_CHECK_RATE, which keeps its default with a
 * warning at the first job when the value is out of range: checked here, so a typo stops the
 * start instead.
 */
function checkSpotCheckRate(): void {
  const value = process.env.DEPINFER_SPOT_CHECK_RATE
  if (value === undefined || value === '') return
  const rate = Number(value)
  if (value.trim() === '' || !Number.isFinite(rate) || rate < 0 || rate > 1) {
    console.error(`depinfer: DEPINFER_SPOT_CHECK_RATE must be a number from 0 to 1, got ${JSON.stringify(value)}`)
    process.exit(2)
  }
}

/**
 * DEPINFER_PROVIDER_FEE_WEI: what each job pays the provider of the device that ran it (the
 * edge's PROVIDER_FEE_WEI; 0 without it). Checked here: the edge would refuse a bad one only at
 * the first job, with 503s.
 */
function providerFeeFromEnv(): string | undefined {
  const value = process.env.DEPINFER_PROVIDER_FEE_WEI
  if (value === undefined || value === '') return undefined
  if (!WEI_PATTERN.test(value) || BigInt(value) >= 2n ** 256n) {
    console.error(`depinfer: DEPINFER_PROVIDER_FEE_WEI must be an amount of wei (a decimal integer below 2^256, no leading zeros), got ${JSON.stringify(value.slice(0, 100))}`)
    process.exit(2)
  }
  return value
}

/**
 * Each port free on 127.0.0.1, or one line naming the variable that moves it: a taken edge port
 * otherwise surfaced ~15 s in (after the broker and the chain), as a workerd stack trace.
 */
async function checkPortsFree(ports: [variable: string, port: number][]): Promise<void> {
  for (const [i, [variable, port]] of ports.entries()) {
    const same = ports.slice(0, i).find(([, other]) => other === port)
    if (same) {
      console.error(`depinfer: ${variable} and ${same[0]} are both ${port}: each needs a port of its own`)
      process.exit(2)
    }
    const problem = await new Promise<string | undefined>((resolve) => {
      const probe = createServer()
      probe.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'EADDRINUSE' ? 'is in use (another npm start?)' : error.message))
      probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(undefined)))
    })
    if (problem !== undefined) {
      console.error(`depinfer: port ${port} ${problem}: stop what holds it, or set ${variable} to another port`)
      process.exit(1)
    }
  }
}

const port = portFromEnv('DEPINFER_PORT', 8787)
const mqttPort = portFromEnv('DEPINFER_MQTT_PORT', 1883)
const mqttWsPort = portFromEnv('DEPINFER_MQTT_WS_PORT', 9001)
checkSpotCheckRate()
const providerFeeWei = providerFeeFromEnv()
await checkPortsFree([
  ['DEPINFER_PORT', port],
  ['DEPINFER_MQTT_PORT', mqttPort],
  ['DEPINFER_MQTT_WS_PORT', mqttWsPort],
])

async function main(): Promise<void> {
  // Loaded once the settings above are checked: a refusal comes at once, not after Miniflare,
  // the broker, viem and the agent's code have loaded (3 s, measured).
  const [{ formatEther, parseEther }, { privateKeyToAccount }, { BUNDLED_MODEL_VERSION, BUNDLED_MODELS }, { superviseAgent }, { startLocalBroker }, chainKeys, { exampleInferRequest }, { startLocalNetwork }, { MAX_STAR_MODELS }] =
    await Promise.all([
      import('viem'),
      import('viem/accounts'),
      import('../device-agent/src/models/bundled.js'),
      import('./local/agent-supervisor.js'),
      import('./local/broker.js'),
      import('./local/chain.js'),
      import('./local/example-input.js'),
      import('./local/network.js'),
      import('../device-agent/src/models/published.js'),
    ])
  const payer = privateKeyToAccount(chainKeys.ANVIL_PAYER_PRIVATE_KEY).address
  const provider = privateKeyToAccount(chainKeys.ANVIL_PROVIDER_PRIVATE_KEY).address
  /** The local operator (anvil dev account #0, which deploys the contracts): the demo models' payout address. */
  const operator = privateKeyToAccount(chainKeys.ANVIL_DEV_PRIVATE_KEY).address
  console.log('depinfer: starting broker, local chain, edge (Miniflare) and one device agent…')
  let broker: LocalBroker | undefined
  let network: LocalNetwork | undefined
  let stopping = false
  const stop = async (code: number) => {
    if (stopping) return
    stopping = true
    console.log('\ndepinfer: stopping…')
    await network?.close()
    await broker?.close()
    process.exit(code)
  }
  process.on('SIGINT', () => void stop(0))
  process.on('SIGTERM', () => void stop(0))

  try {
    broker = await startLocalBroker({ tcpPort: mqttPort, wsPort: mqttWsPort })
    network = await startLocalNetwork({
      port,
      broker,
      ...(process.env.DEPINFER_API_KEY && { apiKey: process.env.DEPINFER_API_KEY }),
      payer,
      // The bundled models from the agent's install, and whatever is published on this edge
      // (downloaded from it), whatever DEPINFER_MODELS the caller's shell has.
      // Started below, under a supervisor.
      agents: [],
      chain: true,
      staking: true,
      batchEveryMs: 5_000,
      publishBundledModels: { payoutAddress: operator },
      edgeVars: {
        // The local D1 lives in RAM (/dev/shm): settled batches move to R2 (on disk) after an
        // hour instead of 30 days, or a long-running local network grows ~1.2 KB of RAM a job.
        ATTESTATION_RETENTION_DAYS: String(1 / 24),
        ...(process.env.DEPINFER_CORS_ORIGINS && { CORS_ALLOW_ORIGINS: process.env.DEPINFER_CORS_ORIGINS }),
        ...(providerFeeWei !== undefined && { PROVIDER_FEE_WEI: providerFeeWei }),
      },
    })
    const { edge, apiKey } = network
    const running = network
    await superviseAgent({
      start: () =>
        running.startAgent({
          deviceId: 'local-device-1',
          echo: true,
          models: [...Object.keys(BUNDLED_MODELS), 'published:*@all'].join(','),
          servePublished: true,
          // Every publisher here is the user: all of the names one key publishes (up to "*"'s 64
          // in all), not the 8 a device serving strangers' models takes of each.
          env: { DEPINFER_MAX_NAMES_PER_OWNER: String(MAX_STAR_MODELS) },
        }),
      stopping: () => stopping,
      log: (message) => console.error(`depinfer: ${message}`),
    }).started
    const chain = network.chain!
    await chain.deposit(chainKeys.ANVIL_PAYER_PRIVATE_KEY, parseEther('1'))
    // Every model the banner lists is ready when it is printed (ppocr-rec loads last).
    for (const model of Object.keys(BUNDLED_MODELS)) {
      await waitFor(`the device agent to serve ${model}`, async () => {
        const response = await fetch(`${edge.url}/v2/models/${model}/ready`, { headers: { Authorization: `Bearer ${apiKey}` } })
        return response.status === 200 ? true : undefined
      }, 60_000)
    }

    const examplePath = join(REPO_ROOT, '.depinfer', 'example-ppocr-cls.json')
    await mkdir(join(REPO_ROOT, '.depinfer'), { recursive: true })
    await writeFile(examplePath, JSON.stringify(exampleInferRequest()))

    console.log(`
depinfer is running.

  Edge (KServe v2):  ${edge.url}
  API key:           ${apiKey}
  MQTT broker:       ${broker.tcpUrl}  (WebSocket ${broker.wsUrl})
  Local chain:       ${chain.rpcUrl} (chain id ${chain.chainId}), AttestationRegistry ${chain.registryAddress}, Escrow ${chain.escrowAddress}
  Payer of the key:  ${payer} (1 ETH deposited; priced models are charged to it)
  Provider:          ${provider} (staked ${formatEther(chain.minStake)} ETH in ProviderRegistry ${chain.providerRegistryAddress};
                     local-device-1 is registered to it: the edge routes only to staked devices)
  Provider fee:      ${providerFeeWei ?? '0'} wei per job${providerFeeWei === undefined || providerFeeWei === '0' ? ' (DEPINFER_PROVIDER_FEE_WEI sets one)' : ', on every job, the demo models\' too'}
  Models:            ${Object.keys(BUNDLED_MODELS).join(', ')} (version ${BUNDLED_MODEL_VERSION}) on device local-device-1, published
                     at price 0 under this key (payout ${operator}): other keys cannot publish these names

Try it:

  curl -s ${edge.url}/v2/models/ppocr-cls -H 'Authorization: Bearer ${apiKey}'

  curl -s ${edge.url}/v2/models/ppocr-cls/infer \\
    -H 'Authorization: Bearer ${apiKey}' -H 'Content-Type: application/json' \\
    -d @${examplePath}

Every answer carries its device's signed attestation (parameters.attestation_*); every 5 s the
batcher posts pending ones on-chain as a Merkle root. Proof of a job (job_id from the answer):

  curl -s ${edge.url}/api/jobs/<job_id>/attestation -H 'Authorization: Bearer ${apiKey}'
  curl -s ${edge.url}/api/batches -H 'Authorization: Bearer ${apiKey}'

Priced models (published with a price) are paid from the Escrow and settled with each batch:

  curl -s ${edge.url}/api/account -H 'Authorization: Bearer ${apiKey}'
  curl -s ${edge.url}/api/payouts/<earner address> -H 'Authorization: Bearer ${apiKey}'

Press Ctrl-C to stop.
`)
  } catch (error) {
    console.error(`depinfer: failed to start: ${stackOf(error)}`)
    await stop(1)
  }
}

void main()
