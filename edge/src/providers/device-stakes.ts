/**
 * Routing only to staked devices (issue 6): with a ProviderRegistry configured, the Gateway
 * routes a job only to a device whose signing-key address `isActiveDevice` on-chain (registered
 * by a provider that holds at least `minStake` and is not unstaking).
 *
 * The chain is never asked on a job's path: answers are cached per address and re-checked in
 * the background when older than DEVICE_STAKE_TTL_MS (the Gateway asks when a device first
 * shows an address, from its alarm, and when a request finds answers stale). So an unstake takes
 * effect within about one TTL; a fresh registration likewise. When the chain cannot be read the
 * last known answer stands (a provider is not dropped because an RPC node hiccuped, nor let in),
 * and an address never successfully checked is not routable: the safe default for a gate.
 */
import { addressProblem, type Hex } from '@depinfer/shared'

/** Default re-check interval: an unstake stops routing within about this long. */
const DEFAULT_STAKE_TTL_MS = 30_000
/** Concurrent calls during one refresh, so a large fleet does not open hundreds of requests. */
const CHECK_CONCURRENCY = 16

/**
 * The env vars the stake gate reads (a subset of Env, as wrangler.toml documents them; declared
 * here rather than picked from Env so this module has no Workers types and unit-tests in Node).
 */
export interface StakeVars {
  CHAIN_ID: string
  CHAIN_RPC_URL: string
  CHAIN_SUBMIT_RPC_URL?: string
  PROVIDER_REGISTRY_ADDRESS?: string
  DEVICE_STAKE_TTL_MS?: string
}

/** Where the gate reads: the registry on the configured chain. */
export interface StakeChain {
  registry: Hex
  chainId: number
  rpcUrl: string
}

/** The chain could not answer an `isActiveDevice` call (its message is viem's short one). */
export class StakeReadError extends Error {
  override name = 'StakeReadError'
}

/** Decides, from cached answers only, whether a device's address may be routed to. */
export interface StakeGate {
  /** Why `address` may not get jobs now, or undefined when it may. Never waits on the chain. */
  refusal(address: Hex): string | undefined
  /** The provider account `address` is registered to, as last read (undefined: not known). */
  providerOf(address: Hex): Hex | undefined
  /**
   * Checks each address whose answer is missing or older than the TTL (one check per address at
   * a time; an address checked or tried within the TTL is skipped). Never rejects.
   */
  refreshStale(addresses: Iterable<Hex>): Promise<void>
  /** Drops the answers of addresses no longer in use (devices that left). */
  retainOnly(addresses: Iterable<Hex>): void
  /** How often answers are re-checked, in ms (the Gateway's alarm runs at least this often). */
  readonly ttlMs: number
  /** Counts the changes to any `refusal`, so a caller may keep what it derived from them until it moves. */
  readonly revision: number
}

/** What the registry says of one device address. */
export interface DeviceStanding {
  active: boolean
  /** Its provider (lowercase), or undefined when no provider holds it. */
  provider: Hex | undefined
}

/** Asks the chain about one device address; rejects (StakeReadError) when it cannot. */
export type ActiveDeviceReader = (address: Hex) => Promise<DeviceStanding>

/**
 * The gate the env configures: undefined without PROVIDER_REGISTRY_ADDRESS (every device with a
 * key is routable, as before staking existed). A registry set without a usable chain refuses
 * every device with the reason: routing to unchecked devices is exactly what it is there to stop.
 */
export function stakeGate(
  env: StakeVars,
  readerFor: (chain: StakeChain) => ActiveDeviceReader,
  now: () => number = Date.now,
): StakeGate | undefined {
  const registry = env.PROVIDER_REGISTRY_ADDRESS ?? ''
  if (registry === '') return undefined
  const ttl = Number(env.DEVICE_STAKE_TTL_MS)
  const ttlMs = env.DEVICE_STAKE_TTL_MS && Number.isFinite(ttl) && ttl > 0 ? ttl : DEFAULT_STAKE_TTL_MS
  const chainId = Number(env.CHAIN_ID)
  // The private RPC when configured, as payments do: it is the one provisioned for load.
  const rpcUrl = env.CHAIN_SUBMIT_RPC_URL || env.CHAIN_RPC_URL
  const misconfigured = (problem: string) => {
    console.error(`stake gate: ${problem}; no device is routable until it is fixed (see README "Providers")`)
    return misconfiguredGate(`device stake cannot be checked: ${problem}`, ttlMs)
  }
  // The same check payments make (a checksum typo is refused), so the two agree on the registry.
  const problem = addressProblem(registry)
  if (problem !== undefined) return misconfigured(`PROVIDER_REGISTRY_ADDRESS ${problem}, got ${JSON.stringify(registry.slice(0, 60))}`)
  if (!Number.isSafeInteger(chainId) || chainId <= 0) return misconfigured('PROVIDER_REGISTRY_ADDRESS is set but CHAIN_ID is not')
  if (!rpcUrl) return misconfigured('PROVIDER_REGISTRY_ADDRESS is set but CHAIN_RPC_URL is not')
  const chain: StakeChain = { registry: registry.toLowerCase() as Hex, chainId, rpcUrl }
  return new RegistryStakeGate(chain.registry, readerFor(chain), ttlMs, now)
}

function misconfiguredGate(reason: string, ttlMs: number): StakeGate {
  return { refusal: () => reason, providerOf: () => undefined, refreshStale: async () => {}, retainOnly: () => {}, ttlMs, revision: 0 }
}

interface StakeAnswer {
  /** The last answer the chain gave; undefined until one check has succeeded. */
  active: boolean | undefined
  provider: Hex | undefined
  /** When a check last started (success or not): the next is due a TTL later. */
  attemptedAt: number
  /** Why the last check failed, while the chain cannot be read; cleared by a success. */
  lastError: string | undefined
  checking: Promise<void> | undefined
}

/** Cached `isActiveDevice` answers of one ProviderRegistry. Exported for unit tests. */
export class RegistryStakeGate implements StakeGate {
  readonly #answers = new Map<Hex, StakeAnswer>()
  #revision = 0

  constructor(
    readonly registry: Hex,
    private readonly read: ActiveDeviceReader,
    readonly ttlMs: number,
    private readonly now: () => number,
  ) {}

  get revision(): number {
    return this.#revision
  }

  refusal(address: Hex): string | undefined {
    const answer = this.#answers.get(address)
    if (answer?.active === true) return undefined
    if (answer?.active === false) {
      // The registry answers one bit; what is missing, the provider's `depinfer provider status` says.
      return `device not staked (${address} is not an active device in ProviderRegistry ${this.registry}: its provider must stake enough and register it, and not be unstaking)`
    }
    if (answer?.lastError !== undefined) {
      return `device stake unknown (ProviderRegistry ${this.registry} could not be read: ${answer.lastError})`
    }
    return `device stake not checked yet (${address} in ProviderRegistry ${this.registry})`
  }

  providerOf(address: Hex): Hex | undefined {
    return this.#answers.get(address)?.provider
  }

  async refreshStale(addresses: Iterable<Hex>): Promise<void> {
    const due = [...new Set(addresses)].filter((address) => {
      const answer = this.#answers.get(address)
      return !answer || (answer.checking === undefined && this.now() - answer.attemptedAt >= this.ttlMs)
    })
    // Started synchronously, so a second caller in the same turn sees them in flight.
    const started = due.map((address) => ({ address, answer: this.#begin(address) }))
    for (let i = 0; i < started.length; i += CHECK_CONCURRENCY) {
      await Promise.all(started.slice(i, i + CHECK_CONCURRENCY).map(({ address, answer }) => this.#check(address, answer)))
    }
  }

  retainOnly(addresses: Iterable<Hex>): void {
    const keep = new Set(addresses)
    for (const [address, answer] of this.#answers) {
      if (!keep.has(address) && answer.checking === undefined) {
        this.#answers.delete(address)
        this.#revision++
      }
    }
  }

  #begin(address: Hex): StakeAnswer {
    const answer = this.#answers.get(address) ?? { active: undefined, provider: undefined, attemptedAt: 0, lastError: undefined, checking: undefined }
    answer.attemptedAt = this.now()
    // Marks the check as running before any await; #check fills in the real promise.
    answer.checking = Promise.resolve()
    this.#answers.set(address, answer)
    return answer
  }

  #check(address: Hex, answer: StakeAnswer): Promise<void> {
    answer.checking = this.read(address).then(
      ({ active, provider }) => {
        answer.provider = provider
        if (answer.active !== active) console.log(`stake gate: ${address} is ${active ? 'now' : 'not'} an active device`)
        if (answer.active !== active || answer.lastError !== undefined) this.#revision++
        answer.active = active
        answer.lastError = undefined
      },
      (error: unknown) => {
        answer.lastError = error instanceof Error ? error.message.slice(0, 300) : String(error)
        // Only an address with no answer yet shows the error in its refusal; a known answer stands.
        if (answer.active === undefined) this.#revision++
        const kept = answer.active === undefined ? 'not routable until a check succeeds' : `keeping the last answer (${answer.active ? 'active' : 'inactive'})`
        console.warn(`stake gate: checking ${address} failed, ${kept}: ${answer.lastError}`)
      },
    ).finally(() => {
      answer.checking = undefined
    })
    return answer.checking
  }
}
