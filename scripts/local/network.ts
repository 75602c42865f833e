/**
 * The whole local network in one call: embedded broker, edge in Miniflare, device agents, and
 * optionally the local chain with the contracts deployed (and, with `staking`, the edge routing
 * only to devices staked in its ProviderRegistry).
 * Used by `npm start`, the end-to-end tests and the benchmarks, so all three run the same parts.
 */
import { readFile } from 'node:fs/promises'
import { sha256Hex, messageOf } from '@depinfer/shared'
import { BUNDLED_MODEL_VERSION, BUNDLED_MODELS, bundledModelPath, type BundledModelName } from '../../device-agent/src/models/bundled.js'
import { spawnAgent, type AgentProcess, type SpawnAgentOptions } from './agent-process.js'
import { startLocalBroker, type LocalBroker } from './broker.js'
import { startLocalChain, type LocalChain } from './chain.js'
import { buildEdge, startEdge, type LocalEdge } from './edge.js'

export interface LocalAgentOptions extends Omit<SpawnAgentOptions, 'brokerUrl'> {
  /**
   * On a `staking` network: stake and register this device under the local provider before the
   * agent starts (default true). false: it runs unregistered, so the edge must not route to it.
   */
  stake?: boolean
  /**
   * Also serve what is published on this network's edge (`published:` sources in `models`): the
   * agent lists and downloads with the network's API key, every 5 s.
   */
  servePublished?: boolean
}

export interface LocalNetwork {
  broker: LocalBroker
  chain: LocalChain | undefined
  edge: LocalEdge
  agents: AgentProcess[]
  apiKey: string
  /**
   * Starts an agent; on a `staking` network its device is registered first, so the process is
   * spawned once that is done (`started` says when, or why not).
   */
  startAgent(options: LocalAgentOptions): AgentProcess
  close(): Promise<void>
}

export interface LocalNetworkOptions {
  host?: string
  port?: number
  apiKey?: string
  /** The Escrow payer of the network's API key (`apiKey`); default none (free jobs only). */
  payer?: string
  /** Agents to start, by device id; default one agent serving every bundled model. */
  agents?: LocalAgentOptions[]
  /** Skip the wrangler bundle step when a fresh bundle exists (tests build once). */
  build?: boolean
  /** Use an already running broker (e.g. Mosquitto) instead of the embedded one. */
  broker?: LocalBroker
  edgeVars?: Record<string, string>
  /** Opens workerd's V8 inspector on this port (profiles, heap snapshots of the edge). */
  edgeInspectorPort?: number
  /** Connect the edge to the broker over WebSocket instead of TCP. */
  edgeOverWebSocket?: boolean
  /** Also start a local EVM (anvil) with the contracts deployed, and point the edge at it. */
  chain?: boolean
  /**
   * Route only to staked devices (needs `chain`): the edge gets PROVIDER_REGISTRY_ADDRESS, and
   * each agent started is staked and registered under ANVIL_PROVIDER_PRIVATE_KEY's account
   * before it runs (unless its `stake` is false). Off by default: suites that bring their own
   * unregistered devices (the attestation suite's rogue devices) or expect provider fees at the
   * device's address (payments) run without the gate.
   */
  staking?: boolean
  /**
   * Also fire the edge's scheduled batcher every this many ms (Cloudflare's cron runs at most
   * once a minute; locally a few seconds shows batches land). Off by default: tests fire it.
   */
  batchEveryMs?: number
  /**
   * Publish the agent's bundled demo models (ppocr-*) under the network's API key, free, with
   * this payout address, before the network is handed over (`npm start` does). Their names are
   * then owned: otherwise any key could publish `ppocr-det` first with a price and its own payout
   * address, and the demo devices' jobs would be charged for it. Off by default: some suites
   * publish these names themselves (the payments suite prices ppocr-cls).
   */
  publishBundledModels?: { payoutAddress: string }
}

/**
 * Publishes every bundled model on the edge as `apiKey`: price 0, `payoutAddress`. Each must come
 * out as the version the bundled agent advertises (BUNDLED_MODEL_VERSION) with the very file it
 * runs, or the edge would pin the name's jobs to a file or version no demo device serves.
 */
async function publishBundledModels(edgeUrl: string, apiKey: string, payoutAddress: string): Promise<void> {
  // One at a time: ~16 MB in all for one workerd isolate to read, and about a second locally
  // either way (the agents start meanwhile).
  for (const name of Object.keys(BUNDLED_MODELS) as BundledModelName[]) {
    const bytes = await readFile(bundledModelPath(name))
    const query = new URLSearchParams({
      name,
      price_wei: '0',
      payout_address: payoutAddress,
      description: `depinfer demo model bundled with the device agent (${BUNDLED_MODELS[name]})`,
    })
    const response = await fetch(`${edgeUrl}/api/models?${query}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/octet-stream' },
      body: new Uint8Array(bytes),
    })
    const text = await response.text()
    if (response.status !== 201 && response.status !== 200) throw new Error(`publishing bundled model ${name} failed (${response.status}): ${text}`)
    const published = JSON.parse(text) as { version?: unknown; sha256?: unknown }
    const sha256 = sha256Hex(bytes)
    if (published.version !== BUNDLED_MODEL_VERSION || published.sha256 !== sha256) {
      throw new Error(
        `bundled model ${name} was published as version ${String(published.version)} (sha256 ${String(published.sha256)}), ` +
          `but the agent serves version ${BUNDLED_MODEL_VERSION} (sha256 ${sha256})`,
      )
    }
  }
}

export async function startLocalNetwork(options: LocalNetworkOptions = {}): Promise<LocalNetwork> {
  const host = options.host ?? '127.0.0.1'
  const cleanups: Array<() => Promise<void>> = []
  const closeAll = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {})
  }
  try {
    if (options.staking && !options.chain) throw new Error('staking needs the local chain: pass chain: true too')
    const bundle = options.build === false ? undefined : buildEdge()
    const broker = options.broker ?? (await startLocalBroker({ host }))
    if (!options.broker) cleanups.push(() => broker.close())
    const chain = options.chain ? await startLocalChain() : undefined
    if (chain) cleanups.push(() => chain.stop())
    await bundle
    const chainVars: Record<string, string> = chain
      ? {
          CHAIN_ID: String(chain.chainId),
          CHAIN_RPC_URL: chain.rpcUrl,
          REGISTRY_ADDRESS: chain.registryAddress,
          SUBMITTER_PRIVATE_KEY: chain.submitterPrivateKey,
          // Payments on; fees (PROVIDER_FEE_WEI, PROTOCOL_FEE_BPS / _ADDRESS) come through edgeVars.
          ESCROW_ADDRESS: chain.escrowAddress,
          ...(options.staking && { PROVIDER_REGISTRY_ADDRESS: chain.providerRegistryAddress }),
        }
      : {}
    const edge = await startEdge({
      brokerUrl: options.edgeOverWebSocket ? broker.wsUrl : broker.tcpUrl,
      host,
      port: options.port ?? 0,
      vars: { ...chainVars, ...options.edgeVars },
      ...(options.edgeInspectorPort !== undefined && { inspectorPort: options.edgeInspectorPort }),
    })
    cleanups.push(() => edge.close())
    const apiKey = await edge.createApiKey('local', options.apiKey, options.payer)
    const agents: AgentProcess[] = []
    cleanups.push(async () => {
      await Promise.all(agents.map((agent) => agent.stop()))
    })
    const startAgent = ({ stake, servePublished, ...agent }: LocalAgentOptions) => {
      // Registered before the agent exists, so the edge's first look at its address finds it
      // active (an unchecked or inactive answer would keep it unroutable until the re-check).
      const register = chain && options.staking && stake !== false ? (keyPath: string) => chain.registerDevice(keyPath) : undefined
      const edgeEnv: Record<string, string> = servePublished ? { DEPINFER_EDGE_URL: edge.url, DEPINFER_API_KEY: apiKey, DEPINFER_EDGE_POLL_SEC: '5' } : {}
      const process = spawnAgent({ ...agent, env: { ...edgeEnv, ...agent.env }, brokerUrl: broker.tcpUrl }, register)
      agents.push(process)
      return process
    }
    // Alongside the agents' start (registration, spawn), so it adds little to start-up; done
    // before the network is handed over, so the names are owned before anyone gets the URL.
    const published = options.publishBundledModels ? publishBundledModels(edge.url, apiKey, options.publishBundledModels.payoutAddress) : undefined
    // Waited for, so a failed registration fails the network's start rather than a later wait.
    await Promise.all([published, ...(options.agents ?? [{ deviceId: 'local-device-1' }]).map((agent) => startAgent(agent).started)])
    if (options.batchEveryMs) {
      const every = options.batchEveryMs
      let timer: NodeJS.Timeout | undefined
      // One tick at a time: the next is scheduled when the previous has finished.
      const tick = () => {
        timer = setTimeout(() => {
          edge.runScheduled().catch((error: unknown) => console.warn(`batcher tick: ${messageOf(error)}`)).finally(() => {
            if (timer) tick()
          })
        }, every)
      }
      tick()
      cleanups.push(async () => {
        clearTimeout(timer)
        timer = undefined
      })
    }
    return { broker, chain, edge, agents, apiKey, startAgent, close: closeAll }
  } catch (error) {
    await closeAll()
    throw error
  }
}
