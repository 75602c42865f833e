/**
 * The local network's chain: a real anvil with the compiled AttestationRegistry deployed, and the
 * edge telling clients where it is, so they can check proofs with any Ethereum client.
 */
import { createPublicClient, http, type Hex } from 'viem'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { attestationRegistryAbi } from '../../contracts/generated/index.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { apiClient, type ApiClient } from './support.js'

describe('local chain', () => {
  let network: LocalNetwork
  let api: ApiClient

  beforeAll(async () => {
    network = await startLocalNetwork({ build: false, chain: true, agents: [] })
    api = apiClient(network.edge.url, network.apiKey)
  })
  afterAll(async () => {
    await network?.close()
  })

  it('serves the chain id, RPC URL and registry address, and the registry is really deployed there', async () => {
    const response = await api.get('/api/chain')
    expect(response.status).toBe(200)
    const { chainId, rpcUrl, contracts } = response.body as { chainId: number; rpcUrl: string; contracts: { attestationRegistry: Hex } }
    expect(chainId).toBe(31337)
    const client = createPublicClient({ transport: http(rpcUrl) })
    expect(await client.getChainId()).toBe(chainId)
    expect((await client.getCode({ address: contracts.attestationRegistry }))?.length).toBeGreaterThan(2)
    const posted = await client.readContract({
      address: contracts.attestationRegistry,
      abi: attestationRegistryAbi,
      functionName: 'isPosted',
      args: [`0x${'11'.repeat(32)}`],
    })
    expect(posted).toBe(false)
  })

  it('needs an API key like every route but health', async () => {
    expect((await fetch(`${network.edge.url}/api/chain`)).status).toBe(401)
  })
})

describe('an edge without a chain', () => {
  it('says so with a 503 problem rather than inventing one', async () => {
    const network = await startLocalNetwork({ build: false, agents: [] })
    try {
      const response = await apiClient(network.edge.url, network.apiKey).get('/api/chain')
      expect(response.status).toBe(503)
      expect(response.body).toMatchObject({ type: 'urn:depinfer:problem:chain-not-configured' })
    } finally {
      await network.close()
    }
  })
})
